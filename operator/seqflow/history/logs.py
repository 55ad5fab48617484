"""The logs kept of attempts: each attempt's log (its tail, when longer than kept) stored as a
value held by its run, so that it is read under the run's namespace and collected with the run's
history, and a row per attempt naming it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from seqflow.history.store import HistoryStore
from seqflow.history.tables import AttemptLogRow, ValueHoldRow, ValuePartRow, insert_ignore
from seqflow.history.values import insert_parts


@dataclass(frozen=True)
class AttemptLog:
    """The log of one attempt: its text as kept (its last bytes), and how long it was."""

    run_uid: str
    task: str
    attempt: int
    text: bytes
    size: int  # bytes the log had; more than len(text) when only its tail is kept

    @property
    def truncated(self) -> bool:
        return self.size > len(self.text)


@dataclass(frozen=True)
class KeptLog:
    """What the history says of a kept log (its text is read apart)."""

    task: str
    attempt: int
    size: int
    kept: int


class StepLogStore:
    def __init__(self, store: HistoryStore) -> None:
        self._store = store

    def keep(self, namespace: str, log: AttemptLog) -> None:
        """Store the log's text as a value held by the run, and its row (once: kept again, the
        first stays)."""
        digest = "sha256:" + hashlib.sha256(log.text).hexdigest()
        now = datetime.now(UTC).replace(tzinfo=None)

        def work(connection: Connection) -> None:
            insert_parts(connection, {digest: log.text}, now=now)
            hold = {"run_uid": log.run_uid, "digest": digest, "namespace": namespace, "held_at": now}
            connection.execute(insert_ignore(connection, ValueHoldRow), [hold])
            row = {
                "run_uid": log.run_uid,
                "task": log.task,
                "attempt": log.attempt,
                "digest": digest,
                "size": log.size,
                "kept": len(log.text),
                "stored_at": now,
            }
            connection.execute(insert_ignore(connection, AttemptLogRow), [row])

        self._store.transaction(work)

    def kept(self, run_uid: str) -> list[KeptLog]:
        """The logs kept of a run's attempts, in step and attempt order."""
        query = (
            select(AttemptLogRow.task, AttemptLogRow.attempt, AttemptLogRow.size, AttemptLogRow.kept)
            .where(AttemptLogRow.run_uid == run_uid)
            .order_by(AttemptLogRow.task, AttemptLogRow.attempt)
        )
        with self._store.engine.connect() as connection:
            return [KeptLog(task=t, attempt=a, size=s, kept=k) for t, a, s, k in connection.execute(query)]

    def read(self, namespace: str, *, run_uid: str, task: str, attempt: int) -> AttemptLog | None:
        """The log kept of one attempt, where its run's values are held in `namespace`."""
        row = (
            select(AttemptLogRow.digest, AttemptLogRow.size)
            .where(
                AttemptLogRow.run_uid == run_uid, AttemptLogRow.task == task, AttemptLogRow.attempt == attempt
            )
            .subquery()
        )
        held = select(ValueHoldRow.digest).where(
            ValueHoldRow.namespace == namespace, ValueHoldRow.run_uid == run_uid
        )
        query = (
            select(row.c.size, ValuePartRow.data)
            .join(ValuePartRow, ValuePartRow.digest == row.c.digest)
            .where(ValuePartRow.digest.in_(held))
            .order_by(ValuePartRow.part)
        )
        with self._store.engine.connect() as connection:
            parts = list(connection.execute(query))
        if not parts:
            return None
        text = b"".join(data for _, data in parts)
        return AttemptLog(run_uid=run_uid, task=task, attempt=attempt, text=text, size=parts[0][0])
