"""The buckets of WorkflowRuns this replica holds, so that active-active replicas split the runs.

A run belongs to the bucket its namespace and name hash to; a replica reconciles only the runs of
the buckets it holds and stops the moment it loses one (the Tekton/Knative bucket model). Bucket i
is the Lease `<prefix>-bucket-<i>`; each replica announces itself with the Lease
`<prefix>-member-<identity>`. Every round a replica renews its membership, computes the same
assignment of buckets to the live members as every other replica (a bucket stays with its holder
while the holder is within its share, so only the buckets that must move do), renews the assigned
buckets it holds, releases the others (after `drain` and `on_lost`) and acquires the assigned ones
that are free or expired. Writes are merge patches carrying the resourceVersion read, so two
replicas never both win.

A lease is expired when its resourceVersion has not changed for its leaseDurationSeconds as seen by
the local clock (client-go's rule: clocks differ between nodes), counted from when the list before
the one that showed the new resourceVersion was sent (the change came after it), but from no
earlier than half the slack between leaseDurationSeconds and renew_seconds before it was seen. A
replica whose renewals fail for renew_seconds gives its buckets up, so it has stopped at least
that half-slack before any other replica can see them expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from seqflow.api.models import JsonObject
from seqflow.clock import Clock, SystemClock
from seqflow.cluster.kube import ApiError, Conflict, KubeApi, NotFound

logger = logging.getLogger(__name__)

LEASE_LABEL = "seqflow.io/lease"  # its value tells the kind of lease: MEMBER or BUCKET
MEMBER = "member"
BUCKET = "bucket"
MERGE_PATCH = "application/merge-patch+json"
EXPIRY_MARGIN = 0.05  # seconds past a lease's expiry at which the round that takes it over runs


def bucket_of(namespace: str, name: str, *, buckets: int) -> int:
    """The bucket of a run: a hash of its key that every process and Python version agrees on."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def assignment(
    members: Iterable[str], *, buckets: int, holders: Mapping[int, str] | None = None
) -> dict[int, str]:
    """The member each bucket goes to. Each member's share is buckets // members, one more for the
    first buckets % members of them by name; a bucket stays with its holder (in `holders`) while
    that member is within its share, the rest go to the members furthest below theirs. So when a
    member comes or goes only the buckets that must move do, and every replica that sees the same
    members and holders computes the same assignment."""
    ordered = sorted(set(members))
    if not ordered:
        return {}
    base, extra = divmod(buckets, len(ordered))
    share = {member: base + (i < extra) for i, member in enumerate(ordered)}
    given: dict[int, str] = {}
    counts: Counter[str] = Counter()
    for bucket, holder in sorted((holders or {}).items()):
        if bucket < buckets and holder in share and counts[holder] < share[holder]:
            given[bucket] = holder
            counts[holder] += 1
    for bucket in range(buckets):
        if bucket not in given:
            member = min(ordered, key=lambda m: counts[m] - share[m])  # (the first by name on a tie)
            given[bucket] = member
            counts[member] += 1
    return dict(sorted(given.items()))


def micro_time(moment: datetime) -> str:
    """A moment (in UTC) as a Lease's MicroTime."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def spec_of(lease: JsonObject) -> JsonObject:
    spec: JsonObject = lease.get("spec") or {}
    return spec


def holder_of(lease: JsonObject) -> str | None:
    """The lease's holder; None when it is free."""
    return spec_of(lease).get("holderIdentity") or None


@dataclass(frozen=True)
class Sighting:
    """A resourceVersion of a lease, and from when (by the local clock) it counts: see the module's
    docstring."""

    version: str
    since: float


@dataclass(frozen=True)
class LeaseNames:
    """Where this deployment's leases are and what they are called, for one replica."""

    leases_path: str
    member_prefix: str
    bucket_prefix: str
    membership: str  # this replica's membership lease
    identity: str

    @classmethod
    def of(cls, *, namespace: str, prefix: str, identity: str) -> LeaseNames:
        member_prefix = f"{prefix}-member-"
        return cls(
            leases_path=f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
            member_prefix=member_prefix,
            bucket_prefix=f"{prefix}-bucket-",
            membership=f"{member_prefix}{identity}",
            identity=identity,
        )

    def bucket(self, bucket: int) -> str:
        return f"{self.bucket_prefix}{bucket}"


@dataclass(frozen=True)
class LeaseTimings:
    """How long the leases this replica writes last, and how often it renews and looks at them."""

    lease_duration: int  # the leaseDurationSeconds written
    renew_seconds: float  # a held bucket not renewed for this long is lost
    renew_every: float  # a renewal that fails has two more chances
    retry_seconds: float  # between rounds
    credit: float  # see the module's docstring

    @classmethod
    def of(cls, *, lease_seconds: float, renew_seconds: float, retry_seconds: float) -> LeaseTimings:
        if not 0 < retry_seconds < renew_seconds < lease_seconds:
            raise ValueError(
                "bucket lease timings must satisfy 0 < retry_seconds < renew_seconds < lease_seconds, "
                f"not retry_seconds={retry_seconds}, renew_seconds={renew_seconds}, "
                f"lease_seconds={lease_seconds}"
            )
        return cls(
            lease_duration=math.ceil(lease_seconds),
            renew_seconds=renew_seconds,
            renew_every=renew_seconds / 3,
            retry_seconds=retry_seconds,
            credit=(lease_seconds - renew_seconds) / 2,
        )


@dataclass(frozen=True)
class BucketCallbacks:
    """What the work on the buckets is told: a bucket gained, lost, or about to be given up."""

    on_gained: Callable[[int], None]
    on_lost: Callable[[int], None]
    drain: Callable[[int], Awaitable[None]] | None


class BucketLeases:
    """The buckets this replica holds, kept up by `round()` every retry_seconds (see `run()`)."""

    def __init__(
        self,
        *,
        api: KubeApi,
        namespace: str,
        prefix: str,
        identity: str,
        buckets: int,
        lease_seconds: float,
        renew_seconds: float,
        retry_seconds: float,
        on_gained: Callable[[int], None],
        on_lost: Callable[[int], None],
        drain: Callable[[int], Awaitable[None]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`on_lost` stops a bucket's work at once; `drain`, awaited before a bucket is given up
        on purpose (rebalancing, shutdown), lets the work under way end first (briefly: the other
        buckets' renewals wait for it)."""
        if buckets < 1:
            raise ValueError(f"buckets must be at least 1, not {buckets}")
        self._timings = LeaseTimings.of(
            lease_seconds=lease_seconds, renew_seconds=renew_seconds, retry_seconds=retry_seconds
        )
        self._names = LeaseNames.of(namespace=namespace, prefix=prefix, identity=identity)
        self._callbacks = BucketCallbacks(on_gained=on_gained, on_lost=on_lost, drain=drain)
        self._api = api
        self._buckets = buckets
        self._clock = clock or SystemClock()
        self._draining: set[int] = set()  # held buckets being handed over
        self._announced_at: float | None = None  # monotonic() of the membership's last renewal
        self._renewed_at: dict[int, float] = {}  # held bucket -> monotonic() of its last successful renewal
        self.lapsed = 0  # buckets lost because their Lease was not renewed in time
        self._sightings: dict[str, Sighting] = {}  # lease name -> its newest resourceVersion seen
        self._listed_at: float | None = None  # monotonic() when the last successful list was sent
        self._expiries: list[float] = []  # monotonic() when other replicas' leases expire unless renewed

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._renewed_at)

    def holds(self, namespace: str, name: str) -> bool:
        """Whether the run's bucket is held now, that is whether this replica may reconcile it."""
        return bucket_of(namespace, name, buckets=self._buckets) in self._renewed_at

    def handing_over(self, namespace: str, name: str) -> bool:
        """Whether the run's bucket is being given up: what is under way on it ends, nothing starts."""
        return bucket_of(namespace, name, buckets=self._buckets) in self._draining

    async def run(self) -> None:
        """`round()` every retry_seconds until cancelled, or sooner when another replica's lease
        expires sooner (its buckets are taken over then, not at the next tick). A round is cut
        short when the oldest renewal of a held bucket (or one made as it begins) goes stale, so a
        hung request cannot keep work going; a failed round is logged and the next one follows."""
        while True:
            try:
                async with asyncio.timeout(self._seconds_until_stale()):
                    await self.round()
            except Exception:
                logger.exception("bucket leases: round failed")
            await asyncio.sleep(self.seconds_until_next_round())

    def seconds_until_next_round(self) -> float:
        now = self._clock.monotonic()
        expiring = [at - now for at in self._expiries if at > now]
        return min([self._timings.retry_seconds, *(wait + EXPIRY_MARGIN for wait in expiring)])

    async def round(self) -> None:
        """One pass: renew the membership, then bring every bucket lease in line with the assignment;
        at its end, however it ends, buckets not renewed for renew_seconds are lost."""
        try:
            leases = await self._list_leases()
            await self._announce(leases.get(self._names.membership))
            mine = self._assigned_to_me(leases)
            settled = await asyncio.gather(  # all at once: a slow API server delays them only once
                *(
                    self._settle(bucket, leases.get(self._names.bucket(bucket)), bucket in mine)
                    for bucket in range(self._buckets)
                ),
                return_exceptions=True,
            )
            for outcome in settled:
                if isinstance(outcome, BaseException):
                    raise outcome
        finally:
            self._drop_stale()

    async def release_all(self) -> None:
        """On shutdown: stop the work of every held bucket, free the bucket leases naming this
        replica and withdraw its membership, so the others take over at their next round."""
        held = sorted(self._renewed_at)
        self._draining.update(held)
        try:
            if self._callbacks.drain is not None and held:
                await self._callbacks.drain(held[0])  # all of them at once: every one is being handed over
        finally:
            self._draining.clear()
        for bucket in held:
            if bucket in self._renewed_at:
                self._lose(bucket)
        with suppress(ApiError):
            leases = await self._list_leases()
            for bucket in range(self._buckets):
                lease = leases.get(self._names.bucket(bucket))
                if lease is not None and holder_of(lease) == self._names.identity:
                    with suppress(ApiError):
                        await self._release(bucket, lease)
        with suppress(ApiError):
            await self._api.request("DELETE", f"{self._names.leases_path}/{self._names.membership}")

    # ----- one round's steps -----

    async def _list_leases(self) -> dict[str, JsonObject]:
        """Every member and bucket lease by name; notes since when each resourceVersion counts."""
        selector = quote(LEASE_LABEL, safe="")
        sent = self._clock.monotonic()
        answer = await self._api.request("GET", f"{self._names.leases_path}?labelSelector={selector}")
        seen = self._clock.monotonic()
        leases = {lease["metadata"]["name"]: lease for lease in answer.get("items") or []}
        changed_since = seen if self._listed_at is None else max(self._listed_at, seen - self._timings.credit)
        self._sightings = {
            name: self._sighting(name, lease["metadata"]["resourceVersion"], since=changed_since)
            for name, lease in leases.items()
        }
        self._listed_at = sent
        self._expiries = [
            self._sightings[name].since + self._duration(lease)
            for name, lease in leases.items()
            if holder_of(lease) not in (None, self._names.identity)
        ]
        return leases

    def _sighting(self, name: str, version: str, *, since: float) -> Sighting:
        seen = self._sightings.get(name)
        return seen if seen is not None and seen.version == version else Sighting(version, since)

    def _expired(self, name: str, lease: JsonObject) -> bool:
        """Unchanged for its leaseDurationSeconds since this replica first saw its resourceVersion."""
        return self._clock.monotonic() - self._sightings[name].since >= self._duration(lease)

    def _duration(self, lease: JsonObject) -> float:
        return float(spec_of(lease).get("leaseDurationSeconds") or self._timings.lease_duration)

    async def _announce(self, membership: JsonObject | None) -> None:
        """Create or renew this replica's membership lease."""
        if membership is not None and not self._due(self._announced_at):
            return
        now = micro_time(self._clock.now())
        spec = {
            "holderIdentity": self._names.identity,
            "leaseDurationSeconds": self._timings.lease_duration,
            "renewTime": now,
        }
        with suppress(Conflict, NotFound):  # changed or gone since the list: look again next round
            if membership is None:
                await self._create(self._names.membership, MEMBER, {**spec, "acquireTime": now})
            else:
                await self._patch(membership, spec)
            self._announced_at = self._clock.monotonic()

    def _assigned_to_me(self, leases: dict[str, JsonObject]) -> set[int]:
        """The buckets the assignment over the live members (this replica always among them) and
        the live holders of the buckets gives to this replica."""
        members = {self._names.identity}
        for name, lease in leases.items():
            holder = holder_of(lease)
            if name.startswith(self._names.member_prefix) and holder and not self._expired(name, lease):
                members.add(holder)
        holders: dict[int, str] = {}
        for bucket in range(self._buckets):
            name = self._names.bucket(bucket)
            holder = holder_of(leases[name]) if name in leases else None
            if holder is not None and (
                holder == self._names.identity or not self._expired(name, leases[name])
            ):
                holders[bucket] = holder
        given = assignment(members, buckets=self._buckets, holders=holders)
        return {bucket for bucket, member in given.items() if member == self._names.identity}

    async def _settle(self, bucket: int, lease: JsonObject | None, assigned: bool) -> None:
        """Renew, release or acquire one bucket's lease (None when missing), as the assignment says."""
        if lease is not None and holder_of(lease) == self._names.identity:
            if not assigned:
                await self._release(bucket, lease)
            elif self._due(self._renewed_at.get(bucket)):
                await self._renew(bucket, lease)
            return
        if bucket in self._renewed_at:
            self._lose(bucket)  # another replica holds it now, or it was freed behind this one's back
        if assigned and (lease is None or self._free_or_expired(bucket, lease)):
            await self._acquire(bucket, lease)

    def _due(self, renewed_at: float | None) -> bool:
        """A lease is renewed every renew_seconds / 3 (not every round: each is a write)."""
        return renewed_at is None or self._clock.monotonic() - renewed_at >= self._timings.renew_every

    def _free_or_expired(self, bucket: int, lease: JsonObject) -> bool:
        return holder_of(lease) is None or self._expired(self._names.bucket(bucket), lease)

    async def _renew(self, bucket: int, lease: JsonObject) -> None:
        sent = self._clock.monotonic()  # others count from when they see the write, which comes after this
        with suppress(Conflict, NotFound):
            await self._patch(lease, {"renewTime": micro_time(self._clock.now())})
            self._hold(bucket, renewed_at=sent)

    async def _acquire(self, bucket: int, lease: JsonObject | None) -> None:
        """Take a free or expired bucket (creating its lease if missing); losing a race does nothing."""
        now = micro_time(self._clock.now())
        spec = {
            "holderIdentity": self._names.identity,
            "leaseDurationSeconds": self._timings.lease_duration,
            "acquireTime": now,
            "renewTime": now,
        }
        sent = self._clock.monotonic()
        with suppress(Conflict, NotFound):
            if lease is None:
                await self._create(self._names.bucket(bucket), BUCKET, {**spec, "leaseTransitions": 0})
            else:
                transitions = spec_of(lease).get("leaseTransitions") or 0
                await self._patch(lease, {**spec, "leaseTransitions": transitions + 1})
            self._hold(bucket, renewed_at=sent)

    async def _release(self, bucket: int, lease: JsonObject) -> None:
        """Stop the bucket's work, then free its lease."""
        if bucket in self._renewed_at:
            await self._hand_over(bucket)
        with suppress(Conflict, NotFound):
            await self._patch(lease, {"holderIdentity": None})

    def _hold(self, bucket: int, *, renewed_at: float) -> None:
        """Note a successful renewal (as of when it was sent); a bucket not held before is gained."""
        gained = bucket not in self._renewed_at
        self._renewed_at[bucket] = renewed_at
        if gained:
            logger.info("bucket %d gained by %s", bucket, self._names.identity)
            self._callbacks.on_gained(bucket)

    async def _hand_over(self, bucket: int) -> None:
        """Give a bucket up on purpose: while `drain` runs it is still held but being handed
        over (no new work starts on it: see `handing_over`), then it is lost."""
        self._draining.add(bucket)
        try:
            if self._callbacks.drain is not None:
                await self._callbacks.drain(bucket)
        finally:
            self._draining.discard(bucket)
        if bucket in self._renewed_at:
            self._lose(bucket)

    def _lose(self, bucket: int) -> None:
        del self._renewed_at[bucket]
        logger.info("bucket %d lost by %s", bucket, self._names.identity)
        self._callbacks.on_lost(bucket)

    def _drop_stale(self) -> None:
        """Lose the buckets whose last successful renewal is older than renew_seconds."""
        now = self._clock.monotonic()
        for bucket, renewed_at in list(self._renewed_at.items()):
            if now - renewed_at > self._timings.renew_seconds:
                self.lapsed += 1
                self._lose(bucket)

    def _seconds_until_stale(self) -> float:
        oldest = min(self._renewed_at.values(), default=self._clock.monotonic())
        return oldest + self._timings.renew_seconds - self._clock.monotonic()

    # ----- the API calls -----

    async def _create(self, name: str, kind: str, spec: JsonObject) -> None:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "labels": {LEASE_LABEL: kind}},
            "spec": spec,
        }
        await self._api.request("POST", self._names.leases_path, body=lease)

    async def _patch(self, lease: JsonObject, spec: JsonObject) -> None:
        """A merge patch of the lease's spec, refused (409) if the lease changed since it was read."""
        metadata = lease["metadata"]
        await self._api.request(
            "PATCH",
            f"{self._names.leases_path}/{metadata['name']}",
            body={"metadata": {"resourceVersion": metadata["resourceVersion"]}, "spec": spec},
            content_type=MERGE_PATCH,
        )
