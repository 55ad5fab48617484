"""The history store on both backends it supports: MariaDB (through PyMySQL) and SQLite."""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from seqflow.api.models import HistoryEvent, HistoryRecord
from seqflow.engine import AttemptResult
from seqflow.history.journal import Journal
from seqflow.history.migrate import upgrade
from seqflow.history.store import (
    BadCursor,
    HistoryStore,
    JournalEntry,
    RunFilter,
    RunIdentity,
    create_store_engine,
)
from seqflow.history.tables import ActivityRow, AttemptRow, RunRow
from testenv import MariaDB

T0 = datetime(2001, 1, 1, 10, 0, tzinfo=UTC)  # long ago: retention tests delete only test data


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store(request, tmp_path_factory) -> HistoryStore:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'history.sqlite'}"
    else:
        url = request.getfixturevalue("database_url")
    engine = create_store_engine(url)
    upgrade(engine)
    upgrade(engine)  # a second upgrade is a no-op
    return HistoryStore(engine)


def identity(namespace: str, name: str = "r1", created: datetime = T0) -> RunIdentity:
    return RunIdentity(
        uid=str(uuid.uuid4()),
        namespace=namespace,
        name=name,
        workflow="wf",
        input={"n": 1},
        created_at=created,
    )


def entry(seq: int, type: HistoryEvent, *, task: str | None = None, index=None, attempt=None, **details):
    return HistoryRecord(
        seq=seq,
        type=type,
        at=T0 + timedelta(seconds=seq),
        task=task,
        task_index=index,
        attempt=attempt,
        details=details,
    )


LOG = [
    entry(1, HistoryEvent.WORKFLOW_STARTED, workflow="wf", generation=2, input={"n": 1}),
    entry(2, HistoryEvent.TASK_STARTED, task="A", index=0, attempt=1, input={"n": 1}, executor="handler"),
    entry(3, HistoryEvent.TASK_RETRY, task="A", index=0, attempt=1, error="boom", retry_count=1),
    entry(4, HistoryEvent.TASK_STARTED, task="A", index=0, attempt=2, input={"n": 1}, executor="handler"),
    entry(5, HistoryEvent.TASK_COMPLETED, task="A", index=0, attempt=2, output={"n": 2}),
    entry(6, HistoryEvent.WORKFLOW_COMPLETED, output={"n": 2}),
]


def counts(store: HistoryStore, uid: str) -> tuple[int, int, int]:
    with store.engine.connect() as connection:
        return tuple(
            connection.scalar(select(func.count()).select_from(table).where(column == uid))
            for table, column in (
                (RunRow, RunRow.uid),
                (AttemptRow, AttemptRow.run_uid),
                (ActivityRow, ActivityRow.run_uid),
            )
        )


def test_batches_build_run_attempts_and_log_and_replays_change_nothing(store: HistoryStore):
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    run = identity(namespace)
    assert store.write(run, LOG[:2]) == 2
    middle = store.get_run(namespace, "r1")
    assert middle["phase"] == "Running" and middle["attempts"][0]["phase"] == "Running"

    assert store.write(run, LOG[2:]) == 6
    store.write(run, LOG[2:])  # a replay after a crash
    store.write(run, LOG[:2])
    assert counts(store, run.uid) == (1, 2, 6)

    shown = store.get_run(namespace, "r1")
    assert shown["phase"] == "Succeeded" and shown["output"] == {"n": 2} and shown["input"] == {"n": 1}
    assert shown["workflowGeneration"] == 2
    assert shown["startedAt"] == "2001-01-01T10:00:01Z" and shown["finishedAt"] == "2001-01-01T10:00:06Z"
    first, second = shown["attempts"]
    assert (first["attempt"], first["phase"], first["error"]) == (1, "Failed", "boom")
    assert (second["phase"], second["input"], second["output"]) == ("Succeeded", {"n": 1}, {"n": 2})
    assert second["startedAt"] == "2001-01-01T10:00:04Z"
    assert [a["event"] for a in shown["activity"]] == [e.type for e in LOG]
    assert shown["activity"][2]["details"] == {"error": "boom", "retry_count": 1}


def test_run_that_never_started_is_recorded_as_failed(store: HistoryStore):
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    store.write(
        identity(namespace),
        [
            entry(
                1, HistoryEvent.WORKFLOW_FAILED, reason="WorkflowNotFound", message='Workflow "wf" not found'
            )
        ],
    )
    shown = store.get_run(namespace, "r1")
    assert shown["phase"] == "Failed" and shown["error"] == 'Workflow "wf" not found'
    assert shown["attempts"] == [] and shown["startedAt"] is None


def test_keyset_pages_cover_every_run_once_newest_first(store: HistoryStore):
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    for i in range(23):
        run = identity(namespace, f"run-{i:02d}", T0 + timedelta(seconds=i // 2))  # ties on time
        phase_entry = HistoryEvent.WORKFLOW_COMPLETED if i % 3 else HistoryEvent.WORKFLOW_FAILED
        store.write(run, [entry(1, HistoryEvent.WORKFLOW_STARTED), entry(2, phase_entry, message="x")])
    seen, cursor = [], None
    while True:
        page, cursor = store.list_runs(filter=RunFilter(namespace=namespace), limit=5, cursor=cursor)
        seen += [r["name"] for r in page]
        if cursor is None:
            break
    assert len(seen) == 23 and len(set(seen)) == 23
    created = [int(n.split("-")[1]) // 2 for n in seen]
    assert created == sorted(created, reverse=True)
    failed, _ = store.list_runs(filter=RunFilter(namespace=namespace, phase="Failed"), limit=100)
    assert sorted(r["name"] for r in failed) == [f"run-{i:02d}" for i in range(0, 23, 3)]
    other, _ = store.list_runs(filter=RunFilter(namespace=namespace, workflow="other"))
    assert other == []


def test_lists_carry_no_data_and_filter_by_creation_time(store: HistoryStore):
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    for i in range(6):
        store.write(identity(namespace, f"run-{i}", T0 + timedelta(minutes=i)), LOG)
    window = RunFilter(
        namespace=namespace,
        created_after=T0 + timedelta(minutes=2),  # from, inclusive
        created_before=T0 + timedelta(minutes=4),  # to, exclusive
    )
    page, cursor = store.list_runs(filter=window)
    assert [r["name"] for r in page] == ["run-3", "run-2"] and cursor is None
    assert "input" not in page[0] and "output" not in page[0]  # the run itself has them
    assert page[0]["phase"] == "Succeeded" and page[0]["startedAt"] is not None
    other_zone = RunFilter(
        namespace=namespace, created_after=datetime(2001, 1, 1, 12, 5, tzinfo=timezone(timedelta(hours=2)))
    )
    assert [r["name"] for r in store.list_runs(filter=other_zone)[0]] == ["run-5"]


def test_bad_cursor_is_refused(store: HistoryStore):
    with pytest.raises(BadCursor):
        store.list_runs(filter=RunFilter(), cursor="not-a-cursor")


def test_retention_deletes_old_finished_runs_in_batches(store: HistoryStore):
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    runs = [identity(namespace, f"old-{i}") for i in range(5)]
    for run in runs:
        store.write(run, LOG)  # finished at T0 + 6 s
    recent = identity(namespace, "recent")
    store.write(recent, LOG[:2])  # still running
    assert store.delete_finished_before(T0 + timedelta(seconds=7), batch=2) >= 5
    assert all(counts(store, run.uid) == (0, 0, 0) for run in runs)
    assert counts(store, recent.uid) == (1, 1, 2)


def test_members_of_a_group_get_an_attempt_row_each(store: HistoryStore):
    run = identity("ns-group")
    long_id = "G" * 63 + "/" + "M" * 63  # the longest id a member can have
    log = [
        entry(1, HistoryEvent.WORKFLOW_STARTED, workflow="wf", generation=1, input={}),
        entry(2, HistoryEvent.TASK_STARTED, task="Notify", index=0, attempt=1, executor="parallel"),
        entry(3, HistoryEvent.TASK_STARTED, task="Notify/Email", index=0, attempt=1, executor="handler"),
        entry(4, HistoryEvent.TASK_STARTED, task=long_id, index=0, attempt=1, executor="job"),
        entry(5, HistoryEvent.TASK_COMPLETED, task="Notify/Email", index=0, attempt=1, output={"mail": 1}),
        entry(6, HistoryEvent.TASK_COMPLETED, task=long_id, index=0, attempt=1, output={"sms": 1}),
        entry(
            7, HistoryEvent.TASK_COMPLETED, task="Notify", index=0, attempt=1, output={"mail": 1, "sms": 1}
        ),
    ]
    store.write(run, log)
    store.write(run, log)  # a replay adds nothing
    assert counts(store, run.uid) == (1, 3, 7)
    shown = store.get_run("ns-group", "r1")
    assert shown is not None
    assert sorted((a["task"], a["phase"]) for a in shown["attempts"]) == [
        (long_id, "Succeeded"),
        ("Notify", "Succeeded"),
        ("Notify/Email", "Succeeded"),
    ]


def test_the_journal_keeps_starts_and_ends_until_their_run_is_forgotten(store: HistoryStore):
    run, other = str(uuid.uuid4()), str(uuid.uuid4())
    ended = AttemptResult(node="A", attempt=1, output={"big": "x" * 60_000})
    failed = AttemptResult(node="B", attempt=1, error="boom", permanent=True, reason="TaskFailed")
    started = JournalEntry(run_uid=run, retried=0, node="A", attempt=1, writer="w1")
    entries = [
        started,
        JournalEntry(run_uid=run, retried=0, node="A", attempt=1, writer="w1", result=ended),
        JournalEntry(run_uid=run, retried=0, node="B", attempt=1, writer="w1", result=failed),
        JournalEntry(run_uid=run, retried=1, node="A", attempt=2, writer="w1"),
        JournalEntry(run_uid=other, retried=0, node="A", attempt=1, writer="w2"),
    ]
    store.journal(entries)
    store.journal([started])  # appended again: kept once
    mine = [e for e in store.journaled() if e.run_uid in (run, other)]
    assert mine == entries
    store.journal([], forget=[(run, 0)])  # its first try finished: the retry's entries stay
    assert [(e.run_uid, e.retried) for e in store.journaled() if e.run_uid in (run, other)] == [
        (run, 1),
        (other, 0),
    ]


def test_the_journal_takes_entries_once_open_and_reads_back_only_other_processes(store: HistoryStore):
    run = str(uuid.uuid4())
    first, second = Journal(store), Journal(store)

    async def main() -> None:
        started = JournalEntry(run_uid=run, retried=0, node="A", attempt=1, writer=first.writer)
        assert not await first.write([started])  # the schema may not have its table yet
        first.open()
        ended = AttemptResult(node="A", attempt=1, output={"n": 1})
        assert await first.write([started, replace(started, result=ended)])
        assert (await second.load() or {}).get(run) == {(0, "A", 1): ended}
        assert run not in (await first.load() or {})  # what it wrote itself it knows
        first.forget(run, retried=0)
        await first.write([])  # (the forget goes with the next write)
        assert run not in (await second.load() or {})

    asyncio.run(main())


@pytest.mark.mysql
def test_journal_appends_fail_while_the_server_is_away_and_work_once_it_is_back():
    if os.environ.get("SEQFLOW_TEST_DATABASE_URL"):
        pytest.skip("stops and starts the database server: needs the local MariaDB")
    with MariaDB() as server:
        engine = create_store_engine(server.url)
        upgrade(engine)
        store = HistoryStore(engine)
        run = str(uuid.uuid4())
        store.journal([JournalEntry(run_uid=run, retried=0, node="A", attempt=1, writer="w")])
        server.stop_server()
        with pytest.raises(SQLAlchemyError):
            store.journal([JournalEntry(run_uid=run, retried=0, node="B", attempt=1, writer="w")])
        server.start_server()
        store.journal([JournalEntry(run_uid=run, retried=0, node="C", attempt=1, writer="w")])
        engine.dispose()  # (its pooled connections died with the server: each fails once)
        assert [e.node for e in store.journaled() if e.run_uid == run] == ["A", "C"]
        store.dispose()
