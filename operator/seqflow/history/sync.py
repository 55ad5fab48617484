"""Moving a run's pending activity log entries from its status into the history store.

Blocking database calls run in worker threads, never on the event loop. A failed write (the
database is down) is reported, not raised: the entries stay in the run's status and the caller
tries again after a delay that grows with each consecutive failure.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from seqflow.api.models import JsonObject, WorkflowRunSpec, WorkflowRunStatus
from seqflow.history.store import HistoryStore, RunIdentity
from seqflow.workqueue import backoff

logger = logging.getLogger(__name__)


def identity_of(body: JsonObject) -> RunIdentity:
    meta = body["metadata"]
    spec = WorkflowRunSpec.model_validate(body.get("spec") or {})
    return RunIdentity(
        uid=meta["uid"],
        namespace=meta["namespace"],
        name=meta["name"],
        workflow=spec.workflow_ref.name,
        input=spec.input,
        created_at=datetime.fromisoformat(meta["creationTimestamp"]),
    )


class HistoryWriter:
    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        self._failures: dict[str, int] = {}

    async def flush(self, body: JsonObject, status: WorkflowRunStatus) -> int | None:
        """Write the run's pending entries; return the last seq now in the store (0 when none
        were pending), or None when the store could not be reached."""
        if not status.pending_history:
            return 0
        uid = body["metadata"]["uid"]
        try:
            written = await asyncio.to_thread(self.store.write, identity_of(body), status.pending_history)
        except (SQLAlchemyError, OSError) as error:
            self._failures[uid] = self._failures.get(uid, 0) + 1
            logger.warning(
                "history of %s/%s not written (%d entries pending): %s",
                body["metadata"]["namespace"], body["metadata"]["name"],
                len(status.pending_history), type(error).__name__,
            )  # fmt: skip
            return None
        self._failures.pop(uid, None)
        return written

    def retry_delay(self, body: JsonObject) -> float:
        return backoff(self._failures.get(body["metadata"]["uid"], 1))
