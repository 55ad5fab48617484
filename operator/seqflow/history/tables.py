"""The history store's tables: runs, task attempts, the activity log, the progress journal,
stored values, cached step outputs and the logs kept of attempts (SQLAlchemy 2.0).

The schema itself is created and upgraded by the Alembic migrations beside this module; these
typed models are what the repository queries. Times are stored as naive UTC with microseconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import Insert

Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite auto-increments INTEGER keys only
Json = JSON().with_variant(mysql.JSON(), "mysql", "mariadb")
Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def insert_ignore(connection: Connection, table: type) -> Insert:
    """An INSERT that leaves a row of the same key as it is."""
    if connection.dialect.name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return mysql.insert(table).prefix_with("IGNORE")


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    """One WorkflowRun: identity, outcome and the data that went in and came out."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        UniqueConstraint("uid", name="uq_runs_uid"),
        Index("ix_runs_namespace_created", "namespace", "created_at", "id"),
        Index("ix_runs_namespace_workflow_created", "namespace", "workflow", "created_at", "id"),
        Index("ix_runs_namespace_phase_created", "namespace", "phase", "created_at", "id"),
        Index("ix_runs_created", "created_at", "id"),
        Index("ix_runs_workflow_created", "workflow", "created_at", "id"),
        Index("ix_runs_phase_created", "phase", "created_at", "id"),
        Index("ix_runs_finished", "finished_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(36))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    workflow: Mapped[str] = mapped_column(String(253))
    workflow_generation: Mapped[int | None] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(16))
    input: Mapped[Any] = mapped_column(Json)
    output: Mapped[Any | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    history_seq: Mapped[int] = mapped_column(Integer, default=0)  # last activity entry applied


class AttemptRow(Base):
    """One attempt of one task of a run."""

    __tablename__ = "task_attempts"
    __table_args__ = (UniqueConstraint("run_uid", "task", "attempt", name="uq_attempts_run_node_attempt"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_uid: Mapped[str] = mapped_column(String(36))
    task_index: Mapped[int] = mapped_column(Integer)
    task: Mapped[str] = mapped_column(String(127))  # the step's id (Group/Member in a group)
    attempt: Mapped[int] = mapped_column(Integer)
    executor: Mapped[str | None] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    input: Mapped[Any | None] = mapped_column(Json)
    output: Mapped[Any | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)


class ActivityRow(Base):
    """One entry of a run's activity log (TASK_STARTED, TASK_RETRY, WORKFLOW_COMPLETED...)."""

    __tablename__ = "activity_log"
    __table_args__ = (UniqueConstraint("run_uid", "seq", name="uq_activity_run_seq"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_uid: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(32))
    task: Mapped[str | None] = mapped_column(String(127))
    attempt: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[Any] = mapped_column(Json)
    occurred_at: Mapped[datetime] = mapped_column(Timestamp)


class JournalRow(Base):
    """An in-process attempt that started, or ended, before its run's status said so (see
    seqflow.history.journal); gone once the run has finished."""

    __tablename__ = "progress_journal"
    __table_args__ = (
        UniqueConstraint("run_uid", "retried", "node", "attempt", "ended", name="uq_journal_attempt"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_uid: Mapped[str] = mapped_column(String(36))
    retried: Mapped[int] = mapped_column(Integer)  # the run's retry count when the attempt ran
    node: Mapped[str] = mapped_column(String(127))
    attempt: Mapped[int] = mapped_column(Integer)
    writer: Mapped[str] = mapped_column(String(36))  # the operator process that appended it
    ended: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[Any | None] = mapped_column(Json)  # output, error, permanent, reason (when ended)
    recorded_at: Mapped[datetime] = mapped_column(Timestamp)


class ValuePartRow(Base):
    """A part of a stored value (values by reference): the value's compact JSON, in parts of at
    most `VALUE_PART_BYTES`, under the sha256 of the whole."""

    __tablename__ = "stored_values"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)  # sha256:<hex>
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)  # of the whole value
    data: Mapped[bytes] = mapped_column(Blob)
    stored_at: Mapped[datetime] = mapped_column(Timestamp)


class ValueHoldRow(Base):
    """A run (or, with no run yet, an upload to a namespace) that holds a stored value: values
    no run holds are collected with the history (retention). Reads are by namespace: a value is
    readable where it is held."""

    __tablename__ = "value_holds"
    __table_args__ = (Index("ix_value_holds_digest_namespace", "digest", "namespace"),)

    run_uid: Mapped[str] = mapped_column(String(36), primary_key=True)  # "" for an upload of no run yet
    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    held_at: Mapped[datetime] = mapped_column(Timestamp)


class CacheEntryRow(Base):
    """A cached step's output, kept under its key (the step's definition and its key's value,
    hashed) for later runs of its Workflow until it expires; a stored output is held by
    `CACHE_HOLDER` meanwhile."""

    __tablename__ = "cache_entries"
    __table_args__ = (Index("ix_cache_entries_expires", "expires_at"),)

    namespace: Mapped[str] = mapped_column(String(63), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(253), primary_key=True)
    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    output: Mapped[Any] = mapped_column(Json)
    stored_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


class AttemptLogRow(Base):
    """The log kept of one attempt (a Job or Pod step's container log, or the logging records of
    an in-process handler): its last `kept` bytes, stored as a value held by the run, of the
    `size` bytes it had."""

    __tablename__ = "attempt_logs"

    run_uid: Mapped[str] = mapped_column(String(36), primary_key=True)
    task: Mapped[str] = mapped_column(String(127), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int] = mapped_column(BigInteger)
    kept: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = mapped_column(Timestamp)


CACHE_HOLDER = "cache"  # the value_holds run_uid of outputs that cache entries name
