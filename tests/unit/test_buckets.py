"""Bucket leases: replicas sharing one in-memory lease store split the buckets, never both holding one."""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import os
import subprocess
import sys
from collections import Counter
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from seqflow.cluster.kube import ApiError, Conflict, Invalid, NotFound
from seqflow.cluster.leases import EXPIRY_MARGIN, BucketLeases, assignment, bucket_of

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "seqflow-system"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
BUCKETS = 8
LEASE, RENEW, RETRY = 15.0, 10.0, 2.0
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # the fake clock's wall time at 0 seconds


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


class FakeLeases:
    """The API server's lease store, for the calls `BucketLeases` makes through `KubeApi.request`."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.interleave = False  # yield to other tasks before each request, so concurrent rounds race

    def holder(self, bucket: int) -> str | None:
        lease = self.leases.get(f"seqflow-bucket-{bucket}")
        return lease["spec"].get("holderIdentity") if lease else None

    async def request(self, method, path, *, body=None, content_type="application/json"):
        if self.interleave:
            await asyncio.sleep(0)
        path, _, query = path.partition("?")
        assert path.startswith(LEASES), path
        name = path[len(LEASES) :].strip("/")
        if method == "GET" and not name:
            return {
                "items": [copy.deepcopy(lease) for lease in self.leases.values() if selects(query, lease)]
            }
        if method == "POST" and not name:
            return self.create(body)
        if name not in self.leases:
            raise NotFound(404, f"leases {name!r} not found")
        if method == "GET":
            return copy.deepcopy(self.leases[name])
        if method == "PATCH":
            assert content_type == "application/merge-patch+json"
            return self.patch(name, body)
        if method == "DELETE":
            del self.leases[name]
            return {}
        raise AssertionError(f"unexpected {method} {path}")

    def create(self, lease):
        name = lease["metadata"]["name"]
        if name in self.leases:
            raise Conflict(409, f"leases {name!r} already exists")
        lease = copy.deepcopy(lease)
        lease["metadata"]["resourceVersion"] = self.next_version()
        self.leases[name] = lease
        return copy.deepcopy(lease)

    def patch(self, name, patch):
        lease = self.leases[name]
        expected = patch.get("metadata", {}).get("resourceVersion")
        if expected is not None and expected != lease["metadata"]["resourceVersion"]:
            raise Conflict(409, f"the object {name!r} has been modified")
        merge(lease, patch)
        lease["metadata"]["resourceVersion"] = self.next_version()
        return copy.deepcopy(lease)

    def next_version(self) -> str:
        self.version += 1
        return str(self.version)


def selects(query: str, lease) -> bool:
    """A label selector of `key` or `key=value` terms."""
    labels = lease["metadata"].get("labels", {})
    for term in parse_qs(query).get("labelSelector", [""])[0].split(","):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


def merge(target: dict, patch: dict) -> None:
    """RFC 7386: null deletes, objects merge, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeClock:
    """A clock the test moves on by hand: `seconds` of monotonic time, and the wall time with them."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds


class Unreachable:
    """A replica's view of the API server that can be cut off."""

    def __init__(self, store: FakeLeases) -> None:
        self.store = store
        self.down = False

    async def request(self, method, path, **options):
        if self.down:
            raise ConnectionRefusedError("the API server is unreachable")
        return await self.store.request(method, path, **options)


class Replica:
    """A `BucketLeases` and the record of its callbacks, which must alternate per bucket."""

    def __init__(self, identity: str, store: FakeLeases, clock: FakeClock) -> None:
        self.identity = identity
        self.store = store
        self.api = Unreachable(store)
        self.events: list[tuple[str, int]] = []
        self.holder_when_lost: dict[int, str | None] = {}
        self.leases = BucketLeases(
            api=self.api,
            namespace=NAMESPACE,
            prefix="seqflow",
            identity=identity,
            buckets=BUCKETS,
            lease_seconds=LEASE,
            renew_seconds=RENEW,
            retry_seconds=RETRY,
            on_gained=self.gained,
            on_lost=self.lost,
            drain=self.drain,
            clock=clock,
        )

    def gained(self, bucket: int) -> None:
        assert self.last_event(bucket) != "gained", f"{self.identity} gained {bucket} twice"
        self.events.append(("gained", bucket))

    def lost(self, bucket: int) -> None:
        assert self.last_event(bucket) == "gained", f"{self.identity} lost {bucket} it did not hold"
        self.holder_when_lost[bucket] = self.store.holder(bucket)
        self.events.append(("lost", bucket))

    async def drain(self, bucket: int) -> None:
        """Drained while the lease still names this replica, which holds it and hands it over."""
        run = next(
            f"run-{i}" for i in itertools.count() if bucket_of("ns", f"run-{i}", buckets=BUCKETS) == bucket
        )
        assert self.store.holder(bucket) == self.identity and bucket in self.leases.held
        assert self.leases.handing_over("ns", run) and self.leases.holds("ns", run)
        self.events.append(("drained", bucket))

    def last_event(self, bucket: int) -> str | None:
        return next((kind for kind, b in reversed(self.events) if b == bucket and kind != "drained"), None)

    def count(self, kind: str, since: int = 0) -> Counter[int]:
        """How often each bucket was gained (or lost) since the `since`th event."""
        return Counter(b for k, b in self.events[since:] if k == kind)

    @property
    def held(self) -> frozenset[int]:
        return self.leases.held


def assert_safe(replicas: list[Replica]) -> None:
    """No bucket held by two replicas, and a replica holds only buckets whose lease names it."""
    for replica in replicas:
        for other in replicas:
            if other is not replica:
                assert not replica.held & other.held, (replica.identity, other.identity)
        for bucket in replica.held:
            assert replica.store.holder(bucket) == replica.identity


async def rounds(replicas: list[Replica], everyone: list[Replica], clock: FakeClock, count: int) -> None:
    """`count` rounds of `replicas`, one after the other, checking safety across `everyone` after
    each; the clock moves on by retry_seconds after each full pass."""
    for _ in range(count):
        for replica in replicas:
            with pytest.raises(ConnectionRefusedError) if replica.api.down else nullcontext():
                await replica.leases.round()
            assert_safe(everyone)
        clock.seconds += RETRY


def assert_balanced(replicas: list[Replica]) -> None:
    """Every bucket held by one of `replicas`, their counts at most one apart."""
    counts = [len(replica.held) for replica in replicas]
    assert set().union(*(replica.held for replica in replicas)) == set(range(BUCKETS))
    assert sum(counts) == BUCKETS and max(counts) - min(counts) <= 1, counts


# ----- the hash and the assignment -----


def test_bucket_of_is_in_range_and_spreads_runs():
    counts = Counter(bucket_of("ns", f"run-{i}", buckets=BUCKETS) for i in range(4000))
    assert set(counts) == set(range(BUCKETS))
    assert min(counts.values()) > 4000 / BUCKETS * 0.8
    assert all(bucket_of("ns", f"run-{i}", buckets=1) == 0 for i in range(50))


def test_bucket_of_is_the_same_in_every_process():
    script = "\n".join(
        [
            "from seqflow.cluster.leases import EXPIRY_MARGIN, bucket_of",
            "print([bucket_of('ns', f'r{i}', buckets=97) for i in range(50)])",
        ]
    )
    outputs = set()
    for seed in ("1", "2"):  # built-in hash() of a str differs between these
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO / "operator")}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(done.stdout)
    here = str([bucket_of("ns", f"r{i}", buckets=97) for i in range(50)]) + "\n"
    assert outputs == {here}


@pytest.mark.parametrize("members", [1, 2, 3, 5, 8, 9])
@pytest.mark.parametrize("buckets", [1, 7, 8, 32])
def test_assignment_is_balanced_and_independent_of_order(members, buckets):
    names = [f"replica-{i}" for i in range(members)]
    given = assignment(names, buckets=buckets)
    assert sorted(given) == list(range(buckets))
    counts = Counter(given.values())
    assert set(counts) <= set(names)
    assert len(counts) == min(members, buckets)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert assignment(reversed(names), buckets=buckets) == given
    assert assignment(names + names[:1], buckets=buckets) == given  # duplicates count once


def test_assignment_of_no_members_is_empty():
    assert assignment([], buckets=BUCKETS) == {}


@pytest.mark.parametrize("members", [2, 3, 5])
@pytest.mark.parametrize("buckets", [7, 16])
def test_assignment_moves_only_the_buckets_of_a_member_that_left(members, buckets):
    names = [f"replica-{i}" for i in range(members)]
    before = assignment(names, buckets=buckets)
    for gone in names:
        after = assignment([n for n in names if n != gone], buckets=buckets, holders=before)
        moved = {b for b in range(buckets) if after[b] != before[b]}
        assert moved == {b for b, m in before.items() if m == gone}
        counts = Counter(after.values())
        assert gone not in counts and max(counts.values()) - min(counts.values()) <= 1


@pytest.mark.parametrize("members", [1, 2, 4])
@pytest.mark.parametrize("buckets", [7, 16])
def test_assignment_gives_a_joining_member_its_share_and_moves_nothing_else(members, buckets):
    names = [f"replica-{i}" for i in range(members)]
    before = assignment(names, buckets=buckets)
    for joining in ("replica-0a", "replica-9"):  # sorting first among the others, and last
        after = assignment([*names, joining], buckets=buckets, holders=before)
        counts = Counter(after.values())
        moved = {b for b in range(buckets) if after[b] != before[b]}
        assert {after[b] for b in moved} == {joining} and len(moved) == counts[joining]
        base, extra = divmod(buckets, members + 1)
        assert counts[joining] == base + (sorted([*names, joining]).index(joining) < extra)
        assert max(counts.values()) - min(counts.values()) <= 1


def test_assignment_is_its_own_fixed_point_and_ignores_holders_that_are_no_members():
    names = ["a", "b", "c"]
    given = assignment(names, buckets=16, holders={0: "z", 1: "c", 2: "c", 3: "c"})
    assert assignment(names, buckets=16, holders=given) == given
    assert given[0] != "z" and [given[b] for b in (1, 2, 3)] == ["c", "c", "c"]
    assert assignment(names, buckets=16, holders={99: "a"}) == assignment(names, buckets=16)


@pytest.mark.parametrize(
    ("buckets", "retry", "renew", "lease"),
    [(0, 2, 10, 15), (8, 0, 10, 15), (8, 10, 10, 15), (8, 2, 15, 15), (8, 2, 20, 15)],
)
def test_inconsistent_settings_are_refused(buckets, retry, renew, lease):
    with pytest.raises(ValueError, match=r"buckets|retry_seconds"):
        BucketLeases(
            api=FakeLeases(),
            namespace=NAMESPACE,
            prefix="seqflow",
            identity="a",
            buckets=buckets,
            lease_seconds=lease,
            renew_seconds=renew,
            retry_seconds=retry,
            on_gained=lambda bucket: None,
            on_lost=lambda bucket: None,
        )


# ----- replicas sharing the buckets -----


def test_one_replica_takes_all_buckets():
    store, clock = FakeLeases(), FakeClock()
    a = Replica("a", store, clock)
    run(rounds([a], [a], clock, 1))
    assert a.held == set(range(BUCKETS))
    assert a.count("gained") == Counter(range(BUCKETS))
    member = store.leases["seqflow-member-a"]
    assert member["metadata"]["labels"] == {"seqflow.io/lease": "member"}
    assert member["spec"]["holderIdentity"] == "a"
    assert member["spec"]["leaseDurationSeconds"] == 15
    bucket = copy.deepcopy(store.leases["seqflow-bucket-3"])
    assert bucket["metadata"]["labels"] == {"seqflow.io/lease": "bucket"}
    assert bucket["spec"]["renewTime"] == "2026-01-01T00:16:40.000000Z"  # the clock's, 1000 s in
    assert all(a.leases.holds("ns", f"run-{i}") for i in range(20))

    run(rounds([a], [a], clock, 3))  # renewals change nothing
    assert a.count("gained") == Counter(range(BUCKETS)) and not a.count("lost")
    assert (
        store.leases["seqflow-bucket-3"]["metadata"]["resourceVersion"]
        != bucket["metadata"]["resourceVersion"]
    )


def test_other_leases_are_left_alone():
    store, clock = FakeLeases(), FakeClock()
    others = [
        ("unrelated", {"app": "x"}),
        ("other-member-z", {"seqflow.io/lease": "member"}),  # another deployment's, with its own prefix
        ("other-bucket-0", {"seqflow.io/lease": "bucket"}),
    ]
    for name, labels in others:
        store.create({"metadata": {"name": name, "labels": labels}, "spec": {"holderIdentity": "z"}})
    versions = {name: store.leases[name]["metadata"]["resourceVersion"] for name, _ in others}
    a = Replica("a", store, clock)
    run(rounds([a], [a], clock, 2))
    assert a.held == set(range(BUCKETS))  # z is no member of this deployment
    assert {name: store.leases[name]["metadata"]["resourceVersion"] for name, _ in others} == versions


def test_joining_replica_gets_its_share_and_the_first_releases_exactly_those():
    store, clock = FakeLeases(), FakeClock()
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    run(rounds([a], [a, b], clock, 2))
    assert a.held == set(range(BUCKETS))

    run(rounds([b, a], [a, b], clock, 3))

    assert_balanced([a, b])
    assert set(a.count("lost")) == b.held and max(a.count("lost").values()) == 1
    assert a.leases.lapsed == 0  # handed over, not lapsed
    assert all(a.holder_when_lost[bucket] == "a" for bucket in b.held)  # work stopped before the release
    assert all(store.leases[f"seqflow-bucket-{bucket}"]["spec"]["leaseTransitions"] == 1 for bucket in b.held)

    run(rounds([b, a], [a, b], clock, 5))  # stable from then on
    assert a.count("gained") == Counter(range(BUCKETS)) and a.count("lost") == a.count("drained")
    assert len(a.events) == BUCKETS + 2 * (BUCKETS // 2) and len(b.events) == BUCKETS // 2


def test_holds_follows_the_held_buckets():
    store, clock = FakeLeases(), FakeClock()
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    run(rounds([a, b], [a, b], clock, 3))
    for i in range(50):
        bucket = bucket_of("ns", f"run-{i}", buckets=BUCKETS)
        assert a.leases.holds("ns", f"run-{i}") == (bucket in a.held)
        assert a.leases.holds("ns", f"run-{i}") != b.leases.holds("ns", f"run-{i}")


def test_buckets_of_a_stopped_replica_move_only_once_unchanged_for_the_lease_duration():
    store, clock = FakeLeases(), FakeClock()
    c = Replica("c", store, clock)
    run(rounds([c], [c], clock, 1))
    del store.leases["seqflow-member-c"]  # c is gone from the members, but still holds every bucket
    a = Replica("a", store, clock)
    run(rounds([a], [a], clock, 3))  # c's process is gone: only a works
    assert not a.held

    ancient = {"spec": {"renewTime": "2000-01-01T00:00:00.000000Z"}}  # c's wall clock is far behind
    for bucket in range(BUCKETS):
        store.patch(f"seqflow-bucket-{bucket}", ancient)  # c renews once more: a starts counting again
    listed_before = clock.seconds - RETRY  # a's last list, which did not show the renewal
    assert listed_before + LEASE >= clock.seconds + RENEW + (LEASE - RENEW) / 2  # c stopped well before
    while clock.seconds < listed_before + LEASE:
        run(rounds([a], [a], clock, 1))
        assert not a.held, f"took c's buckets {clock.seconds - listed_before} s after a's list before"

    run(rounds([a], [a], clock, 1))
    assert a.held == set(range(BUCKETS))
    assert all(store.holder(bucket) == "a" for bucket in range(BUCKETS))


def test_a_change_seen_long_after_the_list_before_counts_from_half_the_slack_before_it_was_seen():
    store, clock = FakeLeases(), FakeClock()
    c, a = Replica("c", store, clock), Replica("a", store, clock)
    run(rounds([c, a], [c, a], clock, 1))
    del store.leases["seqflow-member-c"]
    clock.seconds += 20  # a's rounds are held up (a loaded node)
    run(c.leases.round())  # c renews everything (and stops for good), then a lists
    seen = clock.seconds
    slack = (LEASE - RENEW) / 2
    while clock.seconds < seen - slack + LEASE:
        run(a.leases.round())
        assert not a.held & c.held
        clock.seconds += 0.5
    run(a.leases.round())
    assert a.held == set(range(BUCKETS))


def test_survivors_share_the_buckets_of_a_replica_that_stopped():
    store, clock = FakeLeases(), FakeClock()
    a, b, c = (Replica(name, store, clock) for name in "abc")
    run(rounds([a, b, c], [a, b, c], clock, 3))
    assert_balanced([a, b, c])
    orphaned, held_by_a, held_by_b, mark = c.held, a.held, b.held, len(a.events) + len(b.events)
    stopped_at = clock.seconds

    while clock.seconds < stopped_at + LEASE - RETRY:  # c's process is gone; its leases look alive
        run(rounds([a, b], [a, b], clock, 1))
        assert not orphaned & (a.held | b.held)

    run(rounds([a, b], [a, b], clock, 3))
    assert_balanced([a, b])
    assert held_by_a <= a.held and held_by_b <= b.held  # only c's buckets moved
    assert len(a.events) + len(b.events) - mark == len(orphaned)


def test_the_round_that_takes_over_runs_when_the_stopped_replica_s_leases_expire():
    store, clock = FakeLeases(), FakeClock()
    a, c = Replica("a", store, clock), Replica("c", store, clock)
    for _ in range(6):
        versions = {name: lease["metadata"]["resourceVersion"] for name, lease in store.leases.items()}
        run(c.leases.round())
        if versions != {name: lease["metadata"]["resourceVersion"] for name, lease in store.leases.items()}:
            last_write = clock.seconds  # and a sees it at once: its round follows at the same time
        run(a.leases.round())
        assert_safe([a, c])
        clock.seconds += RETRY
    orphaned = c.held
    assert orphaned and a.leases.seconds_until_next_round() == RETRY  # nothing expires sooner

    waits = []  # c's process is gone; a sleeps what it asks for between its rounds
    while not orphaned <= a.held:
        run(a.leases.round())
        assert_safe([a])
        waits.append(a.leases.seconds_until_next_round())
        clock.seconds += waits[-1]
    # taken over LEASE after a's list before the one that showed c's last write (RETRY before it),
    # to the margin, not at the next tick of RETRY
    assert clock.seconds - waits[-1] == pytest.approx(last_write - RETRY + LEASE + EXPIRY_MARGIN)
    assert min(waits) < RETRY and max(waits) == RETRY


def test_replica_cut_off_from_the_api_server_loses_its_buckets_before_they_expire():
    store, clock = FakeLeases(), FakeClock()
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    run(rounds([a, b], [a, b], clock, 3))
    held_by_a, mark = a.held, len(a.events)
    assert_balanced([a, b])

    a.api.down = True
    cut_off_at = clock.seconds
    while clock.seconds < cut_off_at + RENEW - RETRY:
        run(rounds([a, b], [a, b], clock, 1))
        assert a.held == held_by_a and not a.count("lost", mark)

    run(rounds([a, b], [a, b], clock, 2))
    assert not a.held
    assert a.count("lost", mark) == Counter(held_by_a)
    assert a.leases.lapsed == len(held_by_a)
    assert not b.held & held_by_a  # the leases have not expired for b yet

    run(rounds([a, b], [a, b], clock, int(LEASE / RETRY) + 2))
    assert b.held == set(range(BUCKETS))


def test_replica_whose_writes_fail_loses_its_buckets():
    store, clock = FakeLeases(), FakeClock()
    a = Replica("a", store, clock)
    run(a.leases.round())
    renewed_at = clock.seconds

    async def refuse(method, path, **options):
        if method != "GET":
            raise Invalid(422, "refused")
        return await store.request(method, path, **options)

    a.api.request = refuse
    refused = 0
    while clock.seconds <= renewed_at + RENEW:
        try:  # renewals are due every RENEW / 3: not every round writes
            run(a.leases.round())
        except Invalid:
            refused += 1
        assert a.held == set(range(BUCKETS)) and not a.count("lost")
        clock.seconds += RETRY
    assert refused >= 2  # renewals were tried, and failed, before the buckets were given up
    with pytest.raises(Invalid):
        run(a.leases.round())
    assert not a.held and a.count("lost") == Counter(range(BUCKETS))


def test_release_all_hands_the_buckets_to_the_others_at_their_next_round():
    store, clock = FakeLeases(), FakeClock()
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    run(rounds([a, b], [a, b], clock, 3))
    held_by_a, mark = a.held, len(a.events)

    run(a.leases.release_all())
    assert not a.held and a.count("lost", mark) == Counter(held_by_a) and a.leases.lapsed == 0
    assert sum(a.count("drained", mark).values()) == 1  # all handed over, drained together, then lost
    drained = a.events.index(next(e for e in a.events[mark:] if e[0] == "drained"), mark)
    assert all(drained < a.events.index(("lost", b), mark) for b in held_by_a)
    assert all(a.holder_when_lost[bucket] == "a" for bucket in held_by_a)
    assert all(store.holder(bucket) is None for bucket in held_by_a)
    assert "seqflow-member-a" not in store.leases

    run(rounds([b], [a, b], clock, 1))
    assert b.held == set(range(BUCKETS))


def test_release_all_ignores_api_errors():
    store, clock = FakeLeases(), FakeClock()
    a = Replica("a", store, clock)
    run(rounds([a], [a], clock, 1))

    async def refuse(method, path, **options):
        raise ApiError(503, "unavailable")

    a.api.request = refuse
    run(a.leases.release_all())
    assert not a.held and a.count("lost") == Counter(range(BUCKETS))


@pytest.mark.parametrize("existing", [False, True], ids=["missing-leases", "free-leases"])
def test_replicas_racing_for_free_buckets_never_both_gain_one(existing):
    store, clock = FakeLeases(), FakeClock()
    if existing:
        for bucket in range(BUCKETS):
            labels = {"seqflow.io/lease": "bucket"}
            store.create({"metadata": {"name": f"seqflow-bucket-{bucket}", "labels": labels}, "spec": {}})
    a, b = Replica("a", store, clock), Replica("b", store, clock)
    store.interleave = True

    async def race():
        await asyncio.gather(a.leases.round(), b.leases.round())  # both see every bucket free

    run(race())
    assert_safe([a, b])
    assert a.held | b.held == set(range(BUCKETS))
    assert a.count("gained") + b.count("gained") == Counter(range(BUCKETS))  # each gained exactly once
    for bucket in range(BUCKETS):
        winner = a if bucket in a.held else b
        assert store.holder(bucket) == winner.identity

    store.interleave = False
    run(rounds([a, b], [a, b], clock, 3))  # then they balance
    assert_balanced([a, b])


def test_a_lease_still_naming_the_replica_after_a_restart_is_taken_back():
    store, clock = FakeLeases(), FakeClock()
    first = Replica("a", store, clock)
    run(rounds([first], [first], clock, 1))
    again = Replica("a", store, clock)  # same identity, new process: its leases are still fresh
    run(rounds([again], [again], clock, 1))
    assert again.held == set(range(BUCKETS)) and again.count("gained") == Counter(range(BUCKETS))


def test_run_goes_on_after_a_failed_round(caplog):
    store = FakeLeases()
    serve = store.request
    failures = iter([True])

    async def flaky(method, path, **options):
        if next(failures, False):
            raise ApiError(500, "etcd is having a moment")
        return await serve(method, path, **options)

    async def scenario():
        gained: list[int] = []
        leases = BucketLeases(
            api=store,
            namespace=NAMESPACE,
            prefix="seqflow",
            identity="a",
            buckets=BUCKETS,
            lease_seconds=1.0,
            renew_seconds=0.5,
            retry_seconds=0.01,
            on_gained=gained.append,
            on_lost=lambda bucket: None,
        )
        store.request = flaky
        task = asyncio.create_task(leases.run())
        while len(gained) < BUCKETS:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return leases.held

    with caplog.at_level(logging.ERROR, logger="seqflow.cluster.leases"):
        assert run(scenario()) == set(range(BUCKETS))
    assert any("round failed" in record.getMessage() for record in caplog.records)


def test_run_cuts_short_a_round_that_hangs_past_the_renewal_deadline():
    store = FakeLeases()
    lost: list[int] = []

    async def scenario():
        leases = BucketLeases(
            api=store,
            namespace=NAMESPACE,
            prefix="seqflow",
            identity="a",
            buckets=2,
            lease_seconds=1.0,
            renew_seconds=0.2,
            retry_seconds=0.05,
            on_gained=lambda bucket: None,
            on_lost=lost.append,
        )
        await leases.round()
        hang = asyncio.Event()

        async def hanging(method, path, **options):
            await hang.wait()  # a request to an API server that never answers

        store.request = hanging
        task = asyncio.create_task(leases.run())
        await asyncio.sleep(0.4)
        try:
            return leases.held
        finally:
            task.cancel()

    assert run(scenario()) == frozenset()
    assert sorted(lost) == [0, 1]
