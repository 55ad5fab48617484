"""Engine defects the fuzz has found, each reproduced in tests/unit/test_engine_fuzz.py (xfail
until fixed): what each is, and how to tell a fuzz failure that shows it from a new one.

When a fix lands, its reproduction passes (a strict xfail then fails the suite): remove its entry
here, and the fuzz holds the engine to it from then on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from seqflow.api.models import NodePhase, NodeType
from tests.engine_fuzz.drive import FuzzFailure


@dataclass(frozen=True)
class Defect:
    """An engine defect the fuzz finds: what it is, and how to tell its failures from others."""

    reason: str
    matches: Callable[[FuzzFailure], bool]


def _group_stall(failure: FuzzFailure) -> bool:
    """A group Running with a member Failed and another Retrying, and nothing going on."""
    if failure.kind not in ("stalled", "unfinished"):
        return False
    for group in failure.status.nodes:
        if group.type == NodeType.PARALLEL and group.phase == NodePhase.RUNNING:
            members = [n.phase for n in failure.status.nodes if n.id.startswith(group.id + "/")]
            if NodePhase.FAILED in members and NodePhase.RETRYING in members:
                return True
    return False


def _wait_ended_in_its_start(failure: FuzzFailure) -> bool:
    """The last thing the decision did was a wait step's end, and nothing is under way."""
    history = failure.status.pending_history
    last = history[-1] if history else None
    node = failure.status.node(last.task) if last is not None and last.task else None
    ended = last is not None and last.type.value == "TASK_COMPLETED" and node is not None
    return (
        failure.kind in ("condition", "stalled")
        and ended
        and node is not None
        and node.type == NodeType.WAIT
        and not failure.status.current
    )


def _when_after_retry(failure: FuzzFailure) -> bool:
    return failure.kind == "when" and "'retry'" in failure.trace[-1]


def _compensation_restarted(failure: FuzzFailure) -> bool:
    return failure.kind in ("attempt again", "attempts", "reused name") and ":compensate" in failure.message


def _condition_under_hold(failure: FuzzFailure) -> bool:
    return failure.kind == "condition" and " hold" in failure.trace[-1]


def _cancel_before_start(failure: FuzzFailure) -> bool:
    return failure.kind == "cancel" and failure.status.pinned_tasks is None


def _job_of_a_cancelled_member(failure: FuzzFailure) -> bool:
    return (
        failure.kind == "start" and failure.message.startswith("CreateJob") and "Cancelled" in failure.message
    )


KNOWN: dict[str, Defect] = {
    "group-member-retry-stalls": Defect(
        "a parallel group in which one member failed for good while another waits out its backoff "
        "never ends: no member starts once one has failed, so the retry never starts, and no WakeAt "
        "is asked; the run stays Running",
        _group_stall,
    ),
    "signal-before-wait-stalls": Defect(
        "a wait step whose signal was sent before the step starts ends inside its start, and the "
        "next step is not started in that plan, nor a WakeAt asked: the run stalls (its Succeeded "
        "condition missing when the wait is the first step, stale after a retry)",
        _wait_ended_in_its_start,
    ),
    "retry-skips-when": Defect(
        "a retry runs steps without evaluating their `when`: a step whose `when` could not be "
        "evaluated (ConditionFailed) runs on a retry; after a compensated retry, steps that ran "
        "before run again though their `when` is false on the new data",
        _when_after_retry,
    ),
    "compensation-attempts-restart": Defect(
        "after a retry of a compensated run, a compensation that runs again starts over at attempt "
        "1: its node's attempts go down and its Job gets the name of the first compensation's "
        "Job, so that finished Job is found and its outcome taken for the new attempt",
        _compensation_restarted,
    ),
    "hold-leaves-condition": Defect(
        "a plan with `hold` (the run being handed to another replica) that starts a run leaves it "
        "Running without a Succeeded condition (or, for a retried run, with the Failed one)",
        _condition_under_hold,
    ),
    "cancel-before-start-ignored": Defect(
        "spec.cancel on a run that has not started (queued behind its Workflow's concurrency "
        "limit, or waiting for its Workflow) is not acted on: the run stays Pending, or fails "
        "WorkflowNotFound",
        _cancel_before_start,
    ),
    "job-created-for-cancelled-member": Defect(
        "a failFast group that fails in a plan in which a member's Job was not seen creates that "
        "Job again and deletes it in the same decision: CreateJob for a node the status says is "
        "Cancelled",
        _job_of_a_cancelled_member,
    ),
}


def known_defect(failure: FuzzFailure) -> str | None:
    """The name of the known defect a failure shows, if it is one."""
    return next((name for name, defect in KNOWN.items() if defect.matches(failure)), None)
