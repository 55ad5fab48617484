"""How a run's status stays small whatever the run holds: nodes of finished steps (and forEach
items) folded, a chunk at a time, into values kept in the history store (`earlierNodes`), and a
large task list kept there too (`pinnedTasksRef`). `expanded` gives the plan the whole status
back; `compacted` folds the planned one again, reusing every chunk whose nodes did not change.
Pure, like the plan.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from seqflow.api.models import (
    JsonObject,
    NodePhase,
    NodeStatus,
    PinnedTask,
    StoredValueRef,
    WorkflowRunStatus,
)
from seqflow.api.values import Encoded, ValueRef, digest_of, encode
from seqflow.engine.types import ValueMissing

# The phases a node ends in (a retry of the run may start a failed or cancelled one again).
FINAL_NODE = (
    NodePhase.SUCCEEDED,
    NodePhase.SKIPPED,
    NodePhase.CACHED,
    NodePhase.FAILED,
    NodePhase.CANCELLED,
    NodePhase.COMPENSATED,
)


@dataclass(frozen=True)
class Chunk:
    """Nodes folded into one stored value, as they were read."""

    ref: StoredValueRef
    nodes: tuple[NodeStatus, ...]


@dataclass(frozen=True)
class Folded:
    """What an expanded status was read from: to reuse what did not change."""

    chunks: tuple[Chunk, ...] = ()
    tasks: tuple[StoredValueRef, list[PinnedTask]] | None = None


def expanded(
    status: WorkflowRunStatus, *, known: Mapping[str, JsonObject]
) -> tuple[WorkflowRunStatus, Folded]:
    """The status with its folded nodes and its task list in place (`ValueMissing` when one of
    them was not observed)."""
    if not status.earlier_nodes and status.pinned_tasks_ref is None:
        return status, Folded()
    chunks = tuple(Chunk(ref, _nodes(_Stored.of(ref, known))) for ref in status.earlier_nodes)
    tasks = None
    if status.pinned_tasks_ref is not None:
        tasks = (status.pinned_tasks_ref, _tasks(_Stored.of(status.pinned_tasks_ref, known)))
    whole = status.model_copy(
        update={
            "nodes": [*(n for c in chunks for n in c.nodes), *status.nodes],
            "earlier_nodes": [],
            "pinned_tasks": tasks[1] if tasks else status.pinned_tasks,
            "pinned_tasks_ref": None,
        }
    )
    return whole, Folded(chunks, tasks)


def compacted(
    status: WorkflowRunStatus, folded: Folded, *, pinned_now: bool, chunk: int, inline_tasks_bytes: int
) -> tuple[WorkflowRunStatus, dict[str, Encoded]]:
    """The status to write, and the new values to store: finished nodes folded `chunk` at a
    time, in their order (while more than `chunk` nodes stay; the folded come first once
    expanded again), and a task list pinned in this plan
    (`pinned_now`) kept by reference when its JSON is larger than `inline_tasks_bytes`."""
    new: dict[str, Encoded] = {}
    nodes, refs, at = status.nodes, list[StoredValueRef](), 0
    for old in folded.chunks:  # the chunks whose nodes did not change stand as they are
        end = at + len(old.nodes)
        if len(nodes) < end or any(a is not b for a, b in zip(nodes[at:end], old.nodes, strict=True)):
            break
        refs.append(old.ref)
        at = end
    live = nodes[at:]
    while len(live) > chunk:  # the first `chunk` finished ones, wherever they are
        done = [i for i, n in enumerate(live) if n.phase in FINAL_NODE][:chunk]
        if len(done) < chunk:
            break
        refs.append(_stored({"nodes": [live[i].to_wire() for i in done]}, new))
        folding = set(done)
        live = [n for i, n in enumerate(live) if i not in folding]
    update: dict[str, object] = {"nodes": live, "earlier_nodes": refs} if refs else {}
    tasks = status.pinned_tasks
    if folded.tasks is not None and tasks is folded.tasks[1]:
        update.update(pinned_tasks=None, pinned_tasks_ref=folded.tasks[0])
    elif tasks is not None and pinned_now:
        listed = {"tasks": [t.to_wire() for t in tasks]}
        if len(encode(listed)) > inline_tasks_bytes:
            update.update(pinned_tasks=None, pinned_tasks_ref=_stored(listed, new))
    return (status.model_copy(update=update) if update else status), new


def _stored(value: JsonObject, new: dict[str, Encoded]) -> StoredValueRef:
    data = encode(value)
    digest = digest_of(data)
    new[digest] = Encoded(value, data)
    return StoredValueRef(ref=digest, size=len(data))


@dataclass(frozen=True)
class _Stored:
    """A stored value, equal to another of its digest (content-addressed: the same value)."""

    digest: str
    value: JsonObject = field(compare=False)

    @staticmethod
    def of(ref: StoredValueRef, known: Mapping[str, JsonObject]) -> _Stored:
        value = known.get(ref.ref)
        if value is None:
            raise ValueMissing(ValueRef(ref.ref, ref.size))
        return _Stored(ref.ref, value)


# Parsed once per digest, not at every plan of a long run (models are immutable: shared safely).
@functools.lru_cache(maxsize=256)
def _nodes(stored: _Stored) -> tuple[NodeStatus, ...]:
    return tuple(NodeStatus.model_validate(n) for n in stored.value["nodes"])


@functools.lru_cache(maxsize=64)
def _tasks(stored: _Stored) -> list[PinnedTask]:
    return [PinnedTask.model_validate(t) for t in stored.value["tasks"]]
