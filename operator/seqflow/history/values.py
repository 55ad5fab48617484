"""Stored values in the history database (values by reference): the compact JSON of each value
in parts under its sha256, and which runs hold it.

A value is stored together with its first hold, in one transaction, so no hold names a value
that is not there. Reads are by namespace: a value can be read where some run or upload holds
it, so a reference written into a spec by hand reads nothing of another namespace. Retention
drops the holds of the runs it deletes, then the values nobody holds any more (after a grace
period, so a value being passed on just then is not taken from under its new holder).

The column is LONGBLOB (4 GiB) and each part at most `VALUE_PART_BYTES`, well inside MySQL's and
MariaDB's default `max_allowed_packet` (64 MiB and 16 MiB): the size of a value is bounded by
SEQFLOW_MAX_VALUE_BYTES alone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from seqflow.api.models import JsonObject
from seqflow.api.values import digests_in, ref_of
from seqflow.history.store import HistoryStore
from seqflow.history.tables import ValueHoldRow, ValuePartRow, insert_ignore

VALUE_PART_BYTES = 4 * 1024 * 1024


def value_places(run: JsonObject) -> list[tuple[JsonObject, str]]:
    """Where a run's history (as `HistoryStore.get_run` reads it, with a live status laid over
    or not) holds values: (the object, its key)."""
    holders = [run, *run["attempts"], *(e["details"] for e in run["activity"])]
    holders += (run.get("live") or {}).get("nodes") or []
    return [(h, key) for h in holders for key in ("input", "output") if isinstance(h.get(key), dict)]


def named_in(places: list[tuple[JsonObject, str]]) -> set[str]:
    return digests_in(holder[key] for holder, key in places)


def put_in_place(places: list[tuple[JsonObject, str]], found: Mapping[str, JsonObject]) -> None:
    """The values in `found` in place of their references (the others stay references)."""
    for holder, key in places:
        ref = ref_of(holder[key])
        if ref is not None and ref.digest in found:
            holder[key] = found[ref.digest]


class StoredValues:
    def __init__(self, store: HistoryStore) -> None:
        self._store = store

    def put(
        self, *, namespace: str, run_uid: str, values: Mapping[str, bytes], holds: Collection[str]
    ) -> None:
        """Store `values` (by digest) held by the run, and let it hold the values of `holds`
        too, where they are held in its namespace already (others are not taken)."""
        now = datetime.now(UTC).replace(tzinfo=None)

        def work(connection: Connection) -> None:
            if values:
                insert_parts(connection, values, now=now)
            held = set(values)
            wanted = set(holds) - held
            if wanted:
                held |= set(
                    connection.scalars(
                        select(ValueHoldRow.digest)
                        .where(ValueHoldRow.namespace == namespace, ValueHoldRow.digest.in_(wanted))
                        .distinct()
                    )
                )
            if held:
                rows = [
                    {"run_uid": run_uid, "digest": d, "namespace": namespace, "held_at": now}
                    for d in sorted(held)
                ]
                connection.execute(insert_ignore(connection, ValueHoldRow), rows)

        self._store.transaction(work)

    def get(self, *, namespace: str, digests: Collection[str]) -> dict[str, bytes]:
        """The values of `digests` held in `namespace` (the others are left out)."""
        if not digests:
            return {}
        held = select(ValueHoldRow.digest).where(
            ValueHoldRow.namespace == namespace, ValueHoldRow.digest.in_(set(digests))
        )
        query = (
            select(ValuePartRow.digest, ValuePartRow.size, ValuePartRow.data)
            .where(ValuePartRow.digest.in_(held))
            .order_by(ValuePartRow.digest, ValuePartRow.part)
        )
        parts: dict[str, list[bytes]] = {}
        sizes: dict[str, int] = {}
        with self._store.engine.connect() as connection:
            for digest, size, data in connection.execute(query):
                parts.setdefault(digest, []).append(data)
                sizes[digest] = size
        whole = {digest: b"".join(chunks) for digest, chunks in parts.items()}
        return {digest: data for digest, data in whole.items() if len(data) == sizes[digest]}


def insert_parts(connection: Connection, values: Mapping[str, bytes], *, now: datetime) -> None:
    """Insert the parts of the values not stored yet; those stored are marked as stored now (so
    that a value stored again is not collected as unheld meanwhile)."""
    present = set(
        connection.scalars(select(ValuePartRow.digest).where(ValuePartRow.digest.in_(set(values))).distinct())
    )
    if present:
        connection.execute(update(ValuePartRow).where(ValuePartRow.digest.in_(present)).values(stored_at=now))
    for digest, data in values.items():
        if digest in present:
            continue
        for part, start in enumerate(range(0, max(len(data), 1), VALUE_PART_BYTES)):
            row = {
                "digest": digest,
                "part": part,
                "size": len(data),
                "data": data[start : start + VALUE_PART_BYTES],
                "stored_at": now,
            }  # one statement a part: each stays within the server's max_allowed_packet
            connection.execute(insert_ignore(connection, ValuePartRow), [row])
