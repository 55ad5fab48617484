"""Moving a run's pending activity log entries from its status into the history store.

Blocking database calls run in worker threads, never on the event loop. A failed write (the
database is down) is reported, not raised: the entries stay in the run's status and the caller
tries again after a delay that grows with each consecutive failure.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from seqflow.api.bodies import key_of, uid_of
from seqflow.api.models import JsonObject
from seqflow.controller.queue import backoff
from seqflow.engine import RunView
from seqflow.history.store import HistoryStore, RunIdentity

logger = logging.getLogger(__name__)


def identity_of(body: JsonObject, run: RunView) -> RunIdentity:
    namespace, name = key_of(body)
    return RunIdentity(
        uid=uid_of(body),
        namespace=namespace,
        name=name,
        workflow=run.spec.workflow_ref.identity,
        input=run.spec.input_ref.to_wire() if run.spec.input_ref else run.status.input or run.spec.input,
        created_at=run.created_at,
    )


class HistoryWriter:
    def __init__(self, store: HistoryStore) -> None:
        self._store = store
        self._failures: dict[str, int] = {}

    async def flush(self, body: JsonObject, run: RunView) -> int | None:
        """Write the run's pending entries; return the last seq now in the store (0 when none
        were pending), or None when the store could not be reached."""
        status = run.status
        if not status.pending_history:
            return 0
        uid = uid_of(body)
        try:
            written = await asyncio.to_thread(
                self._store.write, identity_of(body, run), status.pending_history
            )
        except (SQLAlchemyError, OSError) as error:
            self._failures[uid] = self._failures.get(uid, 0) + 1
            logger.warning(
                "history of %s/%s not written (%d entries pending): %s",
                *key_of(body),
                len(status.pending_history),
                type(error).__name__,
            )
            return None
        self._failures.pop(uid, None)
        return written

    def retry_delay(self, body: JsonObject) -> float:
        return backoff(self._failures.get(uid_of(body), 1))

    async def activity(self, namespace: str, name: str, *, uid: str) -> list[JsonObject] | None:
        try:
            run = await asyncio.to_thread(self._store.get_run, namespace, name)
        except (SQLAlchemyError, OSError) as error:
            logger.warning("history of %s/%s not read: %s", namespace, name, type(error).__name__)
            return None
        if run is None or run["uid"] != uid:
            return []
        activity: list[JsonObject] = run["activity"]
        return activity

    async def cached(self, namespace: str, workflow: str, key: str) -> tuple[bool, JsonObject | None]:
        try:
            now = datetime.now(UTC)
            return True, await asyncio.to_thread(self._store.cached, namespace, workflow, key, now=now)
        except (SQLAlchemyError, OSError) as error:
            logger.warning("cached output of %s/%s not read: %s", namespace, workflow, type(error).__name__)
            return False, None
