"""Table tests of the engine: rows of a given status, the spec's intent and what was observed,
and the status, phase, actions and activity log entries `plan()` must decide from them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from seqflow.api.models import (
    ConditionStatus,
    FailureCause,
    HistoryEvent,
    NodePhase,
    Reason,
    RunPhase,
    StoredArtifact,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowSpec,
    upgrade_status,
)
from seqflow.api.values import digest_of, encode
from seqflow.engine import (
    AttemptResult,
    CancelHandler,
    ChildRun,
    ControlChildRun,
    CreateChildRun,
    CreateJob,
    Decision,
    DeleteJob,
    DeleteRun,
    EngineOptions,
    InputRead,
    Observations,
    PostEvent,
    RunHandler,
    RunView,
    WakeAt,
    WorkflowView,
    derive_phase,
    fail_unrecordable,
    plan,
    workflow_problem,
)
from seqflow.engine.compaction import expanded
from seqflow.engine.plan import INTERRUPTED

T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
OPTIONS = EngineOptions(
    workflow_wait=timedelta(seconds=30), default_timeout_seconds=60, max_value_bytes=64 * 1024
)
HANDLERS = frozenset({"a", "b", "c"})


def workflow(tasks: list[dict[str, Any]], **spec: Any) -> WorkflowView:
    return WorkflowView(spec=WorkflowSpec.model_validate({"tasks": tasks, **spec}), generation=4)


ABC = workflow(
    [
        {"name": "A", "handler": "a"},
        {"name": "B", "handler": "b", "retry": {"maxRetries": 3}, "timeoutSeconds": 5},
        {"name": "C", "handler": "c"},
    ],
    defaults={"retry": {"maxRetries": 2, "backoffSeconds": 2, "backoffFactor": 3}},
)
AJ = workflow(
    [
        {"name": "A", "handler": "a"},
        {
            "name": "J",
            "job": {"image": "registry.example/mailer:1.2"},
            "retry": {"maxRetries": 1, "backoffSeconds": 5},
        },
    ]
)


def ok(node: str, attempt: int, output: dict[str, Any] | None = None) -> AttemptResult:
    return AttemptResult(node=node, attempt=attempt, output=output or {})


def err(node: str, attempt: int, message: str = "boom", **kw: Any) -> AttemptResult:
    return AttemptResult(node=node, attempt=attempt, error=message, **kw)


def go(
    status: WorkflowRunStatus | None = None,
    *,
    at: float = 0,
    wf: WorkflowView | None = ABC,
    spec: dict[str, Any] | None = None,
    options: EngineOptions = OPTIONS,
    depth: int = 0,
    **observed: Any,
) -> Decision:
    run_spec = WorkflowRunSpec.model_validate(
        {"workflowRef": {"name": "wf"}, "input": {"n": 1}, **(spec or {})}
    )
    run = RunView(
        name="r",
        spec=run_spec,
        status=status or WorkflowRunStatus(),
        generation=1,
        created_at=T0,
        depth=depth,
    )
    seen = Observations(**{"workflow": wf, "handlers": HANDLERS, **observed})
    return plan(run=run, observed=seen, now=T0 + timedelta(seconds=at), options=options)


# ----- givens: statuses reached by earlier rows -----

A_RUNNING = go().status
A_RETRYING = go(A_RUNNING, at=1, results=(err("A", 1),)).status
B_RUNNING = go(A_RUNNING, at=1, results=(ok("A", 1, {"n": 2}),)).status
B_FAILED = go(B_RUNNING, at=2, results=(err("B", 1, "card declined", permanent=True),)).status
C_RUNNING = go(B_RUNNING, at=2, results=(ok("B", 1, {"n": 3}),)).status
J_RUNNING = go(go(wf=AJ).status, at=1, wf=AJ, results=(ok("A", 1, {"to": "bob"}),)).status
SUSPENDED = go(B_RUNNING, at=2, spec={"suspend": True}, results=(ok("B", 1, {"n": 3}),)).status
CANCELLED = go(B_RUNNING, at=2, spec={"cancel": True}).status


@dataclass(frozen=True)
class Row:
    given: WorkflowRunStatus | None
    observed: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    at: float = 5
    wf: WorkflowView | None = ABC
    # expected
    phase: RunPhase | None = None
    nodes: dict[str, tuple[NodePhase, int]] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    reason: str | None = None


ROWS = {
    "a new run starts its first task with the run's input": Row(
        None, at=0, phase=RunPhase.RUNNING, nodes={"A": (NodePhase.RUNNING, 1)},
        actions=["PostEvent", "RunHandler"], entries=["WORKFLOW_STARTED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "a success starts the next task in the same write": Row(
        A_RUNNING, {"results": (ok("A", 1, {"n": 2}),)}, phase=RunPhase.RUNNING,
        nodes={"A": (NodePhase.SUCCEEDED, 1), "B": (NodePhase.RUNNING, 1)},
        actions=["RunHandler"], entries=["TASK_COMPLETED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "the last success ends the run": Row(
        C_RUNNING, {"results": (ok("C", 1, {"n": 4}),)}, phase=RunPhase.SUCCEEDED,
        nodes={"C": (NodePhase.SUCCEEDED, 1)}, actions=["PostEvent"],
        entries=["TASK_COMPLETED", "WORKFLOW_COMPLETED"], reason="Succeeded",
    ),
    "a failure within the budget waits for its backoff": Row(
        A_RUNNING, {"results": (err("A", 1),)}, phase=RunPhase.RUNNING, nodes={"A": (NodePhase.RETRYING, 1)},
        actions=["PostEvent", "WakeAt"], entries=["TASK_RETRY"], reason="TaskRetrying",
    ),
    "a backoff not yet over only sets a timer": Row(
        A_RETRYING, at=2, phase=RunPhase.RUNNING, nodes={"A": (NodePhase.RETRYING, 1)}, actions=["WakeAt"],
        reason="TaskRetrying",
    ),
    "a backoff over starts the next attempt": Row(
        A_RETRYING, at=3, phase=RunPhase.RUNNING, nodes={"A": (NodePhase.RUNNING, 2)}, actions=["RunHandler"],
        entries=["TASK_STARTED"], reason="TaskStarted",
    ),
    "a permanent error fails the run at once": Row(
        B_RUNNING, {"results": (err("B", 1, permanent=True),)}, phase=RunPhase.FAILED,
        nodes={"B": (NodePhase.FAILED, 1)}, actions=["PostEvent"], entries=["TASK_FAILED", "WORKFLOW_FAILED"],
        reason="TaskFailed",
    ),
    "an attempt nobody runs any more was interrupted": Row(
        A_RUNNING, phase=RunPhase.RUNNING, nodes={"A": (NodePhase.RETRYING, 1)}, actions=["PostEvent", "WakeAt"],
        entries=["TASK_RETRY"], reason="TaskRetrying",
    ),
    "an attempt under way is left alone": Row(
        A_RUNNING, {"handlers_running": frozenset({("A", 1)})}, phase=RunPhase.RUNNING,
        nodes={"A": (NodePhase.RUNNING, 1)}, reason="TaskStarted",
    ),
    "a stale result of an earlier attempt is ignored": Row(
        A_RUNNING, {"results": (ok("A", 7),), "handlers_running": frozenset({("A", 1)})}, phase=RunPhase.RUNNING,
        nodes={"A": (NodePhase.RUNNING, 1)}, reason="TaskStarted",
    ),
    "a Job that runs is left alone": Row(
        J_RUNNING, {"jobs_running": frozenset({"J"})}, wf=AJ, phase=RunPhase.RUNNING,
        nodes={"J": (NodePhase.RUNNING, 1)}, reason="TaskStarted",
    ),
    "a Job not seen is created again, for the same attempt": Row(
        J_RUNNING, wf=AJ, phase=RunPhase.RUNNING, nodes={"J": (NodePhase.RUNNING, 1)}, actions=["CreateJob"],
        reason="TaskStarted",
    ),
    "a foreign Job in the way holds the run, says so once and looks again": Row(
        J_RUNNING, {"blocked": {"J": "a Job named x exists"}}, wf=AJ, phase=RunPhase.RUNNING,
        nodes={"J": (NodePhase.RUNNING, 1)}, actions=["PostEvent", "WakeAt"], reason="AttemptBlocked",
    ),
    "a missing Workflow is waited for": Row(
        None, wf=None, at=0, phase=RunPhase.PENDING, actions=["PostEvent", "WakeAt"], reason="WaitingForWorkflow",
    ),
    "a Workflow still missing after the wait fails the run": Row(
        None, wf=None, at=30, phase=RunPhase.FAILED, actions=["PostEvent"], entries=["WORKFLOW_FAILED"],
        reason="WorkflowNotFound",
    ),
    "an unknown handler fails the run before anything runs": Row(
        None, {"handlers": frozenset({"a"})}, at=0, phase=RunPhase.FAILED, actions=["PostEvent"],
        entries=["WORKFLOW_FAILED"], reason="HandlerNotFound",
    ),
    "an input over the limit fails the run before anything else": Row(
        None, spec={"input": {"blob": "x" * 70_000}}, wf=None, at=0, phase=RunPhase.FAILED, actions=["PostEvent"],
        entries=["WORKFLOW_FAILED"], reason="InputTooLarge",
    ),
    "a deleted run ends cancelled, its attempt too": Row(
        A_RUNNING, {"deleted": True, "handlers_running": frozenset({("A", 1)})}, phase=RunPhase.CANCELLED,
        nodes={"A": (NodePhase.CANCELLED, 1)}, actions=["CancelHandler"],
        entries=["TASK_CANCELLED", "WORKFLOW_CANCELLED"], reason="RunDeleted",
    ),
    "a run deleted during a backoff has no attempt to cancel": Row(
        A_RETRYING, {"deleted": True}, phase=RunPhase.CANCELLED, nodes={"A": (NodePhase.CANCELLED, 1)},
        entries=["WORKFLOW_CANCELLED"], reason="RunDeleted",
    ),
    "a run deleted before it started is cancelled": Row(
        None, {"deleted": True}, wf=None, at=0, phase=RunPhase.CANCELLED, entries=["WORKFLOW_CANCELLED"],
        reason="RunDeleted",
    ),
    "cancel stops a running handler": Row(
        B_RUNNING, {"handlers_running": frozenset({("B", 1)})}, spec={"cancel": True}, phase=RunPhase.CANCELLED,
        nodes={"A": (NodePhase.SUCCEEDED, 1), "B": (NodePhase.CANCELLED, 1)}, actions=["CancelHandler", "PostEvent"],
        entries=["TASK_CANCELLED", "WORKFLOW_CANCELLED"], reason="Cancelled",
    ),
    "cancel deletes a running Job": Row(
        J_RUNNING, {"jobs_running": frozenset({"J"})}, spec={"cancel": True}, wf=AJ, phase=RunPhase.CANCELLED,
        nodes={"J": (NodePhase.CANCELLED, 1)}, actions=["DeleteJob", "PostEvent"],
        entries=["TASK_CANCELLED", "WORKFLOW_CANCELLED"], reason="Cancelled",
    ),
    "cancel during a backoff": Row(
        A_RETRYING, spec={"cancel": True}, phase=RunPhase.CANCELLED, nodes={"A": (NodePhase.CANCELLED, 1)},
        actions=["PostEvent"], entries=["WORKFLOW_CANCELLED"], reason="Cancelled",
    ),
    "a late result of a cancelled attempt changes nothing": Row(
        CANCELLED, {"results": (ok("B", 1),)}, spec={"cancel": True}, phase=RunPhase.CANCELLED,
        nodes={"B": (NodePhase.CANCELLED, 1)}, reason="Cancelled",
    ),
    "progress unknown: an attempt nobody runs here is neither interrupted nor started again": Row(
        A_RUNNING, {"progress_unknown": True}, phase=RunPhase.RUNNING, nodes={"A": (NodePhase.RUNNING, 1)},
        actions=["PostEvent"], reason="ProgressUnknown",
    ),
    "progress unknown: a result is taken in, the next in-process step waits": Row(
        A_RUNNING, {"results": (ok("A", 1, {"n": 2}),), "progress_unknown": True}, phase=RunPhase.RUNNING,
        nodes={"A": (NodePhase.SUCCEEDED, 1)}, actions=["PostEvent"], entries=["TASK_COMPLETED"],
        reason="ProgressUnknown",
    ),
    "progress unknown: a Job step starts as usual": Row(
        go(wf=AJ).status, {"results": (ok("A", 1),), "progress_unknown": True}, wf=AJ, phase=RunPhase.RUNNING,
        nodes={"J": (NodePhase.RUNNING, 1)}, actions=["CreateJob"], entries=["TASK_COMPLETED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
    "a run being handed to another replica takes its result in and starts nothing": Row(
        A_RUNNING, {"results": (ok("A", 1, {"n": 2}),), "hold": True}, phase=RunPhase.RUNNING,
        nodes={"A": (NodePhase.SUCCEEDED, 1)}, actions=[], entries=["TASK_COMPLETED"], reason="TaskStarted",
    ),
    "suspend lets the running attempt finish and starts nothing new": Row(
        B_RUNNING, {"results": (ok("B", 1),)}, spec={"suspend": True}, phase=RunPhase.SUSPENDED,
        nodes={"B": (NodePhase.SUCCEEDED, 1)}, actions=["PostEvent"],
        entries=["TASK_COMPLETED", "RUN_SUSPENDED"], reason="Suspended",
    ),
    "suspended while an attempt runs: Suspended already": Row(
        B_RUNNING, {"handlers_running": frozenset({("B", 1)})}, spec={"suspend": True}, phase=RunPhase.SUSPENDED,
        nodes={"B": (NodePhase.RUNNING, 1)}, actions=["PostEvent"], entries=["RUN_SUSPENDED"], reason="Suspended",
    ),
    "a suspended run stays so": Row(
        SUSPENDED, spec={"suspend": True}, phase=RunPhase.SUSPENDED, nodes={"B": (NodePhase.SUCCEEDED, 1)},
        reason="Suspended",
    ),
    "resume starts the next step at once": Row(
        SUSPENDED, spec={"suspend": False}, phase=RunPhase.RUNNING, nodes={"C": (NodePhase.RUNNING, 1)},
        actions=["RunHandler", "PostEvent"], entries=["TASK_STARTED", "RUN_RESUMED"], reason="TaskStarted",
    ),
    "a suspended backoff keeps its due time and starts nothing": Row(
        A_RETRYING, spec={"suspend": True}, at=10, phase=RunPhase.SUSPENDED, nodes={"A": (NodePhase.RETRYING, 1)},
        actions=["PostEvent"], entries=["RUN_SUSPENDED"], reason="Suspended",
    ),
    "retry runs a failed run again from its failed step": Row(
        B_FAILED, spec={"retry": 1}, phase=RunPhase.RUNNING,
        nodes={"A": (NodePhase.SUCCEEDED, 1), "B": (NodePhase.RUNNING, 2)}, actions=["PostEvent", "RunHandler"],
        entries=["RUN_RETRIED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "retry runs a cancelled run again (its cancel was spent)": Row(
        CANCELLED, spec={"cancel": True, "retry": 1}, phase=RunPhase.RUNNING, nodes={"B": (NodePhase.RUNNING, 2)},
        actions=["PostEvent", "RunHandler"], entries=["RUN_RETRIED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "a finished run does nothing more": Row(
        B_FAILED, {"results": (ok("B", 1),)}, phase=RunPhase.FAILED, nodes={"B": (NodePhase.FAILED, 1)},
        reason="TaskFailed",
    ),
}  # fmt: skip


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_transitions(row: Row):
    check(row)


def check(row: Row, *, current: Callable[[WorkflowRunStatus], list[str]] | None = None) -> None:
    """Plan the row and compare; `current` gives the nodes the status names as current (by
    default, every node under way)."""
    before = row.given.history_seq if row.given else 0
    decision = go(row.given, at=row.at, wf=row.wf, spec=row.spec, **row.observed)
    status = decision.status
    assert status.phase == row.phase
    for node, (phase, attempts) in row.nodes.items():
        found = status.node(node)
        assert found is not None and (found.phase, found.attempts) == (phase, attempts), status.nodes
    assert [type(a).__name__ for a in decision.actions] == row.actions
    assert [r.type.value for r in status.pending_history if r.seq > before] == row.entries
    (condition,) = [c for c in status.conditions if c.type == "Succeeded"]
    assert condition.reason == row.reason
    active = (NodePhase.RUNNING, NodePhase.RETRYING, NodePhase.WAITING)
    assert status.current == (
        current(status) if current else [n.id for n in status.nodes if n.phase in active]
    )


# ----- what the rows do not show: data, timing, messages -----


def only(actions: tuple[Any, ...], kind: type) -> Any:
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, actions
    return found[0]


def test_start_pins_the_definition_with_defaults_resolved():
    status = go().status
    assert [t.name for t in status.pinned_tasks or []] == ["A", "B", "C"]
    a, b, _ = status.pinned_tasks or []
    assert (a.retry.max_retries, b.retry.max_retries, b.retry.backoff_factor) == (2, 3, 3)
    assert (a.timeout_seconds, b.timeout_seconds) == (60, 5)
    assert status.workflow_generation == 4 and status.started_at == T0 and status.progress == "0/3"
    assert only(go().actions, RunHandler).input == {"n": 1}
    assert "(generation 4, 3 tasks)" in only(go().actions, PostEvent).message


def test_outputs_flow_into_the_next_input_and_become_the_run_output():
    assert only(go(A_RUNNING, at=1, results=(ok("A", 1, {"n": 2}),)).actions, RunHandler).input == {"n": 2}
    done = go(C_RUNNING, at=3, results=(ok("C", 1, {"n": 9}),)).status
    assert done.output == {"n": 9} and done.progress == "3/3" and done.current == [] and done.finished_at


def test_backoff_grows_by_its_factor_and_exhaustion_fails_the_run():
    status = A_RUNNING
    for attempt, (at, delay) in enumerate([(1, 2), (3, 6)], start=1):
        status = go(status, at=at, results=(err("A", attempt),)).status
        node = status.node("A")
        assert node is not None and node.next_retry_at == T0 + timedelta(seconds=at + delay)
        status = go(status, at=at + delay).status
    failed = go(status, at=20, results=(err("A", 3, "still broken"),)).status
    assert failed.phase == RunPhase.FAILED and "(3 attempts): still broken" in failed.conditions[0].message


def test_interrupted_attempt_is_retried_with_that_reason():
    status = go(A_RUNNING, at=1).status
    node = status.node("A")
    assert node is not None and node.last_error == INTERRUPTED
    assert status.pending_history[-1].details["reason"] == "TaskInterrupted"


def test_retry_gives_a_fresh_budget_and_keeps_earlier_outputs():
    retried = go(B_FAILED, at=10, spec={"retry": 1})
    b = retried.status.node("B")
    assert b is not None and (b.attempts, b.budget_from) == (2, 1)
    assert only(retried.actions, RunHandler).input == {"n": 2}  # A's output, kept
    assert retried.status.retried == 1 and retried.status.finished_at is None
    # B may now fail 3 more times (its policy) before the run fails again.
    status = retried.status
    for attempt in (2, 3, 4):
        status = go(status, at=10 + attempt * 100, spec={"retry": 1}, results=(err("B", attempt),)).status
        assert status.phase == RunPhase.RUNNING
        status = go(status, at=10 + attempt * 100 + 90, spec={"retry": 1}).status
    status = go(status, at=1000, spec={"retry": 1}, results=(err("B", 5),)).status
    assert status.phase == RunPhase.FAILED


def test_retry_raised_while_running_is_only_acknowledged():
    status = go(B_RUNNING, spec={"retry": 2}, handlers_running=frozenset({("B", 1)})).status
    assert status.retried == 2 and status.phase == RunPhase.RUNNING
    later = go(status, spec={"retry": 2}, results=(err("B", 1, permanent=True),)).status
    assert go(later, at=9, spec={"retry": 2}).status.phase == RunPhase.FAILED  # no retry of the old raise


def test_cancel_records_why_and_drops_nothing_that_succeeded():
    status = CANCELLED
    assert status.output == {"n": 2} and status.finished_at is not None
    assert status.pending_history[-1].details == {
        "reason": "Cancelled",
        "message": "The run was cancelled (spec.cancel)",
    }


def test_a_job_step_gets_a_name_from_its_id_and_attempt():
    action = only(go(go(wf=AJ).status, at=1, wf=AJ, results=(ok("A", 1, {"to": "bob"}),)).actions, CreateJob)
    assert (action.node, action.attempt, action.input, action.name) == ("J", 1, {"to": "bob"}, action.name)
    assert action.name.startswith("r-j-1-")
    assert J_RUNNING.node("J") and J_RUNNING.node("J").job == action.name  # type: ignore[union-attr]
    cancel = go(J_RUNNING, wf=AJ, spec={"cancel": True}, jobs_running=frozenset({"J"}))
    assert only(cancel.actions, DeleteJob).name == action.name


def test_cancelled_handler_is_named_by_node_and_attempt():
    decision = go(B_RUNNING, spec={"cancel": True}, handlers_running=frozenset({("B", 1)}))
    assert only(decision.actions, CancelHandler) == CancelHandler("B", 1)


def test_history_backlog_holds_the_next_attempt_and_says_why():
    small = EngineOptions(max_pending_history=3)
    running = go(options=small).status  # 2 entries
    held = go(running, at=1, options=small, results=(ok("A", 1, {"n": 2}),))
    b = held.status.node("B")
    assert b is None and not any(isinstance(a, RunHandler) for a in held.actions)
    assert held.status.conditions[0].reason == Reason.HISTORY_BACKLOG
    assert "3 activity log entries wait for the history store" in held.status.conditions[0].message
    resumed = go(held.status, at=2, options=small, history_written_through=3)
    assert only(resumed.actions, RunHandler).input == {"n": 2}


def test_blocked_attempt_is_told_once_and_clears_when_its_job_runs():
    blocked = {"blocked": {"J": "a Job named x exists"}}
    first = go(J_RUNNING, wf=AJ, **blocked)
    assert only(first.actions, WakeAt).when == T0 + OPTIONS.blocked_recheck
    assert "Task J attempt 1 cannot start: a Job named x exists" in first.status.conditions[0].message
    again = go(first.status, wf=AJ, **blocked)
    assert [type(a) for a in again.actions] == [WakeAt]  # no second Event
    running = go(first.status, wf=AJ, jobs_running=frozenset({"J"}))
    assert running.status.conditions[0].reason == Reason.TASK_STARTED


def test_errors_are_clipped():
    status = go(A_RUNNING, at=1, results=(err("A", 1, "x" * 5000),)).status
    node = status.node("A")
    assert node is not None and len(node.last_error or "") == 1024


def test_one_task_workflow_speaks_in_the_singular():
    one = workflow([{"name": "A", "handler": "a"}])
    started = go(wf=one)
    assert "(generation 4, 1 task)" in only(started.actions, PostEvent).message
    done = go(started.status, wf=one, results=(ok("A", 1),))
    assert done.status.conditions[0].message == "The task succeeded"


@pytest.mark.parametrize(
    ("status", "spec", "ended", "phase"),
    [
        (WorkflowRunStatus(), {}, None, RunPhase.PENDING),
        (A_RUNNING, {}, None, RunPhase.RUNNING),
        (A_RUNNING, {"suspend": True}, None, RunPhase.SUSPENDED),
        (A_RETRYING, {}, None, RunPhase.RUNNING),
        (SUSPENDED, {"suspend": True}, None, RunPhase.SUSPENDED),
        (B_FAILED, {}, None, RunPhase.FAILED),
        (CANCELLED, {}, None, RunPhase.CANCELLED),
        (WorkflowRunStatus(), {}, Reason.INPUT_TOO_LARGE, RunPhase.FAILED),
        (WorkflowRunStatus(), {}, Reason.RUN_DELETED, RunPhase.CANCELLED),
    ],
)
def test_phase_is_derived_from_the_nodes(status, spec, ended, phase):
    run_spec = WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"}, **spec})
    assert derive_phase(status, run_spec, ended=ended) == phase


def test_unrecordable_run_fails_keeping_only_small_parts():
    run_spec = WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"}})
    run = RunView(name="r", spec=run_spec, status=B_RUNNING, generation=1, created_at=T0)
    decision = fail_unrecordable(run, reason=Reason.RUN_TOO_LARGE, message="too big", now=T0)
    failed = decision.status
    assert failed.phase == RunPhase.FAILED and failed.pinned_tasks is None and failed.output is None
    assert failed.nodes == B_RUNNING.nodes and failed.conditions[0].status == ConditionStatus.FALSE
    assert [r.seq for r in failed.pending_history][-1] == B_RUNNING.history_seq + 1
    assert [type(a) for a in decision.actions] == [PostEvent]


# ----- upgrades: a status written by seqflow 0.1 -----

ROUND_1 = json.loads((Path(__file__).parent / "data" / "round1-status.json").read_text())["status"]


def test_round_1_status_converts_to_nodes():
    status = WorkflowRunStatus.model_validate(upgrade_status(ROUND_1, run="up-1"))
    assert [(n.id, n.type, n.phase, n.attempts) for n in status.nodes] == [
        ("Reserve", "handler", NodePhase.SUCCEEDED, 1),
        ("Render", "job", NodePhase.RUNNING, 2),
    ]
    render = status.node("Render")
    assert render is not None and render.job == "up-1-1-2"  # the Job it runs keeps its name
    assert status.current == ["Render"] and status.history_seq == ROUND_1["historySeq"]
    assert status.legacy_tasks is None and status.legacy_current_task is None


def test_round_1_run_in_flight_finishes_after_the_upgrade():
    render = workflow(
        [
            {"name": "Reserve", "handler": "a"},
            {"name": "Render", "job": {"image": "x"}},
            {"name": "Ship", "handler": "a"},
        ]
    )
    status = WorkflowRunStatus.model_validate(upgrade_status(ROUND_1, run="up-1"))
    waiting = go(status, wf=render, jobs_running=frozenset({"Render"}))
    assert waiting.actions == () and waiting.status.phase == RunPhase.RUNNING  # its Job is found
    shipped = go(status, wf=render, results=(ok("Render", 2, {"pdf": "x"}),))
    assert only(shipped.actions, RunHandler).node == "Ship"
    done = go(shipped.status, wf=render, results=(ok("Ship", 1, {"sent": True}),)).status
    assert done.phase == RunPhase.SUCCEEDED and done.progress == "3/3"


SUCCEEDED = go(C_RUNNING, at=3, results=(ok("C", 1),)).status
WAITING = go(wf=None).status


@pytest.mark.parametrize(
    ("status", "ready", "reconciling", "stalled"),
    [
        (WAITING, "False", "True", None),
        (A_RUNNING, "False", "True", None),
        (A_RETRYING, "False", "True", None),
        (SUSPENDED, "False", None, None),
        (SUCCEEDED, "True", None, None),
        (B_FAILED, "False", None, "True"),
        (CANCELLED, "False", None, "True"),
    ],
    ids=["pending", "running", "retrying", "suspended", "succeeded", "failed", "cancelled"],
)
def test_kstatus_conditions_follow_the_phase(status, ready, reconciling, stalled):
    found = {c.type: c.status.value for c in status.conditions}
    assert (found.get("Ready"), found.get("Reconciling"), found.get("Stalled")) == (
        ready,
        reconciling,
        stalled,
    )
    summary = next(c for c in status.conditions if c.type == "Succeeded")
    assert next(c for c in status.conditions if c.type == "Ready").reason == summary.reason


@pytest.mark.parametrize(
    ("spec", "wf_ttl", "at", "actions"),
    [
        ({"ttlSecondsAfterFinished": 10}, None, 3, [WakeAt]),
        ({"ttlSecondsAfterFinished": 0}, None, 3, [DeleteRun]),
        ({}, 1, 5, [DeleteRun]),  # the Workflow's, when the run has none
        ({"ttlSecondsAfterFinished": 100}, 1, 5, [WakeAt]),  # the run's wins
        ({}, None, 1000, []),  # none anywhere: kept
    ],
)
def test_finished_runs_expire_after_their_time_to_live(spec, wf_ttl, at, actions):
    wf = workflow([{"name": n, "handler": n.lower()} for n in "ABC"], ttlSecondsAfterFinished=wf_ttl)
    decision = go(SUCCEEDED, at=at, wf=wf, spec=spec)
    assert [type(a) for a in decision.actions] == actions and decision.status.phase == RunPhase.SUCCEEDED


def test_a_queued_run_waits_pending_and_says_where():
    limited = workflow([{"name": "A", "handler": "a"}], concurrency={"limit": 2})
    decision = go(wf=limited, queued=(2, 3))
    assert decision.status.phase == RunPhase.PENDING and decision.actions == ()
    message = next(c for c in decision.status.conditions if c.type == "Succeeded").message
    assert message == 'Queued: Workflow "wf" runs at most 2 at once; this run is 2 of 3 waiting'
    started = go(decision.status, wf=limited)
    assert only(started.actions, RunHandler).node == "A"


WHEN = workflow(
    [
        {"name": "A", "handler": "a"},
        {"name": "B", "handler": "b", "when": "input.n > 10 && run.labels.tier == 'gold'"},
        {"name": "C", "handler": "c", "when": "steps.B.phase == 'Skipped' || input.n > 10"},
    ]
)


@pytest.mark.parametrize(
    ("output", "labels", "started", "skipped"),
    [
        ({"n": 20}, {"tier": "gold"}, "B", []),
        ({"n": 20}, {"tier": "basic"}, "C", ["B"]),  # B skipped; C sees it and runs
        ({"n": 1}, {"tier": "gold"}, "C", ["B"]),
    ],
)
def test_when_decides_whether_a_step_runs(output, labels, started, skipped):
    run_spec = WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"}, "input": {"n": 1}})
    first = go(wf=WHEN).status
    run = RunView(
        name="r", spec=run_spec, status=first, generation=1, created_at=T0, namespace="ns", labels=labels
    )
    seen = Observations(workflow=WHEN, handlers=HANDLERS, results=(ok("A", 1, output),))
    decision = plan(run=run, observed=seen, now=T0, options=OPTIONS)
    assert only(decision.actions, RunHandler).node == started
    assert only(decision.actions, RunHandler).input == output  # a skipped step passes its input on
    assert [n.id for n in decision.status.nodes if n.phase == NodePhase.SKIPPED] == skipped
    assert [r.type.value for r in decision.status.pending_history].count("TASK_SKIPPED") == len(skipped)


def test_all_steps_skipped_or_succeeded_is_success():
    last = workflow([{"name": "A", "handler": "a"}, {"name": "B", "handler": "b", "when": "false"}])
    done = go(go(wf=last).status, wf=last, results=(ok("A", 1, {"k": 1}),)).status
    assert done.phase == RunPhase.SUCCEEDED and done.output == {"k": 1} and done.progress == "2/2"


@pytest.mark.parametrize(
    ("when", "problem"),
    [
        ("input.n + 1", "gave 2, not true or false"),
        ("input.missing > 3", "failed: no field 'missing' (test for it with has())"),
        ("input.n.deeper == 1", "failed: No such overload"),
        ("[1][input.n] == 1", "failed: index out of bounds: 1"),
        ("1 / (input.n - 1) == 1", "failed: division by zero"),
    ],
)
def test_a_condition_that_cannot_be_evaluated_fails_the_run(when, problem):
    bad = workflow([{"name": "A", "handler": "a"}, {"name": "B", "handler": "b", "when": when}])
    failed = go(go(wf=bad).status, at=1, wf=bad, results=(ok("A", 1, {"n": 1}),)).status
    summary = next(c for c in failed.conditions if c.type == "Succeeded")
    assert (failed.phase, summary.reason) == (RunPhase.FAILED, "ConditionFailed")
    assert summary.message.startswith(f"Task B: when {when!r} ") and problem in summary.message
    assert failed.node("A").phase == NodePhase.SUCCEEDED  # type: ignore[union-attr]  # what ran is kept
    assert failed.node("B").phase == NodePhase.FAILED  # type: ignore[union-attr]


def test_a_condition_that_does_not_compile_fails_the_run_before_it_starts():
    bad = workflow([{"name": "A", "handler": "a"}, {"name": "B", "handler": "b", "when": "input.n >"}])
    failed = go(wf=bad).status
    summary = next(c for c in failed.conditions if c.type == "Succeeded")
    assert failed.phase == RunPhase.FAILED and summary.reason == "InvalidWorkflow" and failed.nodes == []
    assert "task B: when 'input.n >' does not compile" in summary.message


@pytest.mark.parametrize(
    ("tasks", "problem"),
    [
        (
            [{"name": "A", "handler": "a", "when": "steps.Nope.output.x == 1"}],
            "task A: when 'steps.Nope.output.x == 1' reads steps.Nope, not a step of this Workflow",
        ),
        (
            [
                {"name": "A", "handler": "a", "when": "steps.B.phase == 'Succeeded'"},
                {"name": "B", "handler": "b"},
            ],
            "task A: when \"steps.B.phase == 'Succeeded'\" reads steps.B, a later step (it has not run yet)",
        ),
        (
            [{"name": "A", "handler": "a", "when": "steps.A.output.x == 1"}],
            "task A: when 'steps.A.output.x == 1' reads steps.A, a later step (it has not run yet)",
        ),
        (
            [
                {"name": "G", "parallel": [{"name": "M", "handler": "a"}]},
                {
                    "name": "B",
                    "handler": "b",
                    "when": "steps['G/M'].output.x == 1 && steps.G.phase == 'Succeeded'",
                },
            ],
            None,
        ),
    ],
)
def test_when_may_read_only_earlier_steps(tasks, problem):
    found = workflow_problem(workflow(tasks).spec, name="wf", handlers=HANDLERS, workflows={})
    assert found == (("InvalidWorkflow", problem) if problem else None)


NAP = workflow(
    [{"name": "A", "handler": "a"}, {"name": "Nap", "sleep": {"seconds": 60}}, {"name": "C", "handler": "c"}]
)


def test_a_sleep_is_a_timer_kept_in_the_status():
    napping = go(go(wf=NAP).status, at=1, wf=NAP, results=(ok("A", 1, {"n": 2}),))
    node = napping.status.node("Nap")
    assert node is not None and (node.type, node.phase) == ("sleep", NodePhase.RUNNING)
    assert only(napping.actions, WakeAt).when == T0 + timedelta(seconds=61)
    restarted = go(napping.status, at=30, wf=NAP)  # after a restart: the same due time, re-armed
    assert [type(a) for a in restarted.actions] == [WakeAt] and restarted.actions[0].when == T0 + timedelta(
        seconds=61
    )
    woke = go(napping.status, at=61, wf=NAP)
    assert only(woke.actions, RunHandler).node == "C" and only(woke.actions, RunHandler).input == {"n": 2}
    cancelled = go(napping.status, at=30, wf=NAP, spec={"cancel": True}).status
    assert cancelled.phase == RunPhase.CANCELLED and cancelled.node("Nap").phase == NodePhase.CANCELLED  # type: ignore[union-attr]


def test_a_sleep_until_a_time_past_ends_at_once():
    until = workflow([{"name": "Nap", "sleep": {"until": "2026-11-21T09:00:00Z"}}])
    started = go(wf=until)
    assert only(started.actions, WakeAt).when == datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    assert go(started.status, wf=until).status.phase == RunPhase.SUCCEEDED


GATE = workflow(
    [
        {"name": "A", "handler": "a"},
        {
            "name": "Approval",
            "wait": {"signal": "approved", "timeoutSeconds": 100},
            "retry": {"maxRetries": 0},
        },
        {"name": "C", "handler": "c"},
    ]
)
WAITING_GATE = go(go(wf=GATE).status, at=1, wf=GATE, results=(ok("A", 1, {"n": 2}),)).status


@pytest.mark.parametrize(
    ("at", "spec", "phase", "node", "actions", "reason"),
    [
        (2, {}, RunPhase.RUNNING, NodePhase.WAITING, [WakeAt], "Waiting"),
        (
            2,
            {"signals": {"approved": {"by": "alice"}}},
            RunPhase.RUNNING,
            NodePhase.SUCCEEDED,
            [RunHandler],
            "TaskStarted",
        ),
        (2, {"signals": {"other": {}}}, RunPhase.RUNNING, NodePhase.WAITING, [WakeAt], "Waiting"),
        (101, {}, RunPhase.FAILED, NodePhase.FAILED, [PostEvent], "TaskFailed"),
        (2, {"cancel": True}, RunPhase.CANCELLED, NodePhase.CANCELLED, [PostEvent], "Cancelled"),
        (2, {"suspend": True}, RunPhase.SUSPENDED, NodePhase.WAITING, [WakeAt, PostEvent], "Suspended"),
    ],
    ids=["waits", "signalled", "another signal", "times out", "cancelled", "suspended while waiting"],
)
def test_wait_for_a_signal(at, spec, phase, node, actions, reason):
    decision = go(WAITING_GATE, at=at, wf=GATE, spec=spec)
    status = decision.status
    assert status.phase == phase and status.node("Approval").phase == node  # type: ignore[union-attr]
    assert [type(a) for a in decision.actions] == actions
    assert next(c for c in status.conditions if c.type == "Succeeded").reason == reason


def test_a_signal_payload_joins_the_data_and_a_timeout_may_continue():
    waiting = WAITING_GATE.node("Approval")
    assert waiting is not None and waiting.deadline == T0 + timedelta(seconds=101)
    assert WAITING_GATE.current == ["Approval"]
    signalled = go(WAITING_GATE, at=2, wf=GATE, spec={"signals": {"approved": {"by": "alice"}}})
    assert only(signalled.actions, RunHandler).input == {"n": 2, "by": "alice"}
    lenient = workflow(
        [
            {
                "name": "Approval",
                "wait": {"signal": "approved", "timeoutSeconds": 5, "onTimeout": "continue"},
            },
            {"name": "C", "handler": "c"},
        ]
    )
    waited = go(wf=lenient).status
    went_on = go(waited, at=6, wf=lenient)
    assert only(went_on.actions, RunHandler).input == {"n": 1}


ORDER_SCHEMA = {
    "type": "object",
    "required": ["order_id"],
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
}


@pytest.mark.parametrize(
    ("schema", "input", "phase", "reason", "message"),
    [
        (
            ORDER_SCHEMA,
            {"order_id": "O-1", "amount": 5},
            RunPhase.RUNNING,
            "TaskStarted",
            "Task A attempt 1 started",
        ),
        (
            ORDER_SCHEMA,
            {"amount": -1},
            RunPhase.FAILED,
            "InputInvalid",
            "The input does not match the Workflow's inputSchema: $: 'order_id' is a required property; "
            "$.amount: -1 is less than the minimum of 0",
        ),
        ({"type": "nope"}, {}, RunPhase.FAILED, "InvalidWorkflow", "inputSchema is not a valid JSON Schema"),
    ],
    ids=["matches", "does not match", "not a schema"],
)
def test_input_schema_is_checked_at_start(schema, input, phase, reason, message):
    typed = workflow([{"name": "A", "handler": "a"}], inputSchema=schema)
    status = go(wf=typed, spec={"input": input}).status
    summary = next(c for c in status.conditions if c.type == "Succeeded")
    assert (status.phase, summary.reason) == (phase, reason) and summary.message.startswith(message)


RECEIPT_SCHEMA = {"type": "object", "required": ["receipt"], "properties": {"receipt": {"type": "string"}}}


@pytest.mark.parametrize(
    ("output", "on_task", "on_workflow", "phase", "reason", "message", "started"),
    [
        ({"receipt": "R-1"}, {}, {}, RunPhase.SUCCEEDED, "Succeeded", "The task succeeded", []),
        (
            {"receipt": 7, "note": "x"},
            {},
            {},
            RunPhase.FAILED,
            "OutputInvalid",
            "The output does not match the Workflow's outputSchema: $.receipt: 7 is not of type 'string'",
            [],
        ),
        # The run ends as any failed run does: its compensations run, then its finally tasks.
        (
            {},
            {"compensate": {"handler": "b"}},
            {},
            RunPhase.COMPENSATING,
            "OutputInvalid",
            "The output",
            ["A:compensate"],
        ),
        (
            {},
            {},
            {"finally": [{"name": "Z", "handler": "c"}]},
            RunPhase.RUNNING,
            "OutputInvalid",
            "The output",
            ["Z"],
        ),
    ],
    ids=["matches", "does not match", "compensations run", "finally tasks run"],
)
def test_output_schema_is_checked_once_the_tasks_succeed(
    output, on_task, on_workflow, phase, reason, message, started
):
    task = {"name": "A", "handler": "a", **on_task}
    first = go(wf=workflow([task], outputSchema=RECEIPT_SCHEMA, **on_workflow)).status
    assert first.output_schema == RECEIPT_SCHEMA  # pinned: editing the Workflow changes nothing
    decision = go(first, at=1, wf=workflow([task], **on_workflow), results=(ok("A", 1, output),))
    summary = next(c for c in decision.status.conditions if c.type == "Succeeded")
    ending = decision.status.ending or summary  # (how the run ends, while it compensates or runs finally)
    assert (decision.status.phase, ending.reason) == (phase, reason)
    assert ending.message.startswith(message)
    assert [a.node for a in decision.actions if isinstance(a, RunHandler)] == started


def test_an_output_schema_that_is_not_one_makes_the_workflow_invalid():
    status = go(wf=workflow([{"name": "A", "handler": "a"}], outputSchema={"type": 5})).status
    summary = next(c for c in status.conditions if c.type == "Succeeded")
    assert (status.phase, summary.reason) == (RunPhase.FAILED, "InvalidWorkflow")
    assert "outputSchema is not a valid JSON Schema" in summary.message


def group(max_parallel: int | None = None, fail_fast: bool = False) -> WorkflowView:
    members = [
        {"name": "Email", "handler": "a", "retry": {"maxRetries": 0}},
        {"name": "Sms", "job": {"image": "sms:1"}, "retry": {"maxRetries": 0}},
        {"name": "Push", "handler": "b", "retry": {"maxRetries": 1, "backoffSeconds": 5}},
    ]
    notify: dict[str, Any] = {"name": "Notify", "parallel": members, "failFast": fail_fast}
    if max_parallel:
        notify["maxParallel"] = max_parallel
    return workflow([{"name": "A", "handler": "a"}, notify, {"name": "C", "handler": "c"}])


def in_group(wf: WorkflowView) -> Decision:
    return go(go(wf=wf).status, at=1, wf=wf, results=(ok("A", 1, {"n": 2}),))


def test_a_group_starts_its_members_together_with_the_group_input():
    started = in_group(group())
    starts = [
        (type(a).__name__, a.node, a.input) for a in started.actions if isinstance(a, RunHandler | CreateJob)
    ]
    assert starts == [
        ("RunHandler", "Notify/Email", {"n": 2}),
        ("CreateJob", "Notify/Sms", {"n": 2}),
        ("RunHandler", "Notify/Push", {"n": 2}),
    ]
    status = started.status
    assert status.node("Notify").type == "parallel" and status.current == [
        "Notify",
        "Notify/Email",
        "Notify/Sms",
        "Notify/Push",
    ]  # type: ignore[union-attr]
    assert only(started.actions, CreateJob).name.startswith("r-notify-sms-1-")
    assert status.progress == "1/3"  # steps, not members


def test_max_parallel_bounds_the_members_running():
    started = in_group(group(max_parallel=2))
    assert [a.node for a in started.actions if isinstance(a, RunHandler | CreateJob)] == [
        "Notify/Email",
        "Notify/Sms",
    ]
    one_done = go(
        started.status,
        at=2,
        wf=group(max_parallel=2),
        results=(ok("Notify/Email", 1, {"mail": 1}),),
        jobs_running=frozenset({"Notify/Sms"}),
    )
    assert [a.node for a in one_done.actions if isinstance(a, RunHandler)] == ["Notify/Push"]


def test_a_group_output_merges_its_members_outputs_in_declared_order():
    wf = group()
    status = in_group(wf).status
    results = (
        ok("Notify/Push", 1, {"who": "push", "push": 1}),
        ok("Notify/Email", 1, {"who": "email", "mail": 1}),
    )
    status = go(status, at=2, wf=wf, results=results, jobs_running=frozenset({"Notify/Sms"})).status
    assert status.node("Notify").phase == NodePhase.RUNNING  # type: ignore[union-attr]
    done = go(status, at=3, wf=wf, results=(ok("Notify/Sms", 1, {"who": "sms", "sms": 1}),))
    assert only(done.actions, RunHandler).input == {"n": 2, "who": "push", "mail": 1, "sms": 1, "push": 1}
    assert all(n.output is None for n in done.status.nodes)  # member outputs go once merged
    assert done.status.node("Notify").phase == NodePhase.SUCCEEDED and done.status.progress == "2/3"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fail_fast", "phase", "cancelled"),
    [(False, RunPhase.RUNNING, []), (True, RunPhase.FAILED, ["Notify/Sms", "Notify/Push"])],
    ids=["others end first", "failFast cancels the others"],
)
def test_a_failing_member_fails_its_group(fail_fast, phase, cancelled):
    wf = group(fail_fast=fail_fast)
    status = in_group(wf).status
    decision = go(
        status,
        at=2,
        wf=wf,
        results=(err("Notify/Email", 1, "smtp down"),),
        jobs_running=frozenset({"Notify/Sms"}),
        handlers_running=frozenset({("Notify/Push", 1)}),
    )
    assert decision.status.phase == phase
    assert [n.id for n in decision.status.nodes if n.phase == NodePhase.CANCELLED] == cancelled
    if fail_fast:
        assert [type(a) for a in decision.actions if isinstance(a, DeleteJob | CancelHandler)] == [
            DeleteJob,
            CancelHandler,
        ]
        return
    later = go(decision.status, at=3, wf=wf, results=(ok("Notify/Sms", 1), ok("Notify/Push", 1)))
    assert later.status.phase == RunPhase.FAILED
    summary = next(c for c in later.status.conditions if c.type == "Succeeded")
    assert summary.message == "Task Notify failed: Notify/Email: smtp down"


def test_a_retried_run_reruns_only_the_members_that_did_not_succeed():
    wf = group()
    status = in_group(wf).status
    status = go(
        status,
        at=2,
        wf=wf,
        results=(err("Notify/Email", 1, "down"), ok("Notify/Push", 1, {"push": 1})),
        jobs_running=frozenset({"Notify/Sms"}),
    ).status
    status = go(status, at=3, wf=wf, results=(ok("Notify/Sms", 1, {"sms": 1}),)).status
    assert status.phase == RunPhase.FAILED
    retried = go(status, at=4, wf=wf, spec={"retry": 1})
    assert [a.node for a in retried.actions if isinstance(a, RunHandler | CreateJob)] == ["Notify/Email"]
    done = go(retried.status, at=5, wf=wf, spec={"retry": 1}, results=(ok("Notify/Email", 2, {"mail": 1}),))
    assert only(done.actions, RunHandler).input == {"n": 2, "mail": 1, "sms": 1, "push": 1}


def test_no_member_starts_once_one_failed():
    wf = group(max_parallel=2)
    status = in_group(wf).status  # Email and Sms run, Push waits for a slot
    decision = go(
        status, at=2, wf=wf, results=(err("Notify/Email", 1, "down"),), jobs_running=frozenset({"Notify/Sms"})
    )
    assert not any(isinstance(a, RunHandler) for a in decision.actions)
    assert decision.status.node("Notify/Push") is None
    ended = go(decision.status, at=3, wf=wf, results=(ok("Notify/Sms", 1),))
    assert ended.status.phase == RunPhase.FAILED


# ----- compensation: a saga undoes what succeeded, in reverse order -----

SAGA = workflow(
    [
        {"name": "Debit", "handler": "a", "compensate": {"handler": "c", "retry": {"maxRetries": 1}}},
        {"name": "Reserve", "handler": "a", "compensate": {"job": {"image": "undo:1"}}},
        {"name": "Credit", "handler": "b", "retry": {"maxRetries": 0}},
    ]
)
SAGA_CREDIT = go(
    go(go(wf=SAGA).status, at=1, wf=SAGA, results=(ok("Debit", 1, {"n": 1, "debit": "d-1"}),)).status,
    at=2,
    wf=SAGA,
    results=(ok("Reserve", 1, {"n": 1, "debit": "d-1", "seat": 7}),),
).status
SAGA_UNDO_RESERVE = go(SAGA_CREDIT, at=3, wf=SAGA, results=(err("Credit", 1, "account closed"),)).status
SAGA_UNDO_DEBIT = go(SAGA_UNDO_RESERVE, at=4, wf=SAGA, results=(ok("Reserve:compensate", 1),)).status
SAGA_CANCEL_UNDO = go(SAGA_CREDIT, at=3, wf=SAGA, spec={"cancel": True}).status
UNDONE = go(SAGA_UNDO_DEBIT, at=5, wf=SAGA, results=(ok("Debit:compensate", 1),)).status

SAGA_WHEN = workflow(
    [
        {"name": "Debit", "handler": "a", "compensate": {"handler": "c"}},
        {"name": "Check", "handler": "b", "when": "input.n + 1"},
    ]
)
B_SAGA = workflow(
    [
        {"name": "Validate", "handler": "a"},
        {"name": "Debit", "handler": "a", "compensate": {"handler": "c"}},
        {"name": "Credit", "handler": "b", "retry": {"maxRetries": 0}},
    ]
)

SAGA_ROWS = {
    "a failure starts the compensation of the last step that succeeded": Row(
        SAGA_CREDIT,
        {"results": (err("Credit", 1, "account closed"),)},
        wf=SAGA,
        phase=RunPhase.COMPENSATING,
        nodes={"Credit": (NodePhase.FAILED, 1), "Reserve:compensate": (NodePhase.RUNNING, 1)},
        actions=["PostEvent", "CreateJob"],
        entries=["TASK_FAILED", "COMPENSATION_STARTED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
    "a compensation done starts the one before it": Row(
        SAGA_UNDO_RESERVE,
        {"results": (ok("Reserve:compensate", 1),)},
        wf=SAGA,
        phase=RunPhase.COMPENSATING,
        nodes={"Reserve": (NodePhase.COMPENSATED, 1), "Debit:compensate": (NodePhase.RUNNING, 1)},
        actions=["RunHandler"],
        entries=["TASK_COMPLETED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
    "the last compensation done ends the run Failed, compensated": Row(
        SAGA_UNDO_DEBIT,
        {"results": (ok("Debit:compensate", 1),)},
        wf=SAGA,
        phase=RunPhase.FAILED,
        nodes={"Debit": (NodePhase.COMPENSATED, 1), "Reserve": (NodePhase.COMPENSATED, 1)},
        actions=["PostEvent"],
        entries=["TASK_COMPLETED", "WORKFLOW_FAILED"],
        reason="Compensated",
    ),
    "a failed compensation is retried by its own policy": Row(
        SAGA_UNDO_DEBIT,
        {"results": (err("Debit:compensate", 1, "ledger down"),)},
        wf=SAGA,
        phase=RunPhase.COMPENSATING,
        nodes={"Debit:compensate": (NodePhase.RETRYING, 1)},
        actions=["PostEvent", "WakeAt"],
        entries=["TASK_RETRY"],
        reason="TaskRetrying",
    ),
    "a compensation failed for good ends the run, saying so": Row(
        SAGA_UNDO_DEBIT,
        {"results": (err("Debit:compensate", 1, "ledger gone", permanent=True),)},
        wf=SAGA,
        phase=RunPhase.FAILED,
        nodes={"Debit": (NodePhase.SUCCEEDED, 1), "Debit:compensate": (NodePhase.FAILED, 1)},
        actions=["PostEvent"],
        entries=["TASK_FAILED", "WORKFLOW_FAILED"],
        reason="CompensationFailed",
    ),
    "a cancel compensates too": Row(
        SAGA_CREDIT,
        spec={"cancel": True},
        wf=SAGA,
        phase=RunPhase.COMPENSATING,
        nodes={"Credit": (NodePhase.CANCELLED, 1), "Reserve:compensate": (NodePhase.RUNNING, 1)},
        actions=["CancelHandler", "PostEvent", "CreateJob"],
        entries=["TASK_CANCELLED", "COMPENSATION_STARTED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
    "a cancel does not cut compensations short": Row(
        SAGA_UNDO_DEBIT,
        spec={"cancel": True},
        wf=SAGA,
        phase=RunPhase.COMPENSATING,
        nodes={"Debit:compensate": (NodePhase.RUNNING, 1)},
        observed={"handlers_running": frozenset({("Debit:compensate", 1)})},
        reason="TaskStarted",
    ),
    "a deletion does": Row(
        SAGA_UNDO_DEBIT,
        {"deleted": True},
        wf=SAGA,
        phase=RunPhase.CANCELLED,
        nodes={"Debit:compensate": (NodePhase.CANCELLED, 1)},
        actions=["CancelHandler"],
        entries=["TASK_CANCELLED", "WORKFLOW_CANCELLED"],
        reason="RunDeleted",
    ),
    "nothing to compensate: the run just fails": Row(
        go(wf=SAGA).status,
        {"results": (err("Debit", 1, "no funds", permanent=True),)},
        wf=SAGA,
        phase=RunPhase.FAILED,
        nodes={"Debit": (NodePhase.FAILED, 1)},
        actions=["PostEvent"],
        entries=["TASK_FAILED", "WORKFLOW_FAILED"],
        reason="TaskFailed",
    ),
    "a suspended run starts no compensation": Row(
        SAGA_UNDO_RESERVE,
        {"results": (ok("Reserve:compensate", 1),)},
        spec={"suspend": True},
        wf=SAGA,
        phase=RunPhase.SUSPENDED,
        nodes={"Reserve": (NodePhase.COMPENSATED, 1)},
        actions=["PostEvent"],
        entries=["TASK_COMPLETED", "RUN_SUSPENDED"],
        reason="Suspended",
    ),
    "a retry after compensation runs the undone steps again": Row(
        UNDONE,
        spec={"retry": 1},
        wf=SAGA,
        phase=RunPhase.RUNNING,
        nodes={
            "Debit": (NodePhase.RUNNING, 2),
            "Reserve": (NodePhase.PENDING, 1),
            "Credit": (NodePhase.PENDING, 1),
        },
        actions=["PostEvent", "RunHandler"],
        entries=["RUN_RETRIED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
    "a condition that cannot be evaluated is a failure: compensations run": Row(
        go(wf=SAGA_WHEN).status,
        {"results": (ok("Debit", 1, {"n": 1, "debit": 1}),)},
        wf=SAGA_WHEN,
        phase=RunPhase.COMPENSATING,
        nodes={"Check": (NodePhase.FAILED, 0), "Debit:compensate": (NodePhase.RUNNING, 1)},
        actions=["PostEvent", "RunHandler"],
        entries=["TASK_COMPLETED", "TASK_FAILED", "COMPENSATION_STARTED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
}


@pytest.mark.parametrize("row", SAGA_ROWS.values(), ids=SAGA_ROWS.keys())
def test_compensation(row: Row):
    check(row)


def test_compensations_get_their_steps_outputs_and_the_end_says_what_was_undone():
    assert only(
        go(SAGA_CREDIT, at=3, wf=SAGA, results=(err("Credit", 1, "x"),)).actions, CreateJob
    ).input == {
        "n": 1,
        "debit": "d-1",
        "seat": 7,
    }
    assert only(
        go(SAGA_UNDO_RESERVE, at=4, wf=SAGA, results=(ok("Reserve:compensate", 1),)).actions, RunHandler
    ).input == {
        "n": 1,
        "debit": "d-1",
    }
    summary = next(c for c in UNDONE.conditions if c.type == "Succeeded")
    assert summary.message == "Task Credit failed (1 attempts): account closed; compensated Reserve, Debit"
    started = next(r for r in SAGA_UNDO_RESERVE.pending_history if r.type.value == "COMPENSATION_STARTED")
    assert started.details["steps"] == ["Reserve", "Debit"] and started.details["reason"] == "TaskFailed"
    assert UNDONE.ending is not None and UNDONE.ending.phase == RunPhase.FAILED
    assert [n.output for n in UNDONE.nodes if n.id in ("Debit", "Reserve")] == [None, None]


def test_a_retry_after_compensation_runs_the_run_again_from_its_first_step():
    status = go(wf=B_SAGA).status
    status = go(status, at=1, wf=B_SAGA, results=(ok("Validate", 1, {"n": 1, "valid": True}),)).status
    status = go(
        status, at=2, wf=B_SAGA, results=(ok("Debit", 1, {"n": 1, "valid": True, "debit": 9}),)
    ).status
    status = go(status, at=3, wf=B_SAGA, results=(err("Credit", 1, "closed"),)).status
    status = go(status, at=4, wf=B_SAGA, results=(ok("Debit:compensate", 1),)).status
    assert status.phase == RunPhase.FAILED
    retried = go(status, at=5, wf=B_SAGA, spec={"retry": 1})
    start = only(retried.actions, RunHandler)
    assert (start.node, start.attempt, start.input) == ("Validate", 2, {"n": 1})  # the run's input again
    assert retried.status.output is None and retried.status.ending is None
    undo = retried.status.node("Debit:compensate")  # to be undone again, by a new attempt
    assert undo is not None and (undo.phase, undo.attempts, undo.budget_from) == (NodePhase.PENDING, 1, 1)


def test_a_cancelled_saga_ends_cancelled_once_compensated():
    status = go(
        SAGA_CANCEL_UNDO, at=4, wf=SAGA, spec={"cancel": True}, results=(ok("Reserve:compensate", 1),)
    ).status
    status = go(status, at=5, wf=SAGA, spec={"cancel": True}, results=(ok("Debit:compensate", 1),)).status
    summary = next(c for c in status.conditions if c.type == "Succeeded")
    assert (status.phase, summary.reason) == (RunPhase.CANCELLED, "Compensated")
    assert summary.message.startswith("The run was cancelled (spec.cancel); compensated")


# ----- sub-workflows: a step that is a child run -----

NESTED = workflow(
    [
        {"name": "A", "handler": "a"},
        {
            "name": "Ship",
            "workflowRef": {"name": "shipping"},
            "retry": {"maxRetries": 1, "backoffSeconds": 5},
        },
        {"name": "C", "handler": "c"},
    ]
)
SHIP = go(go(wf=NESTED).status, at=1, wf=NESTED, results=(ok("A", 1, {"n": 2}),)).status


DEEP_CAUSE = FailureCause(run="r-ship-1-next-1", reason="DepthExceeded", message="nested 9 deep")


def child(phase: RunPhase | None, **kw: Any) -> dict[str, ChildRun]:
    return {"Ship": ChildRun(phase=phase, suspended=kw.pop("suspended", False), **kw)}


CHILD_ROWS = {
    "a running child: nothing to do": Row(
        SHIP,
        {"children": child(RunPhase.RUNNING)},
        wf=NESTED,
        phase=RunPhase.RUNNING,
        nodes={"Ship": (NodePhase.RUNNING, 1)},
        reason="TaskStarted",
    ),
    "a child not seen is created again": Row(
        SHIP,
        wf=NESTED,
        phase=RunPhase.RUNNING,
        nodes={"Ship": (NodePhase.RUNNING, 1)},
        actions=["CreateChildRun"],
        reason="TaskStarted",
    ),
    "a child that succeeded gives the step its output": Row(
        SHIP,
        {"children": child(RunPhase.SUCCEEDED, output={"n": 2, "parcel": "p-9"})},
        wf=NESTED,
        phase=RunPhase.RUNNING,
        nodes={"Ship": (NodePhase.SUCCEEDED, 1), "C": (NodePhase.RUNNING, 1)},
        actions=["RunHandler"],
        entries=["TASK_COMPLETED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
    "a child that failed is retried as a new child": Row(
        SHIP,
        {"children": child(RunPhase.FAILED, reason="TaskFailed", message="Task Pack failed")},
        wf=NESTED,
        phase=RunPhase.RUNNING,
        nodes={"Ship": (NodePhase.RETRYING, 1)},
        actions=["PostEvent", "WakeAt"],
        entries=["TASK_RETRY"],
        reason="TaskRetrying",
    ),
    "a child that cannot run fails the step for good": Row(
        SHIP,
        {"children": child(RunPhase.FAILED, reason="InputInvalid", message="address: required")},
        wf=NESTED,
        phase=RunPhase.FAILED,
        nodes={"Ship": (NodePhase.FAILED, 1)},
        actions=["PostEvent"],
        entries=["TASK_FAILED", "WORKFLOW_FAILED"],
        reason="TaskFailed",
    ),
    "a cancelled child fails the step for good": Row(
        SHIP,
        {"children": child(RunPhase.CANCELLED, reason="Cancelled")},
        wf=NESTED,
        phase=RunPhase.FAILED,
        nodes={"Ship": (NodePhase.FAILED, 1)},
        actions=["PostEvent"],
        entries=["TASK_FAILED", "WORKFLOW_FAILED"],
        reason="TaskFailed",
    ),
    "a child the API server refuses fails the step for good": Row(
        SHIP,
        {"results": (err("Ship", 1, "the child run was refused: spec.input: Invalid", permanent=True),)},
        wf=NESTED,
        phase=RunPhase.FAILED,
        nodes={"Ship": (NodePhase.FAILED, 1)},
        actions=["PostEvent"],
        entries=["TASK_FAILED", "WORKFLOW_FAILED"],
        reason="TaskFailed",
    ),
    "a child that failed for good beneath it fails the step for good": Row(
        SHIP,
        {"children": child(RunPhase.FAILED, reason="TaskFailed", cause=DEEP_CAUSE)},
        wf=NESTED,
        phase=RunPhase.FAILED,
        nodes={"Ship": (NodePhase.FAILED, 1)},
        actions=["PostEvent"],
        entries=["TASK_FAILED", "WORKFLOW_FAILED"],
        reason="TaskFailed",
    ),
    "suspending the parent suspends the child": Row(
        SHIP,
        {"children": child(RunPhase.RUNNING)},
        spec={"suspend": True},
        wf=NESTED,
        phase=RunPhase.SUSPENDED,
        nodes={"Ship": (NodePhase.RUNNING, 1)},
        actions=["ControlChildRun", "PostEvent"],
        entries=["RUN_SUSPENDED"],
        reason="Suspended",
    ),
    "cancelling the parent cancels the child": Row(
        SHIP,
        {"children": child(RunPhase.RUNNING)},
        spec={"cancel": True},
        wf=NESTED,
        phase=RunPhase.CANCELLED,
        nodes={"Ship": (NodePhase.CANCELLED, 1)},
        actions=["ControlChildRun", "PostEvent"],
        entries=["TASK_CANCELLED", "WORKFLOW_CANCELLED"],
        reason="Cancelled",
    ),
}


@pytest.mark.parametrize("row", CHILD_ROWS.values(), ids=CHILD_ROWS.keys())
def test_subworkflows(row: Row):
    check(row)


def test_a_child_run_is_named_by_step_and_attempt_and_one_level_deeper():
    create = only(go(SHIP, at=2, wf=NESTED, depth=2).actions, CreateChildRun)
    assert (create.workflow.name, create.input, create.depth) == ("shipping", {"n": 2}, 3)
    assert create.name.startswith("r-ship-1-") and SHIP.node("Ship").child == create.name  # type: ignore[union-attr]
    retried = go(
        SHIP, at=2, wf=NESTED, children=child(RunPhase.FAILED, reason="TaskFailed", message="no van")
    )
    again = only(go(retried.status, at=8, wf=NESTED).actions, CreateChildRun)
    assert again.name.startswith("r-ship-2-")
    assert retried.status.node("Ship").last_error == f"child run {create.name} Failed: TaskFailed: no van"  # type: ignore[union-attr]
    running = child(RunPhase.RUNNING)
    suspend = only(
        go(SHIP, at=2, wf=NESTED, spec={"suspend": True}, children=running).actions, ControlChildRun
    )
    assert (suspend.name, suspend.suspend, suspend.cancel) == (create.name, True, None)
    resume = go(SHIP, at=2, wf=NESTED, children=child(RunPhase.SUSPENDED, suspended=True)).actions
    assert only(resume, ControlChildRun).suspend is False
    cancel = go(SHIP, at=2, wf=NESTED, spec={"cancel": True}, children=running).actions
    assert only(cancel, ControlChildRun).cancel is True


def test_a_run_nested_too_deep_fails_at_start():
    failed = go(depth=OPTIONS.max_depth + 1).status
    summary = next(c for c in failed.conditions if c.type == "Succeeded")
    assert (failed.phase, summary.reason) == (RunPhase.FAILED, "DepthExceeded") and failed.nodes == []
    assert go(depth=OPTIONS.max_depth).status.phase == RunPhase.RUNNING


LOOP = {
    "a": WorkflowSpec.model_validate({"tasks": [{"name": "ToB", "workflowRef": {"name": "b"}}]}),
    "b": WorkflowSpec.model_validate(
        {"tasks": [{"name": "X", "handler": "a"}, {"name": "ToA", "workflowRef": {"name": "a"}}]}
    ),
    "c": WorkflowSpec.model_validate({"tasks": [{"name": "ToD", "workflowRef": {"name": "d"}}]}),
    "self": WorkflowSpec.model_validate({"tasks": [{"name": "Again", "workflowRef": {"name": "self"}}]}),
    # A Workflow may run a ClusterWorkflow (named by kind as runs name it); a ClusterWorkflow
    # runs ClusterWorkflows only, and a loop through one is a loop.
    "uses-shared": WorkflowSpec.model_validate(
        {"tasks": [{"name": "Shared", "workflowRef": {"kind": "ClusterWorkflow", "name": "shared"}}]}
    ),
    "ClusterWorkflow/shared": WorkflowSpec.model_validate({"tasks": [{"name": "X", "handler": "a"}]}),
    "ClusterWorkflow/local": WorkflowSpec.model_validate(
        {"tasks": [{"name": "ToA", "workflowRef": {"name": "a"}}]}
    ),
    "ClusterWorkflow/ping": WorkflowSpec.model_validate(
        {"tasks": [{"name": "Pong", "workflowRef": {"kind": "ClusterWorkflow", "name": "pong"}}]}
    ),
    "ClusterWorkflow/pong": WorkflowSpec.model_validate(
        {"tasks": [{"name": "Ping", "workflowRef": {"kind": "ClusterWorkflow", "name": "ping"}}]}
    ),
}


@pytest.mark.parametrize(
    ("name", "require", "problem"),
    [
        ("a", False, "task ToB: sub-workflows call each other in a loop: a -> b -> a"),
        ("b", False, "task ToA: sub-workflows call each other in a loop: b -> a -> b"),
        ("self", False, "task Again: sub-workflows call each other in a loop: self -> self"),
        ("c", True, 'task ToD: sub-workflow "d" not found'),
        ("c", False, None),  # at a run's start, a Workflow not seen yet is the child's to find
        ("uses-shared", True, None),
        (
            "ClusterWorkflow/local",
            False,
            'task ToA: a ClusterWorkflow runs ClusterWorkflows only, not Workflow "a"',
        ),
        (
            "ClusterWorkflow/ping",
            False,
            "task Pong: sub-workflows call each other in a loop: "
            "ClusterWorkflow/ping -> ClusterWorkflow/pong -> ClusterWorkflow/ping",
        ),
    ],
)
def test_subworkflow_loops_and_missing_ones_are_workflow_problems(name, require, problem):
    found = workflow_problem(
        LOOP[name], name=name, handlers=HANDLERS, workflows=LOOP, require_subworkflows=require
    )
    assert found == ((Reason.INVALID_WORKFLOW, problem) if problem else None)


def test_a_run_of_a_workflow_in_a_loop_fails_at_start():
    back = {"b": WorkflowSpec.model_validate({"tasks": [{"name": "Back", "workflowRef": {"name": "wf"}}]})}
    failed = go(wf=WorkflowView(spec=LOOP["a"], generation=1), workflows=back).status
    summary = next(c for c in failed.conditions if c.type == "Succeeded")
    assert (failed.phase, summary.reason) == (RunPhase.FAILED, "InvalidWorkflow") and failed.nodes == []
    assert summary.message == "task ToB: sub-workflows call each other in a loop: wf -> b -> wf"


@pytest.mark.parametrize(
    ("observed", "cause"),
    [
        # The innermost run's cause passes on up unchanged; the message names it once.
        (
            child(RunPhase.FAILED, reason="TaskFailed", message="Task Next failed: ...", cause=DEEP_CAUSE),
            DEEP_CAUSE,
        ),
        # A child that cannot run: this run is where the failure for good starts to be told.
        (
            child(RunPhase.FAILED, reason="InputInvalid", message="address: required"),
            FailureCause(
                run="r",
                reason="TaskFailed",
                message="Task Ship failed (permanent error): child run r-ship-1-40970c Failed: InputInvalid: address: required",
            ),
        ),
        (child(RunPhase.FAILED, reason="TaskFailed", message="Task Pack failed (4 attempts): boom"), None),
    ],
)
def test_a_failure_for_good_is_permanent_all_the_way_up(observed, cause):
    status = go(SHIP, at=5, wf=NESTED, children=observed).status
    assert status.cause == cause
    if cause is DEEP_CAUSE:
        summary = next(c for c in status.conditions if c.type == "Succeeded")
        assert summary.message == (
            "Task Ship failed (permanent error): run r-ship-1-next-1, beneath child run r-ship-1-40970c, "
            "failed: DepthExceeded: nested 9 deep"
        )


def test_a_run_failing_for_good_at_start_names_itself_as_the_cause():
    status = go(depth=9).status
    assert status.cause is not None and (status.cause.run, status.cause.reason) == ("r", "DepthExceeded")
    missing = go(wf=None, at=31).status.cause
    assert missing is not None and missing.reason == "WorkflowNotFound"
    assert go(B_FAILED, at=3, spec={"retry": 1}).status.cause is None  # a retry clears it
    assert B_FAILED.cause is not None and B_FAILED.cause.message.startswith("Task B failed (permanent error)")


def test_child_runs_count_against_a_bound_passed_down_as_shares():
    options = EngineOptions(max_descendants=6)
    first = go(go(wf=NESTED, options=options).status, at=1, wf=NESTED, options=options, results=(ok("A", 1),))
    (create,) = [a for a in first.actions if isinstance(a, CreateChildRun)]
    assert (first.status.descendants, create.max_descendants) == (1, 5)  # the child's share: what is left
    # The child ends having created 4 runs beneath it: 5 in all; its retry may create one more.
    failed = child(RunPhase.FAILED, reason="TaskFailed", message="boom", descendants=4)
    retrying = go(first.status, at=2, wf=NESTED, options=options, children=failed).status
    assert retrying.descendants == 5
    again = go(retrying, at=8, wf=NESTED, options=options)
    (create,) = [a for a in again.actions if isinstance(a, CreateChildRun)]
    assert (again.status.descendants, create.max_descendants) == (6, 0)


def test_a_run_with_no_runs_left_to_create_fails_the_step_for_good():
    spent = SHIP.model_copy(update={"descendants": 1})
    failed = go(
        spent,
        at=2,
        wf=NESTED,
        options=EngineOptions(max_descendants=1),
        children=child(RunPhase.FAILED, reason="TaskFailed", message="boom"),
    )
    status = failed.status
    summary = next(c for c in status.conditions if c.type == "Succeeded")
    assert status.phase == RunPhase.RUNNING  # retrying: the budget is looked at when it starts
    status = go(status, at=8, wf=NESTED, options=EngineOptions(max_descendants=1)).status
    summary = next(c for c in status.conditions if c.type == "Succeeded")
    assert (status.phase, summary.reason) == (RunPhase.FAILED, "TooManyRuns")
    assert "may create at most 1 runs beneath it" in summary.message
    assert status.cause is not None and status.cause.reason == "TooManyRuns"


# ----- when: earlier steps' outputs -----

SCORED = workflow(
    [
        {"name": "Score", "handler": "a"},
        {"name": "Between", "handler": "b"},
        {"name": "Review", "handler": "c", "when": "steps.Score.output.risk > 5"},
    ]
)


@pytest.mark.parametrize(("risk", "started"), [(9, "Review"), (1, None)])
def test_when_reads_an_earlier_steps_output(risk, started):
    status = go(wf=SCORED).status
    status = go(status, at=1, wf=SCORED, results=(ok("Score", 1, {"risk": risk}),)).status
    assert status.node("Score").output == {"risk": risk}  # type: ignore[union-attr]  # kept: read later
    decision = go(status, at=2, wf=SCORED, results=(ok("Between", 1, {"other": 1}),))
    assert decision.status.node("Between").output is None  # type: ignore[union-attr]  # nobody reads it
    runs = [a.node for a in decision.actions if isinstance(a, RunHandler)]
    assert runs == ([started] if started else [])


# ----- a suspended run's condition tells the present -----


@pytest.mark.parametrize(
    ("given", "observed", "wf", "message"),
    [
        (J_RUNNING, {"jobs_running": frozenset({"J"})}, AJ, "; J runs on meanwhile"),
        (B_RUNNING, {"handlers_running": frozenset({("B", 1)})}, ABC, "; B runs on meanwhile"),
        (B_RUNNING, {"results": (ok("B", 1),)}, ABC, "; on resume, task C goes on"),
        (B_RUNNING, {"results": (err("B", 1),)}, ABC, "; on resume, task B goes on"),
    ],
)
def test_a_suspended_run_says_what_runs_and_what_goes_on_on_resume(given, observed, wf, message):
    suspended = go(given, at=3, wf=wf, spec={"suspend": True}, **observed).status
    summary = next(c for c in suspended.conditions if c.type == "Succeeded")
    assert (suspended.phase, summary.reason) == (RunPhase.SUSPENDED, "Suspended")
    assert summary.message == "Suspended: no new step or attempt starts until spec.suspend is false" + message
    # The step ends while the run is suspended: the condition follows, not left at TaskStarted.
    later = go(suspended, at=4, wf=wf, spec={"suspend": True}, results=(ok("J", 1), ok("B", 1))).status
    after = next(c for c in later.conditions if c.type == "Succeeded")
    assert after.reason in ("Suspended", "Succeeded") and "runs on" not in after.message  # (J was the last)


@pytest.mark.parametrize("phase", ["running", "failed"])
def test_a_plan_with_nothing_new_changes_nothing(phase: str):
    """Looked at again later with no news (a timer, a history write, another replica's look),
    a run's status stays as it is: no write, and the conditions keep the times they became
    what they are (kstatus's Reconciling and Stalled included)."""
    running = go().status
    status = (
        running
        if phase == "running"
        else go(running, at=1, results=(err("A", 1, "boom", permanent=True),)).status
    )
    running_handlers = frozenset({("A", 1)}) if phase == "running" else frozenset()
    again = go(status, at=30, handlers_running=running_handlers)
    assert again.status.model_copy(update={"pending_history": status.pending_history}) == status
    assert [a for a in again.actions if not isinstance(a, WakeAt)] == []


# ----- values by reference -----

BIG = {"rows": ["x" * 100] * 100}  # 10 KiB of JSON: over the 4 KiB inline threshold
BIG_DIGEST = digest_of(encode(BIG))
BIG_REF = {"ref": BIG_DIGEST, "size": len(encode(BIG))}


def test_a_large_output_is_stored_and_named_by_reference_while_the_next_step_sees_it_whole():
    decision = go(A_RUNNING, at=1, results=(ok("A", 1, BIG),))
    assert decision.status.output == BIG_REF
    assert decision.status.pending_history[-2].details == {"output": BIG_REF}  # TASK_COMPLETED
    assert decision.status.pending_history[-1].details["input"] == BIG_REF  # B's TASK_STARTED
    assert decision.values[BIG_DIGEST].data == encode(BIG)
    assert only(decision.actions, RunHandler).input == BIG
    assert len(decision.status.to_wire().__repr__()) < 4096  # what etcd keeps is small


def test_a_small_output_stays_inline_and_nothing_is_stored():
    decision = go(A_RUNNING, at=1, results=(ok("A", 1, {"n": 2}),))
    assert decision.status.output == {"n": 2} and decision.values == {}


def test_a_stored_value_the_plan_needs_is_read_from_the_observed_ones():
    stored_b = go(A_RUNNING, at=1, results=(ok("A", 1, BIG),)).status
    decision = go(stored_b, at=2, results=(ok("B", 1, {"n": 3}),), values={BIG_DIGEST: BIG})
    assert only(decision.actions, RunHandler).input == {"n": 3} and decision.values == {}


def test_a_stored_value_that_cannot_be_read_holds_the_run_and_changes_nothing_else():
    stored_b = go(A_RUNNING, at=1, results=(ok("A", 1, BIG),)).status
    retrying = go(stored_b, at=2, results=(err("B", 1),)).status  # a retry needs B's input again
    held = go(retrying, at=30)
    assert held.status.nodes == retrying.nodes
    (condition,) = [c for c in held.status.conditions if c.type == "Succeeded"]
    assert condition.reason == Reason.VALUE_UNAVAILABLE and BIG_DIGEST in condition.message
    assert [type(a).__name__ for a in held.actions] == ["PostEvent", "WakeAt"]
    assert held.held  # what it observed waits for the next plan
    assert only(held.actions, WakeAt).when == T0 + timedelta(seconds=35)
    resumed = go(held.status, at=40, values={BIG_DIGEST: BIG})
    assert only(resumed.actions, RunHandler).input == BIG


def test_an_output_over_the_limit_fails_its_step_for_good_naming_both_sizes():
    huge = {"blob": "x" * 70_000}
    status = go(A_RUNNING, at=1, results=(ok("A", 1, huge),)).status
    assert status.phase == RunPhase.FAILED and status.cause is not None
    assert status.cause.reason == Reason.OUTPUT_TOO_LARGE
    assert f"{len(encode(huge))} bytes of JSON, more than the {64 * 1024}" in status.cause.message


def test_a_run_input_by_reference_is_passed_on_by_reference_and_given_whole_to_handlers():
    spec = {"input": {}, "inputRef": BIG_REF}
    decision = go(spec=spec, values={BIG_DIGEST: BIG})
    assert decision.status.pending_history[0].details["input"] == BIG_REF
    assert only(decision.actions, RunHandler).input == BIG and decision.values == {}
    job = go(
        go(wf=AJ, spec=spec, values={BIG_DIGEST: BIG}).status,
        at=1,
        wf=AJ,
        spec=spec,
        results=(ok("A", 1, BIG),),
    )
    assert only(job.actions, CreateJob).input == BIG_REF  # its executor fetches it


def test_a_large_inline_input_is_stored_once_it_is_over_the_threshold():
    decision = go(spec={"input": BIG})
    assert decision.status.pending_history[0].details["input"] == BIG_REF
    assert BIG_DIGEST in decision.values and only(decision.actions, RunHandler).input == BIG


def test_an_input_shaped_like_a_reference_is_refused():
    status = go(spec={"input": BIG_REF}).status
    assert status.phase == RunPhase.FAILED
    assert [c.reason for c in status.conditions if c.type == "Succeeded"] == [Reason.INPUT_INVALID]


def test_a_group_merges_stored_member_outputs():
    group = workflow(
        [{"name": "G", "parallel": [{"name": "x", "handler": "a"}, {"name": "y", "handler": "b"}]}]
    )
    running = go(wf=group).status
    x_done = go(
        running, at=1, wf=group, results=(ok("G/x", 1, BIG),), handlers_running=frozenset({("G/y", 1)})
    )
    assert x_done.status.node("G/x").output == BIG_REF  # type: ignore[union-attr]
    merged = go(x_done.status, at=2, wf=group, results=(ok("G/y", 1, {"y": 1}),), values={BIG_DIGEST: BIG})
    assert merged.status.phase == RunPhase.SUCCEEDED
    whole = {"n": 1, **BIG, "y": 1}
    assert merged.status.output == {"ref": digest_of(encode(whole)), "size": len(encode(whole))}


def test_a_when_expression_reads_a_stored_output():
    wf = workflow(
        [
            {"name": "A", "handler": "a"},
            {"name": "B", "handler": "b", "when": "size(steps.A.output.rows) == 100"},
        ]
    )
    running = go(wf=wf).status
    decision = go(running, at=1, wf=wf, results=(ok("A", 1, BIG),))
    assert only(decision.actions, RunHandler).node == "B"


def test_a_signal_merged_into_the_shape_of_a_reference_fails_the_step_for_good():
    wf = workflow([{"name": "Gate", "wait": {"signal": "go"}}])
    waiting = go(wf=wf, spec={"input": {}}).status
    forged = {"ref": "sha256:" + "1" * 64, "size": 3}
    status = go(waiting, at=1, wf=wf, spec={"input": {}, "signals": {"go": forged}}).status
    assert status.phase == RunPhase.FAILED and "shape of a stored value's reference" in (
        status.cause.message if status.cause else ""
    )


def test_a_run_with_both_input_and_input_ref_is_refused():
    status = go(spec={"input": {"n": 1}, "inputRef": BIG_REF}).status
    assert status.phase == RunPhase.FAILED and "both input and inputRef" in status.conditions[0].message


# ----- a status that stays small: finished nodes folded, a large task list by reference -----

EIGHT = workflow([{"name": f"S{i}", "handler": "a"} for i in range(8)])
FOLD_3 = EngineOptions(default_timeout_seconds=60, node_chunk=3, inline_tasks_bytes=200)


def expanded_status(decision: Decision, store: dict[str, Any]) -> WorkflowRunStatus:
    """The status as a plan sees it (folded parts read back from `store`)."""
    return expanded(decision.status, known=store)[0]


def drive(options: EngineOptions, *, fail: str | None = None) -> tuple[list[Decision], dict[str, Any]]:
    """Run EIGHT to its end, each step's attempt ending at once (`fail`: that step fails for
    good); the stored values kept as the shell keeps them."""
    store: dict[str, Any] = {}
    decisions = [go(wf=EIGHT, options=options)]
    while (start := next((a for a in decisions[-1].actions if isinstance(a, RunHandler)), None)) is not None:
        store.update({d: e.value for d, e in decisions[-1].values.items()})
        result = (
            err(start.node, start.attempt, permanent=True)
            if start.node == fail
            else ok(start.node, start.attempt, {"at": start.node})
        )
        at = len(decisions)
        decisions.append(
            go(decisions[-1].status, at=at, wf=EIGHT, options=options, results=(result,), values=store)
        )
    store.update({d: e.value for d, e in decisions[-1].values.items()})
    return decisions, store


def test_a_folded_run_decides_exactly_what_an_unfolded_one_does():
    folded, store = drive(FOLD_3)
    whole, _ = drive(replace(FOLD_3, node_chunk=100, inline_tasks_bytes=1 << 20))
    assert [d.actions for d in folded] == [d.actions for d in whole]
    assert [expanded_status(d, store) for d in folded] == [d.status for d in whole]
    last = folded[-1].status
    assert last.phase == RunPhase.SUCCEEDED and last.progress == "8/8" and last.output == {"at": "S7"}
    assert len(last.earlier_nodes) == 2 and [n.id for n in last.nodes] == ["S6", "S7"]
    assert last.pinned_tasks is None and last.pinned_tasks_ref is not None


def test_a_chunk_is_folded_once_and_then_stands_as_it_is():
    decisions, _ = drive(FOLD_3)
    made = [sorted(d.values) for d in decisions]
    chunks = [ref.ref for ref in decisions[-1].status.earlier_nodes]
    assert sum(c in m for m in made for c in chunks) == len(chunks)  # each stored by one decision
    assert [len(d.status.nodes) for d in decisions] == [1, 2, 3, 1, 2, 3, 1, 2, 2]


def test_a_run_whose_folded_nodes_cannot_be_read_waits_and_changes_nothing():
    decisions, _ = drive(FOLD_3)
    running = decisions[5].status  # S5 runs; S0..S2 folded
    held = go(running, at=20, wf=EIGHT, options=FOLD_3, handlers_running=frozenset({("S5", 1)}))
    assert held.held and held.status.nodes == running.nodes
    assert held.status.earlier_nodes == running.earlier_nodes
    (condition,) = [c for c in held.status.conditions if c.type == "Succeeded"]
    assert condition.reason == Reason.VALUE_UNAVAILABLE


def test_a_retry_runs_again_a_step_whose_failed_node_was_folded():
    decisions, store = drive(replace(FOLD_3, node_chunk=1), fail="S2")
    failed = decisions[-1].status
    assert failed.phase == RunPhase.FAILED and [n.id for n in failed.nodes] == ["S2"]
    again = go(
        failed, at=30, wf=EIGHT, options=replace(FOLD_3, node_chunk=1), spec={"retry": 1}, values=store
    )
    assert only(again.actions, RunHandler).node == "S2" and again.status.phase == RunPhase.RUNNING
    assert expanded_status(again, {**store, **{d: e.value for d, e in again.values.items()}}).node(
        "S1"
    ) == expanded_status(decisions[-1], store).node("S1")


def test_a_small_task_list_stays_inline_and_nothing_folds_below_the_chunk():
    decisions, store = drive(EngineOptions(default_timeout_seconds=60))
    assert store == {} and all(d.status.pinned_tasks for d in decisions)
    assert decisions[-1].status.earlier_nodes == [] and len(decisions[-1].status.nodes) == 8


# ----- the input read from a ConfigMap or Secret (spec.inputFrom) -----

FROM_CONFIG_MAP = {"input": {}, "inputFrom": {"configMapKeyRef": {"name": "order", "key": "input.json"}}}


def test_an_input_read_from_a_config_map_is_kept_in_the_status_and_given_to_the_first_step():
    decision = go(spec=FROM_CONFIG_MAP, input_from=InputRead(value={"order": 7}))
    assert decision.status.input == {"order": 7} and decision.status.phase == RunPhase.RUNNING
    assert only(decision.actions, RunHandler).input == {"order": 7}
    assert decision.status.pending_history[0].details["input"] == {"order": 7}
    retrying = go(decision.status, at=1, spec=FROM_CONFIG_MAP, results=(err("A", 1),)).status
    again = go(retrying, at=5, spec=FROM_CONFIG_MAP)  # not read again: the kept one
    assert only(again.actions, RunHandler).input == {"order": 7}


def test_a_run_with_both_input_and_input_from_is_refused():
    status = go(spec={**FROM_CONFIG_MAP, "input": {"n": 1}}, input_from=InputRead(value={"n": 2})).status
    assert status.phase == RunPhase.FAILED and "both input and inputFrom" in status.conditions[0].message


def test_a_large_input_read_from_a_config_map_is_stored():
    decision = go(spec=FROM_CONFIG_MAP, input_from=InputRead(value=BIG))
    assert decision.status.input == BIG_REF and BIG_DIGEST in decision.values
    assert only(decision.actions, RunHandler).input == BIG


@pytest.mark.parametrize(
    ("read", "at", "phase", "reason", "says"),
    [
        (
            InputRead(missing="ConfigMap not found"),
            0,
            RunPhase.PENDING,
            Reason.WAITING_FOR_INPUT,
            "ConfigMap not found",
        ),
        (InputRead(missing="ConfigMap not found"), 30, RunPhase.FAILED, Reason.INPUT_INVALID, "No input in"),
        (None, 60, RunPhase.PENDING, Reason.WAITING_FOR_INPUT, "it could not be read"),
        (InputRead(problem="it is an array"), 0, RunPhase.FAILED, Reason.INPUT_INVALID, "it is an array"),
        (InputRead(value=BIG_REF), 0, RunPhase.FAILED, Reason.INPUT_INVALID, "stored value's reference"),
    ],
    ids=["missing-waits", "missing-past-the-wait-fails", "unread-waits", "not-an-object", "ref-shaped"],
)
def test_an_input_that_cannot_be_read_waits_or_fails_saying_why(
    read: InputRead | None, at: float, phase: RunPhase, reason: str, says: str
):
    decision = go(at=at, spec=FROM_CONFIG_MAP, input_from=read)
    (condition,) = [c for c in decision.status.conditions if c.type == "Succeeded"]
    assert decision.status.phase == phase and condition.reason == reason
    assert says in condition.message and 'ConfigMap "order" key "input.json"' in condition.message
    assert decision.status.input is None and not decision.status.started
    if phase == RunPhase.PENDING:
        assert only(decision.actions, WakeAt).when <= T0 + timedelta(seconds=at + 5)


# ----- artifacts: files between Job steps -----

FILES = workflow(
    [
        {"name": "Extract", "job": {"image": "x"}, "artifacts": {"outputs": [{"name": "raw.csv"}]}},
        {
            "name": "Load",
            "job": {"image": "y"},
            "artifacts": {"inputs": [{"name": "in.csv", "step": "Extract", "artifact": "raw.csv"}]},
        },
    ]
)
RAW = StoredArtifact(name="raw.csv", key="ns/uid/Extract/1/raw.csv", size=52428800, sha256="ab" * 32)
EXTRACT_RUNNING = go(wf=FILES).status


@pytest.mark.parametrize(
    ("kept", "phase", "load", "created"),
    [
        ((RAW,), RunPhase.RUNNING, (NodePhase.RUNNING, 1), (RAW.model_copy(update={"name": "in.csv"}),)),
        ((), RunPhase.FAILED, (NodePhase.FAILED, 1), None),
    ],
    ids=["kept: the next step gets it under its own name", "not kept: the next step fails for good"],
)
def test_a_kept_file_goes_to_the_step_that_names_it(kept, phase, load, created):
    done = AttemptResult(node="Extract", attempt=1, output={"rows": 3}, artifacts=kept)
    decision = go(EXTRACT_RUNNING, at=1, wf=FILES, results=(done,))
    nodes = {n.id: n for n in decision.status.nodes}
    assert decision.status.phase == phase
    assert nodes["Extract"].artifacts == (list(kept) or None)
    assert (nodes["Load"].phase, nodes["Load"].attempts) == load
    if created is None:
        assert not [a for a in decision.actions if isinstance(a, CreateJob)]
        assert (
            next(c for c in decision.status.conditions if c.type == "Succeeded").reason == "ArtifactMissing"
        )
        assert (
            'step Extract\'s "raw.csv", which was not kept (it ended without it)' in nodes["Load"].last_error
        )
    else:
        assert only(decision.actions, CreateJob).artifacts == created
    completed = [e for e in decision.status.pending_history if e.type == HistoryEvent.TASK_COMPLETED]
    assert completed[0].details.get("artifacts", []) == [a.to_wire() for a in kept]


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ([{"name": "in", "step": "Extract", "artifact": "raw.csv"}], None),
        ([{"name": "raw.csv", "step": "Extract"}], None),
        (
            [{"name": "in", "step": "Extract"}],
            'task Load: artifact input "in" names Extract\'s "in", which it does not declare as an output',
        ),
        (
            [{"name": "in", "step": "Later", "artifact": "x"}],
            'task Load: artifact input "in" names Later, not an earlier step',
        ),
        (
            [{"name": "in", "step": "Nowhere"}],
            'task Load: artifact input "in" names Nowhere, not an earlier step',
        ),
    ],
)
def test_an_artifact_input_must_name_an_earlier_steps_output(inputs, problem):
    tasks = [
        {"name": "Extract", "job": {"image": "x"}, "artifacts": {"outputs": [{"name": "raw.csv"}]}},
        {"name": "Load", "handler": "a", "artifacts": {"inputs": inputs}},
        {"name": "Later", "job": {"image": "z"}, "artifacts": {"outputs": [{"name": "x"}]}},
    ]
    found = workflow_problem(workflow(tasks).spec, name="wf", handlers=HANDLERS, workflows={})
    assert found == (("InvalidWorkflow", problem) if problem else None)


def test_artifact_names_are_unique_across_a_steps_inputs_and_outputs():
    tasks = [
        {"name": "Extract", "job": {"image": "x"}, "artifacts": {"outputs": [{"name": "a"}, {"name": "b"}]}},
        {
            "name": "Load",
            "job": {"image": "y"},
            "artifacts": {
                "inputs": [{"name": "a", "step": "Extract"}, {"name": "b", "step": "Extract"}],
                "outputs": [{"name": "a"}],
            },
        },
    ]
    found = workflow_problem(workflow(tasks).spec, name="wf", handlers=HANDLERS, workflows={})
    assert found == (
        "InvalidWorkflow",
        "task Load: artifact names must be unique across inputs and outputs (each is a file of one directory): a",
    )
