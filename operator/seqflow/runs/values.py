"""A run's stored values at the edge of `plan()`: before it, the values its status and spec
name are read (from a cache by digest, else the store) for the engine to see; after it, the new
values a decision names are stored, and held by the run, before its status is written.

A value that cannot be read is left out (the engine holds the run only if it needs it); a
value that cannot be stored is `ValuesNotStored`: that status is not written.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Collection, Mapping
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from seqflow.api.models import JsonObject, WorkflowRunSpec, WorkflowRunStatus
from seqflow.api.values import Encoded, digests_in
from seqflow.engine import AttemptResult, ChildRun, Decision, RunView
from seqflow.runs.state import RunState

logger = logging.getLogger(__name__)
UPLOAD = ""  # the run uid of a hold taken by an upload before its run exists


class ValueStore(Protocol):
    """Where values are kept (seqflow.history.values.StoredValues)."""

    def put(
        self, *, namespace: str, run_uid: str, values: Mapping[str, bytes], holds: Collection[str]
    ) -> None: ...

    def get(self, *, namespace: str, digests: Collection[str]) -> dict[str, bytes]: ...


class ValuesNotStored(Exception):
    """The store did not take a decision's new values: the status naming them waits."""


def read_by_plan(spec: WorkflowRunSpec, status: WorkflowRunStatus) -> set[str]:
    """The digests of the stored values a plan may read: the run's input, the outputs kept in
    its status, its folded nodes and task list (what is only passed on, as in the activity log,
    is not read). The outputs kept in folded nodes are `folded_outputs`."""
    digests = digests_in([status.output, status.input, *_kept_in_nodes(status)]) | _folded(status)
    return digests | {spec.input_ref.ref} if spec.input_ref is not None else digests


def folded_outputs(status: WorkflowRunStatus, found: Mapping[str, JsonObject]) -> set[str]:
    """The digests of the outputs kept in the status's folded nodes, as far as `found` has them."""
    chunks = (found.get(ref.ref) for ref in status.earlier_nodes)
    return digests_in(node.get("output") for chunk in chunks if chunk for node in chunk["nodes"])


def _kept_in_nodes(status: WorkflowRunStatus) -> list[JsonObject | None]:
    """The values the status's nodes keep: outputs, and forEach items."""
    return [n.output for n in status.nodes] + [n.fan_out.items for n in status.nodes if n.fan_out]


def _folded(status: WorkflowRunStatus) -> set[str]:
    tasks = [status.pinned_tasks_ref] if status.pinned_tasks_ref else []
    return {ref.ref for ref in [*status.earlier_nodes, *tasks]}


def new_to_plan(results: Collection[AttemptResult], children: Collection[ChildRun]) -> set[str]:
    """The digests of stored values a plan takes in from outside: outputs that came as
    references (a Job step's sent over HTTP, a child run's)."""
    return digests_in([*(r.output for r in results), *(c.output for c in children)])


def named_by(status: WorkflowRunStatus) -> set[str]:
    """Every digest the status names (the outputs in its folded nodes were named before)."""
    kept = [status.output, status.input, *_kept_in_nodes(status)]
    logged = (v for r in status.pending_history for v in r.details.values())
    return digests_in([*kept, *logged]) | _folded(status)


Place = tuple[str, str]  # (namespace, digest): a value is cached where it was read or stored


class ValueCache:
    """Values read or stored lately, by namespace and digest (a namespace sees only what it
    holds), up to a total of `limit` bytes of JSON."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._values: OrderedDict[Place, tuple[JsonObject, int]] = OrderedDict()

    def get(self, place: Place) -> JsonObject | None:
        found = self._values.get(place)
        if found is None:
            return None
        self._values.move_to_end(place)
        return found[0]

    def put(self, place: Place, value: JsonObject, size: int) -> None:
        if place in self._values or size > self._limit:
            return
        self._values[place] = (value, size)
        self._size += size
        while self._size > self._limit:
            _, (_, evicted) = self._values.popitem(last=False)
            self._size -= evicted


class Values:
    def __init__(self, store: ValueStore, *, cache_bytes: int) -> None:
        self._store = store
        self._cache = ValueCache(cache_bytes)

    async def read_for_plan(self, namespace: str, run: RunView, new: set[str]) -> dict[str, JsonObject]:
        """The values a plan of `run` may read (`read_by_plan`, then the outputs kept in its
        folded nodes) and the `new` ones it takes in, as far as they can be read now."""
        found = await self.read(namespace, read_by_plan(run.spec, run.status) | new)
        inner = folded_outputs(run.status, found) - found.keys()
        return found | await self.read(namespace, inner) if inner else found

    async def read(self, namespace: str, digests: set[str]) -> dict[str, JsonObject]:
        """The values of `digests` that can be read now (held in `namespace`)."""
        found = {d: v for d in digests if (v := self._cache.get((namespace, d))) is not None}
        missing = digests - found.keys()
        if not missing:
            return found
        try:
            read = await asyncio.to_thread(self._store.get, namespace=namespace, digests=missing)
        except (SQLAlchemyError, OSError) as error:
            logger.warning("stored values not read (%d): %s", len(missing), type(error).__name__)
            return found
        for digest, data in read.items():
            value = json.loads(data)
            self._cache.put((namespace, digest), value, len(data))
            found[digest] = value
        return found

    async def upload(self, namespace: str, digest: str, encoded: Encoded, *, run_uid: str = UPLOAD) -> None:
        """Store a value sent to the HTTP API, held by its run: one of a Job step's outputs, or
        the input of a run about to be created (held in its namespace until the run holds it,
        or unclaimed, for an hour)."""
        await self._put(namespace, run_uid, {digest: encoded}, holds=set())

    async def read_encoded(self, namespace: str, digest: str) -> bytes | None:
        """One value's JSON as stored (held in `namespace`), or None."""
        try:
            found = await asyncio.to_thread(self._store.get, namespace=namespace, digests=[digest])
        except (SQLAlchemyError, OSError) as error:
            raise _not_stored(error) from error
        return found.get(digest)

    async def keep(self, namespace: str, uid: str, state: RunState, run: RunView, decision: Decision) -> None:
        """Store the decision's new values, held by the run with every other value its status
        and spec name, before the status is written; `ValuesNotStored` when the store does not
        take them."""
        new = {d: encoded for d, encoded in decision.values.items() if d not in state.held}
        named = named_by(decision.status) | ({run.spec.input_ref.ref} if run.spec.input_ref else set())
        holds = named - state.held - new.keys()
        if not new and not holds:
            return
        await self._put(namespace, uid, new, holds=holds)
        state.held |= new.keys() | holds

    async def _put(self, namespace: str, uid: str, new: Mapping[str, Encoded], *, holds: set[str]) -> None:
        data = {digest: encoded.data for digest, encoded in new.items()}
        try:
            await asyncio.to_thread(
                self._store.put, namespace=namespace, run_uid=uid, values=data, holds=holds
            )
        except (SQLAlchemyError, OSError) as error:
            raise _not_stored(error) from error
        for digest, encoded in new.items():
            self._cache.put((namespace, digest), encoded.value, len(encoded.data))


def _not_stored(error: Exception) -> ValuesNotStored:
    return ValuesNotStored(f"{type(error).__name__}: {error}"[:300])
