"""Cached step outputs in the history store: kept under their key when a cached step succeeds
(in the transaction that writes its TASK_COMPLETED entry), found for later runs of the Workflow
until they expire, and their stored outputs held by `CACHE_HOLDER` meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from seqflow.api.models import HistoryRecord, JsonObject
from seqflow.api.values import ref_of
from seqflow.history.tables import CACHE_HOLDER, CacheEntryRow, ValueHoldRow, insert_ignore


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def keep_cached(connection: Connection, *, namespace: str, workflow: str, record: HistoryRecord) -> None:
    """Keep a cached step's output under its key (the newest wins), held while it is kept."""
    cache, output = record.details["cache"], record.details.get("output") or {}
    at = _naive(record.at)
    connection.execute(
        delete(CacheEntryRow).where(
            CacheEntryRow.namespace == namespace,
            CacheEntryRow.workflow == workflow,
            CacheEntryRow.cache_key == cache["key"],
        )
    )
    entry = {
        "namespace": namespace,
        "workflow": workflow,
        "cache_key": cache["key"],
        "output": output,
        "stored_at": at,
        "expires_at": at + timedelta(seconds=cache["ttlSeconds"]),
    }
    connection.execute(insert(CacheEntryRow), [entry])
    if (ref := ref_of(output)) is not None:
        hold = {"run_uid": CACHE_HOLDER, "digest": ref.digest, "namespace": namespace, "held_at": at}
        connection.execute(insert_ignore(connection, ValueHoldRow), [hold])


def cached_output(
    connection: Connection, *, namespace: str, workflow: str, key: str, now: datetime
) -> JsonObject | None:
    """The output kept under a cached step's key, unless none is or it has expired."""
    found: JsonObject | None = connection.scalar(
        select(CacheEntryRow.output).where(
            CacheEntryRow.namespace == namespace,
            CacheEntryRow.workflow == workflow,
            CacheEntryRow.cache_key == key,
            CacheEntryRow.expires_at > _naive(now),
        )
    )
    return found


def delete_expired_cached(connection: Connection, *, now: datetime) -> None:
    """Delete the entries past their time to live and the holds of outputs no entry names."""
    connection.execute(delete(CacheEntryRow).where(CacheEntryRow.expires_at <= _naive(now)))
    kept = [
        ref.digest
        for (output,) in connection.execute(select(CacheEntryRow.output))
        if (ref := ref_of(output))
    ]
    connection.execute(
        delete(ValueHoldRow).where(ValueHoldRow.run_uid == CACHE_HOLDER, ValueHoldRow.digest.not_in(kept))
    )
