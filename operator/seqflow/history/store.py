"""The history store: idempotent writes of activity log entries and the queries that read them.

Writes take a run's identity and a batch of its activity log entries (in order) and, in one
transaction, insert the entries and bring the run and attempt rows up to date. Every row is
keyed (run uid; run uid + task + attempt; run uid + seq) and the run row remembers the last
entry it reflects, so writing a batch again changes nothing: that is what makes replays after
a crash or an outage safe.

It also keeps the progress journal (seqflow.history.journal): rows appended and read whole, and
deleted once their run has finished. The rows' columns and the JSON they are read as are made in
seqflow.history.rows.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    create_engine,
    delete,
    event,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from seqflow.api.models import HistoryEvent, HistoryRecord, JsonObject, RunPhase
from seqflow.engine import AttemptResult
from seqflow.history.cache import cached_output, delete_expired_cached, keep_cached
from seqflow.history.rows import (
    SUMMARY_COLUMNS,
    activity_json,
    activity_values,
    attempt_json,
    attempt_values,
    naive_utc,
    run_changes,
    run_json,
    summary_json,
)
from seqflow.history.tables import (
    ActivityRow,
    AttemptLogRow,
    AttemptRow,
    JournalRow,
    RunRow,
    ValueHoldRow,
    ValuePartRow,
    insert_ignore,
)

MAX_PAGE = 500
UNHELD_GRACE = timedelta(hours=1)
DEADLOCK_RETRIES = 3


def _mysql_code(error: OperationalError) -> int | None:
    args = getattr(error.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


@dataclass(frozen=True)
class RunIdentity:
    uid: str
    namespace: str
    name: str
    workflow: str
    input: JsonObject
    created_at: datetime


@dataclass(frozen=True)
class JournalEntry:
    """An in-process attempt that started (no result) or ended, in the run's `retried`-th retry,
    written by the operator process `writer`."""

    run_uid: str
    retried: int
    node: str
    attempt: int
    writer: str
    result: AttemptResult | None = None


@dataclass(frozen=True)
class RunFilter:
    namespace: str | None = None
    workflow: str | None = None
    phase: str | None = None
    revision: int | None = None  # of the Workflow
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive


class BadCursor(ValueError):
    pass


class NoStore(Exception):
    """The history store to read does not exist, or has no schema yet."""


def open_store(url: str, *, create: bool = True) -> HistoryStore:
    """The store at `url`. An embedded SQLite file is created with its directory when `create`
    is set (the operator); a reader (`create=False`) is told when there is none."""
    store = HistoryStore(create_store_engine(url, create=create))
    if not create and not store.has_schema():
        raise NoStore(
            f"the history store {store.engine.url.render_as_string()} has no schema yet: "
            "run `seqflow migrate`, or start the operator with this SEQFLOW_DATABASE_URL"
        )
    return store


def create_store_engine(url: str, *, create: bool = True) -> Engine:
    """An engine that fails fast when the server is away (so an outage delays, never hangs)."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not create and not Path(path).exists():
            raise NoStore(f"no history store at {Path(path).absolute()} (set SEQFLOW_DATABASE_URL)")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 5})

        @event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # No pre-ping: a connection the server dropped fails one write, which is retried anyway. No
    # reset on return: every use ends its own transaction (a Connection rolls back what it left
    # open when it closes), so a ROLLBACK round trip per use would be wasted.
    return create_engine(url, pool_size=8, max_overflow=8, **_MYSQL_ENGINE)


_MYSQL_ENGINE: dict[str, Any] = {
    "pool_reset_on_return": None,
    "pool_recycle": 300,
    "connect_args": {"connect_timeout": 3, "read_timeout": 10, "write_timeout": 10},
}


class HistoryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._appends: Engine | None = None  # MySQL: the journal's, each statement its own commit
        self._append_sql = ""  # its INSERT, compiled once

    def dispose(self) -> None:
        self.engine.dispose()
        if self._appends is not None:
            self._appends.dispose()

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table(RunRow.__tablename__)

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    # ----- writing -----

    def write(self, run: RunIdentity, records: Iterable[HistoryRecord]) -> int:
        """Write a batch of one run's activity log entries; return the last seq written."""
        records = sorted(records, key=lambda r: r.seq)
        self.transaction(lambda connection: self._write(connection, run, records))
        return records[-1].seq if records else 0

    def transaction(self, work: Callable[[Connection], None]) -> None:
        """Do `work` in a transaction, again when InnoDB picked it as a deadlock victim."""
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                with self.engine.begin() as connection:
                    work(connection)
                return
            except OperationalError as error:
                if attempt == DEADLOCK_RETRIES or _mysql_code(error) not in (1205, 1213):
                    raise

    def _write(self, connection: Connection, run: RunIdentity, records: list[HistoryRecord]) -> None:
        # Create the row first, so that the lock below is on a row, not on a gap of the index
        # (two first writes locking the same gap would deadlock).
        connection.execute(insert_ignore(connection, RunRow), [_new_run_row(run)])
        applied = connection.scalar(select(RunRow.history_seq).where(RunRow.uid == run.uid).with_for_update())
        # Entries the rows already reflect (a replay) must not move them backwards.
        fresh = [r for r in records if r.seq > (applied or 0)]
        if not fresh:
            return
        connection.execute(update(RunRow).where(RunRow.uid == run.uid).values(run_changes(fresh)))
        attempts = attempt_values(run.uid, fresh)
        if attempts:
            self._upsert_attempts(connection, attempts)
        entries = [activity_values(run.uid, r) for r in fresh]
        connection.execute(insert_ignore(connection, ActivityRow), entries)
        for record in fresh:
            if record.type == HistoryEvent.TASK_COMPLETED and "cache" in record.details:
                keep_cached(connection, namespace=run.namespace, workflow=run.workflow, record=record)

    def cached(self, namespace: str, workflow: str, key: str, *, now: datetime) -> JsonObject | None:
        """The output kept under a cached step's key, unless none is or it has expired."""
        with self.engine.connect() as connection:
            return cached_output(connection, namespace=namespace, workflow=workflow, key=key, now=now)

    @staticmethod
    def _upsert_attempts(connection: Connection, rows: list[JsonObject]) -> None:
        """Insert the attempt rows; where one exists (same run, task and attempt), set the
        columns the new row tells. Rows that tell the same columns go in one statement."""
        alike: dict[tuple[str, ...], list[JsonObject]] = {}
        for row in rows:
            alike.setdefault(tuple(sorted(row)), []).append(row)
        for columns, group in alike.items():
            updated = [c for c in columns if c not in _INSERT_ONLY]
            if connection.dialect.name == "sqlite":
                lite = sqlite.insert(AttemptRow)
                unique = ["run_uid", "task", "attempt"]
                updates = {c: lite.excluded[c] for c in updated}
                connection.execute(lite.on_conflict_do_update(index_elements=unique, set_=updates), group)
            else:
                my = mysql.insert(AttemptRow)
                connection.execute(my.on_duplicate_key_update({c: my.inserted[c] for c in updated}), group)

    # ----- the progress journal -----

    def journal(self, entries: Sequence[JournalEntry], *, forget: Sequence[tuple[str, int]] = ()) -> None:
        """Append `entries` (one already there is kept) and delete the entries of the runs in
        `forget` (run uid, of retries up to this one), in one transaction. On MySQL, appending
        alone is one statement that commits itself: one round trip."""
        rows = [_journal_values(e) for e in entries]
        if rows and not forget and self.engine.dialect.name != "sqlite":
            self._append(rows)
            return

        def work(connection: Connection) -> None:
            if rows:
                connection.execute(insert_ignore(connection, JournalRow), rows)
            for run_uid, retried in forget:
                connection.execute(
                    delete(JournalRow).where(JournalRow.run_uid == run_uid, JournalRow.retried <= retried)
                )

        self.transaction(work)

    def _append(self, rows: list[JsonObject]) -> None:
        """One INSERT that commits itself, on a connection of the journal's own (MySQL)."""
        if self._appends is None:
            self._appends = create_engine(
                self.engine.url, isolation_level="AUTOCOMMIT", pool_size=1, **_MYSQL_ENGINE
            )
            insert = mysql.insert(JournalRow).prefix_with("IGNORE")
            self._append_sql = str(insert.compile(dialect=self._appends.dialect, column_keys=list(rows[0])))
        sql = self._append_sql
        values = [
            {**row, "result": None if row["result"] is None else json.dumps(row["result"])} for row in rows
        ]
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            connection = self._appends.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.executemany(sql, values)
                cursor.close()
                return
            except self._appends.dialect.loaded_dbapi.Error as error:
                code = error.args[0] if error.args and isinstance(error.args[0], int) else None
                if attempt < DEADLOCK_RETRIES and code in (1205, 1213):  # a deadlock victim: again
                    continue
                connection.invalidate()  # (the server may have gone: a new connection next time)
                raise DBAPIError(sql, None, error) from error
            finally:
                connection.close()

    def journaled(self) -> list[JournalEntry]:
        """The whole journal (none before the schema has it)."""
        if not inspect(self.engine).has_table(JournalRow.__tablename__):
            return []
        with self.engine.connect() as connection:
            rows = connection.execute(select(JournalRow).order_by(JournalRow.id))
            return [_journal_entry(row) for row in rows]

    # ----- reading -----

    def list_runs(
        self, *, filter: RunFilter, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[JsonObject], str | None]:
        """Runs newest first, without their input and output (the run itself has them); pass the
        returned cursor to get the next page (keyset pagination)."""
        limit = max(1, min(limit, MAX_PAGE))
        query = select(*SUMMARY_COLUMNS).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(limit + 1)
        for column, value in (
            (RunRow.namespace, filter.namespace),
            (RunRow.workflow, filter.workflow),
            (RunRow.phase, filter.phase),
            (RunRow.workflow_generation, filter.revision),
        ):
            if value is not None:
                query = query.where(column == value)
        if filter.created_after is not None:
            query = query.where(RunRow.created_at >= naive_utc(filter.created_after))
        if filter.created_before is not None:
            query = query.where(RunRow.created_at < naive_utc(filter.created_before))
        if cursor:
            created_at, row_id = decode_cursor(cursor)
            query = query.where(
                or_(
                    RunRow.created_at < created_at,
                    and_(RunRow.created_at == created_at, RunRow.id < row_id),
                )
            )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        return [summary_json(r) for r in page], next_cursor

    def get_run(self, namespace: str, name: str) -> JsonObject | None:
        """The newest run of that name, with its attempts and activity log."""
        with self.engine.connect() as connection:
            run = connection.execute(
                select(RunRow)
                .where(RunRow.namespace == namespace, RunRow.name == name)
                .order_by(RunRow.created_at.desc(), RunRow.id.desc())
                .limit(1)
            ).first()
            if run is None:
                return None
            attempts = connection.execute(
                select(AttemptRow)
                .where(AttemptRow.run_uid == run.uid)
                .order_by(AttemptRow.task_index, AttemptRow.attempt)
            ).all()
            activity = connection.execute(
                select(ActivityRow).where(ActivityRow.run_uid == run.uid).order_by(ActivityRow.seq)
            ).all()
        return {
            **run_json(run),
            "attempts": [attempt_json(a) for a in attempts],
            "activity": [activity_json(e) for e in activity],
        }

    # ----- retention -----

    def finished_before(self, cutoff: datetime, *, limit: int = 1000) -> list[tuple[str, str]]:
        """Up to `limit` runs that finished before `cutoff`, as (namespace, uid)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(RunRow.namespace, RunRow.uid)
                .where(RunRow.finished_at < naive_utc(cutoff))
                .limit(limit)
            )
            return [(namespace, uid) for namespace, uid in rows]

    def delete_runs(self, uids: list[str]) -> None:
        """Delete runs with their attempts, activity log, journal, kept logs and value holds."""
        with self.engine.begin() as connection:
            connection.execute(delete(AttemptLogRow).where(AttemptLogRow.run_uid.in_(uids)))
            connection.execute(delete(ActivityRow).where(ActivityRow.run_uid.in_(uids)))
            connection.execute(delete(AttemptRow).where(AttemptRow.run_uid.in_(uids)))
            connection.execute(delete(RunRow).where(RunRow.uid.in_(uids)))
            connection.execute(delete(JournalRow).where(JournalRow.run_uid.in_(uids)))
            connection.execute(delete(ValueHoldRow).where(ValueHoldRow.run_uid.in_(uids)))

    def delete_finished_before(self, cutoff: datetime, *, batch: int = 1000) -> int:
        """Delete runs that finished before `cutoff`, `batch` runs per transaction; return how
        many runs were deleted."""
        deleted = 0
        while runs := self.finished_before(cutoff, limit=batch):
            self.delete_runs([uid for _, uid in runs])
            deleted += len(runs)
        return deleted

    def delete_unheld_values(self, now: datetime) -> None:
        """Delete the holds of uploads whose run never came, and the stored values no run holds,
        each once `UNHELD_GRACE` has passed since it was taken or stored (so that a value being
        passed on just then is not taken from under its new holder)."""
        before = naive_utc(now - UNHELD_GRACE)
        with self.engine.begin() as connection:
            connection.execute(
                delete(ValueHoldRow).where(ValueHoldRow.run_uid == "", ValueHoldRow.held_at < before)
            )
            delete_expired_cached(connection, now=now)
            held = select(ValueHoldRow.digest).distinct()
            connection.execute(
                delete(ValuePartRow).where(ValuePartRow.stored_at < before, ValuePartRow.digest.not_in(held))
            )


def _journal_values(entry: JournalEntry) -> JsonObject:
    result = entry.result
    ended = None
    if result is not None:
        ended = {
            "output": result.output,
            "error": result.error,
            "permanent": result.permanent,
            "reason": result.reason,
        }
    return {
        "run_uid": entry.run_uid,
        "retried": entry.retried,
        "node": entry.node,
        "attempt": entry.attempt,
        "writer": entry.writer,
        "ended": result is not None,
        "result": ended,
        "recorded_at": naive_utc(datetime.now(UTC)),
    }


def _journal_entry(row: Any) -> JournalEntry:
    result = None
    if row.ended:
        ended = row.result or {}
        result = AttemptResult(
            node=row.node,
            attempt=row.attempt,
            output=ended.get("output"),
            error=ended.get("error"),
            permanent=bool(ended.get("permanent")),
            reason=ended.get("reason"),
        )
    return JournalEntry(
        run_uid=row.run_uid,
        retried=row.retried,
        node=row.node,
        attempt=row.attempt,
        writer=row.writer,
        result=result,
    )


# Columns of an attempt row set when it is first written and never changed by a later write.
_INSERT_ONLY = {"run_uid", "task_index", "attempt", "task"}


def _new_run_row(run: RunIdentity) -> JsonObject:
    """A run's row before any activity log entry is applied to it."""
    return {
        "uid": run.uid,
        "namespace": run.namespace,
        "name": run.name,
        "workflow": run.workflow,
        "input": run.input,
        "created_at": naive_utc(run.created_at),
        "phase": RunPhase.PENDING.value,
        "history_seq": 0,
    }


def encode_cursor(created_at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        created_at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created_at), int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise BadCursor("cursor is not one this API returned") from error
