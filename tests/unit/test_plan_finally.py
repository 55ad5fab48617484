"""Table tests of finally tasks and run deadlines: the finally tasks run in order after the tasks
end in any way (succeeded, failed, cancelled, past the deadline; compensations first), each
given the run's input, its outcome and the data so far; they change the outcome only by failing;
suspend holds them, a second cancel does not skip them, deletion does. A deadline cancels what
runs and fails the run with DeadlineExceeded, its timer set again by every plan."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from seqflow.api.models import NodePhase, RunPhase
from seqflow.engine import CancelHandler, DeleteJob, RunHandler, WakeAt, workflow_problem
from tests.unit.test_plan import HANDLERS, T0, Row, check, err, go, ok, workflow

FIN = workflow(
    [{"name": "A", "handler": "a"}, {"name": "B", "handler": "b", "retry": {"maxRetries": 0}}],
    **{"finally": [{"name": "Notify", "handler": "c"}, {"name": "Clean", "handler": "c"}]},
)
B_RUNNING = go(go(wf=FIN).status, at=1, wf=FIN, results=(ok("A", 1, {"n": 2}),)).status
AFTER_SUCCESS = go(B_RUNNING, at=2, wf=FIN, results=(ok("B", 1, {"n": 3}),)).status
AFTER_FAILURE = go(B_RUNNING, at=2, wf=FIN, results=(err("B", 1, "card declined", permanent=True),)).status
NOTIFIED = go(AFTER_SUCCESS, at=3, wf=FIN, results=(ok("Notify", 1, {"sent": True}),)).status
TIMED = workflow(
    [{"name": "A", "handler": "a"}], timeoutSeconds=10, **{"finally": [{"name": "Notify", "handler": "c"}]}
)
TIMED_RUNNING = go(wf=TIMED).status
JOBS = workflow([{"name": "A", "job": {"image": "x"}}], **{"finally": [{"name": "Notify", "handler": "c"}]})
UNDO = workflow(
    [
        {"name": "A", "handler": "a", "compensate": {"handler": "c"}},
        {"name": "B", "handler": "b", "retry": {"maxRetries": 0}},
    ],
    **{"finally": [{"name": "Notify", "handler": "c"}]},
)
UNDO_B = go(go(wf=UNDO).status, at=1, wf=UNDO, results=(ok("A", 1),)).status

ROWS = {
    "after the tasks succeed the first finally task starts": Row(
        B_RUNNING, {"results": (ok("B", 1, {"n": 3}),)}, at=2, wf=FIN, phase=RunPhase.RUNNING,
        nodes={"B": (NodePhase.SUCCEEDED, 1), "Notify": (NodePhase.RUNNING, 1)}, actions=["RunHandler"],
        entries=["TASK_COMPLETED", "FINALLY_STARTED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "the finally tasks run in order": Row(
        AFTER_SUCCESS, {"results": (ok("Notify", 1),)}, at=3, wf=FIN, phase=RunPhase.RUNNING,
        nodes={"Notify": (NodePhase.SUCCEEDED, 1), "Clean": (NodePhase.RUNNING, 1)}, actions=["RunHandler"],
        entries=["TASK_COMPLETED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "once they are done the run has succeeded": Row(
        NOTIFIED, {"results": (ok("Clean", 1),)}, at=4, wf=FIN, phase=RunPhase.SUCCEEDED,
        nodes={"Clean": (NodePhase.SUCCEEDED, 1)}, actions=["PostEvent"],
        entries=["TASK_COMPLETED", "WORKFLOW_COMPLETED"], reason="Succeeded",
    ),
    "a task that fails for good starts the finally tasks": Row(
        B_RUNNING, {"results": (err("B", 1, "card declined", permanent=True),)}, at=2, wf=FIN,
        phase=RunPhase.RUNNING, nodes={"B": (NodePhase.FAILED, 1), "Notify": (NodePhase.RUNNING, 1)},
        actions=["RunHandler"], entries=["TASK_FAILED", "FINALLY_STARTED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "a failing finally task does not stop the next": Row(
        AFTER_SUCCESS, {"results": (err("Notify", 1, "smtp down", permanent=True),)}, at=3, wf=FIN,
        phase=RunPhase.RUNNING, nodes={"Notify": (NodePhase.FAILED, 1), "Clean": (NodePhase.RUNNING, 1)},
        actions=["RunHandler"], entries=["TASK_FAILED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "suspend holds the finally tasks": Row(
        AFTER_SUCCESS, {"results": (ok("Notify", 1),)}, at=3, wf=FIN, spec={"suspend": True},
        phase=RunPhase.SUSPENDED, nodes={"Notify": (NodePhase.SUCCEEDED, 1)}, actions=["PostEvent"],
        entries=["TASK_COMPLETED", "RUN_SUSPENDED"], reason="Suspended",
    ),
    "a cancel while they run does not skip them": Row(
        AFTER_FAILURE, {"handlers_running": frozenset({("Notify", 1)})}, at=3, wf=FIN, spec={"cancel": True},
        phase=RunPhase.RUNNING, nodes={"Notify": (NodePhase.RUNNING, 1)}, actions=[], entries=[],
        reason="TaskStarted",
    ),
    "deleting the run stops them": Row(
        AFTER_FAILURE, {"handlers_running": frozenset({("Notify", 1)}), "deleted": True}, at=3, wf=FIN,
        phase=RunPhase.CANCELLED, nodes={"Notify": (NodePhase.CANCELLED, 1)}, actions=["CancelHandler"],
        entries=["TASK_CANCELLED", "WORKFLOW_CANCELLED"], reason="RunDeleted",
    ),
    "compensations run before the finally tasks": Row(
        UNDO_B, {"results": (err("B", 1, "no", permanent=True),)}, at=2, wf=UNDO, phase=RunPhase.COMPENSATING,
        nodes={"A:compensate": (NodePhase.RUNNING, 1)}, actions=["PostEvent", "RunHandler"],
        entries=["TASK_FAILED", "COMPENSATION_STARTED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "past its deadline the run cancels what runs and runs its finally tasks": Row(
        TIMED_RUNNING, {"handlers_running": frozenset({("A", 1)})}, at=10, wf=TIMED, phase=RunPhase.RUNNING,
        nodes={"A": (NodePhase.CANCELLED, 1), "Notify": (NodePhase.RUNNING, 1)},
        actions=["CancelHandler", "RunHandler"], entries=["TASK_CANCELLED", "FINALLY_STARTED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
}  # fmt: skip


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_finally(row: Row):
    check(row)


def summary(decision: Any) -> tuple[str, str]:
    (condition,) = [c for c in decision.status.conditions if c.type == "Succeeded"]
    return condition.reason, condition.message


def test_a_finally_task_gets_the_runs_input_its_outcome_and_the_data_so_far():
    (start,) = [a for a in go(B_RUNNING, at=2, wf=FIN, results=(ok("B", 1, {"n": 3}),)).actions]
    assert isinstance(start, RunHandler) and start.node == "Notify"
    assert start.input == {
        "input": {"n": 1},
        "outcome": {
            "phase": "Succeeded",
            "reason": "Succeeded",
            "message": "All 2 tasks succeeded",
            "failedStep": None,
        },
        "output": {"n": 3},
    }
    failed = [
        a
        for a in go(B_RUNNING, at=2, wf=FIN, results=(err("B", 1, "card declined", permanent=True),)).actions
    ]
    assert isinstance(failed[0], RunHandler)
    assert failed[0].input["outcome"] == {
        "phase": "Failed",
        "reason": "TaskFailed",
        "message": "Task B failed (permanent error): card declined",
        "failedStep": "B",
    }


def test_the_finally_tasks_leave_the_outcome_and_the_output_as_they_were():
    succeeded = go(NOTIFIED, at=4, wf=FIN, results=(ok("Clean", 1, {"cleaned": True}),))
    assert succeeded.status.output == {"n": 3} and succeeded.status.ending is None
    failed = go(AFTER_FAILURE, at=3, wf=FIN, results=(ok("Notify", 1),))
    failed = go(failed.status, at=4, wf=FIN, results=(ok("Clean", 1),))
    assert failed.status.phase == RunPhase.FAILED
    assert summary(failed) == ("TaskFailed", "Task B failed (permanent error): card declined")


def test_a_failed_finally_task_fails_the_run_keeping_the_first_cause():
    failed = go(AFTER_FAILURE, at=3, wf=FIN, results=(err("Notify", 1, "smtp down", permanent=True),))
    failed = go(failed.status, at=4, wf=FIN, results=(ok("Clean", 1),))
    assert failed.status.phase == RunPhase.FAILED
    assert summary(failed) == (
        "FinallyFailed",
        "Task B failed (permanent error): card declined; finally task Notify failed: smtp down",
    )
    after_success = go(AFTER_SUCCESS, at=3, wf=FIN, results=(err("Notify", 1, "smtp down", permanent=True),))
    after_success = go(after_success.status, at=4, wf=FIN, results=(ok("Clean", 1),))
    assert after_success.status.phase == RunPhase.FAILED
    assert summary(after_success)[0] == "FinallyFailed"


def test_a_cancel_during_a_job_deletes_it_and_the_finally_task_sees_cancelled():
    running = go(wf=JOBS).status
    cancelled = go(running, at=1, wf=JOBS, spec={"cancel": True}, jobs_running=frozenset({"A"}))
    assert [type(a) for a in cancelled.actions][:2] == [DeleteJob, RunHandler]
    start = next(a for a in cancelled.actions if isinstance(a, RunHandler))
    assert start.input["outcome"]["phase"] == "Cancelled" and start.input["outcome"]["reason"] == "Cancelled"
    ended = go(cancelled.status, at=2, wf=JOBS, spec={"cancel": True}, results=(ok("Notify", 1),))
    assert ended.status.phase == RunPhase.CANCELLED


def test_a_deadline_is_a_timer_set_by_every_plan_and_ends_the_run_failed():
    assert TIMED_RUNNING.deadline == T0 + timedelta(seconds=10)
    early = go(TIMED_RUNNING, at=3, wf=TIMED, handlers_running=frozenset({("A", 1)}))
    assert [a for a in early.actions if isinstance(a, WakeAt)] == [WakeAt(T0 + timedelta(seconds=10))]
    past = go(TIMED_RUNNING, at=10, wf=TIMED, handlers_running=frozenset({("A", 1)}))
    assert isinstance(past.actions[0], CancelHandler)
    start = next(a for a in past.actions if isinstance(a, RunHandler))
    assert start.input["outcome"]["reason"] == "DeadlineExceeded"
    ended = go(past.status, at=11, wf=TIMED, results=(ok("Notify", 1),))
    assert ended.status.phase == RunPhase.FAILED
    assert summary(ended) == ("DeadlineExceeded", "The run passed its deadline (10 s)")


def test_the_runs_timeout_wins_over_its_workflows():
    assert go(wf=TIMED, spec={"timeoutSeconds": 60}).status.deadline == T0 + timedelta(seconds=60)


def test_a_retried_run_runs_its_finally_tasks_again_with_a_new_deadline():
    done = go(AFTER_FAILURE, at=3, wf=FIN, results=(ok("Notify", 1),))
    failed = go(done.status, at=4, wf=FIN, results=(ok("Clean", 1),)).status
    retried = go(failed, at=5, wf=FIN, spec={"retry": 1})
    assert [a.node for a in retried.actions if isinstance(a, RunHandler)] == ["B"]
    again = go(retried.status, at=6, wf=FIN, spec={"retry": 1}, results=(ok("B", 2, {"n": 3}),))
    assert [a.node for a in again.actions if isinstance(a, RunHandler)] == ["Notify"]
    timed_out = go(TIMED_RUNNING, at=10, wf=TIMED, handlers_running=frozenset({("A", 1)}))
    timed_out = go(timed_out.status, at=11, wf=TIMED, results=(ok("Notify", 1),))
    assert go(timed_out.status, at=20, wf=TIMED, spec={"retry": 1}).status.deadline == T0 + timedelta(
        seconds=30
    )


@pytest.mark.parametrize(
    ("final", "problem"),
    [
        (
            {"name": "Notify", "handler": "nope"},
            ("HandlerNotFound", 'task Notify: no handler registered as "nope"'),
        ),
        (
            {"name": "Notify", "http": {"url": "http://hooks.svc/{{ steps.Gone.output.id }}"}},
            (
                "InvalidWorkflow",
                "task Notify: http url 'steps.Gone.output.id' reads steps.Gone, not a step of this Workflow",
            ),
        ),
        ({"name": "Notify", "http": {"url": "http://hooks.svc/{{ steps.A.output.id }}"}}, None),
    ],
)
def test_finally_tasks_are_checked_with_the_workflow(final: dict[str, Any], problem: tuple[str, str] | None):
    spec = workflow([{"name": "A", "handler": "a"}], **{"finally": [final]}).spec
    found = workflow_problem(spec, name="wf", handlers=HANDLERS, workflows={})
    assert (
        found is None
        if problem is None
        else found is not None and found[0] == problem[0] and found[1].startswith(problem[1])
    )


@pytest.mark.parametrize(
    ("step", "observed", "stops"),
    [
        ({"handler": "a"}, {"handlers_running": frozenset({("S", 1)})}, ["CancelHandler"]),
        ({"job": {"image": "x"}}, {"jobs_running": frozenset({"S"})}, ["DeleteJob"]),
        ({"http": {"url": "http://a.svc/"}}, {"handlers_running": frozenset({("S", 1)})}, ["CancelHandler"]),
        ({"sleep": {"seconds": 600}}, {}, []),
        ({"wait": {"signal": "go"}}, {}, []),
        ({"workflowRef": {"name": "child"}}, {}, ["ControlChildRun"]),
        (
            {"parallel": [{"name": "M", "handler": "a"}, {"name": "N", "job": {"image": "x"}}]},
            {"handlers_running": frozenset({("S/M", 1)}), "jobs_running": frozenset({"S/N"})},
            ["CancelHandler", "DeleteJob"],
        ),
        (
            {"forEach": {"items": "[1, 2]", "step": {"handler": "a"}}},
            {"handlers_running": frozenset({("S/0", 1), ("S/1", 1)})},
            ["CancelHandler", "CancelHandler"],
        ),
    ],
    ids=["handler", "job", "http", "sleep", "wait", "sub-workflow", "parallel", "forEach"],
)
def test_a_deadline_during_each_kind_of_step_stops_it_and_fails_the_run(
    step: dict[str, Any], observed: dict[str, Any], stops: list[str]
):
    wf = workflow([{"name": "S", **step}], timeoutSeconds=10)
    status = go(wf=wf).status
    past = go(status, at=10, wf=wf, **observed)
    assert [type(a).__name__ for a in past.actions if type(a).__name__ != "PostEvent"] == stops
    assert past.status.phase == RunPhase.FAILED and summary(past) == (
        "DeadlineExceeded",
        "The run passed its deadline (10 s)",
    )
    assert all(n.phase == NodePhase.CANCELLED for n in past.status.nodes)


def test_a_deadline_while_a_step_waits_to_be_retried_ends_the_wait():
    wf = workflow(
        [{"name": "S", "handler": "a", "retry": {"maxRetries": 3, "backoffSeconds": 60}}], timeoutSeconds=10
    )
    retrying = go(go(wf=wf).status, at=1, wf=wf, results=(err("S", 1, "busy"),)).status
    assert retrying.node("S").phase == NodePhase.RETRYING  # type: ignore[union-attr]
    past = go(retrying, at=10, wf=wf)
    assert past.status.phase == RunPhase.FAILED and past.status.node("S").phase == NodePhase.CANCELLED  # type: ignore[union-attr]
