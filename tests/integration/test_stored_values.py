"""Stored values (values by reference) on both backends: parts, holds by namespace, retention."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from seqflow.api.models import HistoryEvent, HistoryRecord
from seqflow.api.values import digest_of, encode
from seqflow.history.logs import AttemptLog, KeptLog, StepLogStore
from seqflow.history.migrate import upgrade
from seqflow.history.store import HistoryStore, RunIdentity, create_store_engine
from seqflow.history.values import VALUE_PART_BYTES, StoredValues
from seqflow.runs.values import UPLOAD

T0 = datetime(2001, 1, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store(request, tmp_path_factory) -> HistoryStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('values') / 'history.sqlite'}"
    else:
        url = request.getfixturevalue("database_url")
    engine = create_store_engine(url)
    upgrade(engine)
    return HistoryStore(engine)


def value_of(size: int) -> tuple[str, bytes]:
    data = encode({"blob": os.urandom(size // 2).hex()[: size - 12]})
    return digest_of(data), data


def test_a_value_larger_than_a_part_comes_back_whole(store: HistoryStore):
    values = StoredValues(store)
    digest, data = value_of(VALUE_PART_BYTES * 2 + 1000)
    uid = str(uuid.uuid4())
    values.put(namespace="ns-a", run_uid=uid, values={digest: data}, holds=())
    assert values.get(namespace="ns-a", digests=[digest]) == {digest: data}
    values.put(namespace="ns-a", run_uid=uid, values={digest: data}, holds=())  # again: no change
    assert values.get(namespace="ns-a", digests=[digest, "sha256:" + "0" * 64]) == {digest: data}


def test_a_value_is_read_only_where_it_is_held_and_a_hold_is_taken_only_there(store: HistoryStore):
    values = StoredValues(store)
    digest, data = value_of(10_000)
    values.put(namespace="ns-b", run_uid=str(uuid.uuid4()), values={digest: data}, holds=())
    assert values.get(namespace="ns-other", digests=[digest]) == {}
    # A reference written by hand in another namespace takes no hold there: still nothing to read.
    values.put(namespace="ns-other", run_uid=str(uuid.uuid4()), values={}, holds=[digest])
    assert values.get(namespace="ns-other", digests=[digest]) == {}
    # In its own namespace, a second run holds it by reference alone.
    values.put(namespace="ns-b", run_uid=str(uuid.uuid4()), values={}, holds=[digest])
    assert values.get(namespace="ns-b", digests=[digest]) == {digest: data}


def test_values_go_with_the_history_of_the_last_run_that_holds_them(store: HistoryStore):
    values = StoredValues(store)
    kept, shared = value_of(9_000), value_of(9_001)
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    for uid in (old, new):
        store.write(RunIdentity(uid, "ns-c", f"r-{uid[:8]}", "wf", {}, T0), [])
    values.put(namespace="ns-c", run_uid=old, values=dict([kept, shared]), holds=())
    values.put(namespace="ns-c", run_uid=new, values={}, holds=[shared[0]])
    _finish(store, old)
    assert store.delete_finished_before(T0 + timedelta(days=1)) >= 1
    store.delete_unheld_values(datetime.now(UTC))  # within the grace period: kept for now
    assert values.get(namespace="ns-c", digests=[kept[0]]) == {}  # no hold left: not readable
    store.delete_unheld_values(datetime.now(UTC) + timedelta(hours=2))
    assert values.get(namespace="ns-c", digests=[shared[0]]) == {shared[0]: shared[1]}  # still held
    values.put(namespace="ns-c", run_uid=new, values={kept[0]: kept[1]}, holds=())  # stored again
    assert values.get(namespace="ns-c", digests=[kept[0]]) == {kept[0]: kept[1]}


def test_an_upload_no_run_claims_is_collected_after_the_grace_period(store: HistoryStore):
    values = StoredValues(store)
    digest, data = value_of(8_000)
    values.put(namespace="ns-d", run_uid=UPLOAD, values={digest: data}, holds=())
    store.delete_unheld_values(datetime.now(UTC))
    assert values.get(namespace="ns-d", digests=[digest]) == {digest: data}
    store.delete_unheld_values(datetime.now(UTC) + timedelta(hours=2))
    assert values.get(namespace="ns-d", digests=[digest]) == {}


def _finish(store: HistoryStore, uid: str) -> None:
    from sqlalchemy import update

    from seqflow.history.tables import RunRow

    with store.engine.begin() as connection:
        connection.execute(
            update(RunRow).where(RunRow.uid == uid).values(finished_at=T0.replace(tzinfo=None))
        )


def test_a_cached_output_is_found_until_it_expires_and_held_while_it_is_kept(store: HistoryStore):
    values = StoredValues(store)
    digest, data = value_of(9_500)
    uid, now = str(uuid.uuid4()), datetime.now(UTC)
    run = RunIdentity(uid, "ns-e", f"r-{uid[:8]}", "exports", {}, T0)
    values.put(namespace="ns-e", run_uid=uid, values={digest: data}, holds=())
    output = {"ref": digest, "size": len(data)}
    done = HistoryRecord(
        seq=1,
        type=HistoryEvent.TASK_COMPLETED,
        at=now,
        task="Export",
        attempt=1,
        details={"output": output, "cache": {"key": "k" * 64, "ttlSeconds": 3 * 3600}},
    )
    store.write(run, [done])
    assert store.cached("ns-e", "exports", "k" * 64, now=now) == output
    assert store.cached("ns-e", "other-workflow", "k" * 64, now=now) is None
    assert store.cached("ns-e", "exports", "k" * 64, now=now + timedelta(hours=3, seconds=1)) is None
    store.delete_runs([uid])  # the run's history goes: the entry still holds its output
    store.delete_unheld_values(now + timedelta(hours=2))  # past the grace period, not the TTL
    assert values.get(namespace="ns-e", digests=[digest]) == {digest: data}
    store.delete_unheld_values(now + timedelta(hours=4))  # expired: entry, hold and value go
    assert store.cached("ns-e", "exports", "k" * 64, now=now) is None
    assert values.get(namespace="ns-e", digests=[digest]) == {}


def test_an_attempts_log_is_kept_once_read_where_its_run_is_and_goes_with_its_history(store: HistoryStore):
    logs = StepLogStore(store)
    run = RunIdentity(
        uid=str(uuid.uuid4()), namespace="ns-a", name="r", workflow="wf", input={}, created_at=T0
    )
    store.write(run, [HistoryRecord(seq=1, type=HistoryEvent.WORKFLOW_STARTED, at=T0)])
    tail = os.urandom(VALUE_PART_BYTES + 10).hex().encode()[: VALUE_PART_BYTES + 10]  # two parts
    logs.keep("ns-a", AttemptLog(run.uid, "Export", 1, tail, size=10 * 1024 * 1024))
    logs.keep("ns-a", AttemptLog(run.uid, "Export", 1, b"a later read", size=12))  # the first stays
    logs.keep("ns-a", AttemptLog(run.uid, "Export", 2, b"done\n", size=5))

    assert logs.kept(run.uid) == [
        KeptLog(task="Export", attempt=1, size=10 * 1024 * 1024, kept=len(tail)),
        KeptLog(task="Export", attempt=2, size=5, kept=5),
    ]
    first = logs.read("ns-a", run_uid=run.uid, task="Export", attempt=1)
    assert first is not None and first.text == tail and first.truncated
    assert logs.read("ns-b", run_uid=run.uid, task="Export", attempt=1) is None  # not held there
    assert logs.read("ns-a", run_uid=run.uid, task="Export", attempt=3) is None

    store.write(
        run, [HistoryRecord(seq=2, type=HistoryEvent.WORKFLOW_COMPLETED, at=T0 + timedelta(seconds=1))]
    )
    store.delete_finished_before(T0 + timedelta(seconds=2))
    assert logs.kept(run.uid) == []
    assert logs.read("ns-a", run_uid=run.uid, task="Export", attempt=2) is None
