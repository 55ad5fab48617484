"""Table tests of the engine: every transition of a run, from inputs to new status and actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from seqflow.api.models import (
    ConditionStatus,
    Reason,
    RunPhase,
    TaskPhase,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowSpec,
)
from seqflow.engine import (
    AttemptResult,
    CreateJob,
    Decision,
    EngineOptions,
    Observations,
    PostEvent,
    RunHandler,
    RunView,
    WakeAt,
    WorkflowView,
    fail_unrecordable,
    plan,
)
from seqflow.engine.plan import INTERRUPTED

T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
OPTIONS = EngineOptions(workflow_wait=timedelta(seconds=30), default_timeout_seconds=60)
HANDLERS = frozenset({"a", "b", "c"})

WORKFLOW = WorkflowView(
    spec=WorkflowSpec.model_validate(
        {
            "defaults": {"retry": {"maxRetries": 2, "backoffSeconds": 2, "backoffFactor": 3}},
            "tasks": [
                {"name": "A", "handler": "a"},
                {"name": "B", "handler": "b", "retry": {"maxRetries": 3}, "timeoutSeconds": 5},
                {"name": "C", "handler": "c"},
            ],
        }
    ),
    generation=4,
)
SPEC = WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"}, "input": {"n": 1}})


def view(status: WorkflowRunStatus | None = None) -> RunView:
    return RunView(spec=SPEC, status=status or WorkflowRunStatus(), generation=1, created_at=T0)


def step(
    status: WorkflowRunStatus | None = None,
    *,
    at: float = 0,
    result: AttemptResult | None = None,
    workflow: WorkflowView | None = WORKFLOW,
    handlers: frozenset[str] = HANDLERS,
) -> Decision:
    observed = Observations(workflow=workflow, handlers=handlers, result=result)
    return plan(run=view(status), observed=observed, now=T0 + timedelta(seconds=at), options=OPTIONS)


def only(actions, kind):
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, actions
    return found[0]


def reasons(decision: Decision) -> list[str]:
    return [a.reason for a in decision.actions if isinstance(a, PostEvent)]


def condition(status: WorkflowRunStatus):
    (cond,) = [c for c in status.conditions if c.type == "Succeeded"]
    return cond


def ok(index: int, attempt: int, output: dict) -> AttemptResult:
    return AttemptResult(task_index=index, attempt=attempt, output=output)


def err(index: int, attempt: int, message: str = "boom", permanent: bool = False) -> AttemptResult:
    return AttemptResult(task_index=index, attempt=attempt, error=message, permanent=permanent)


def run_to(decisions: list) -> WorkflowRunStatus:
    """Feed results in sequence starting from a fresh run; return the last status."""
    status = step().status
    for at, result in decisions:
        status = step(status, at=at, result=result).status
    return status


# ----- start -----


def test_start_pins_definition_and_runs_first_task_with_run_input():
    decision = step()
    status = decision.status
    assert status.phase == RunPhase.RUNNING
    assert status.workflow_generation == 4
    assert [t.name for t in status.pinned_tasks] == ["A", "B", "C"]
    assert status.pinned_tasks[0].retry.max_retries == 2
    assert status.pinned_tasks[1].retry.max_retries == 3  # task override
    assert status.pinned_tasks[1].retry.backoff_factor == 3  # inherited from defaults
    assert status.pinned_tasks[1].timeout_seconds == 5
    assert status.pinned_tasks[0].timeout_seconds == 60  # operator default
    assert status.tasks[0].phase == TaskPhase.RUNNING and status.tasks[0].attempts == 1
    assert [t.phase for t in status.tasks[1:]] == [TaskPhase.PENDING] * 2
    assert status.current_task == "A" and status.progress == "0/3" and status.started_at == T0
    action = only(decision.actions, RunHandler)
    assert (action.task_index, action.attempt, action.input) == (0, 1, {"n": 1})
    assert reasons(decision) == [Reason.STARTED]
    assert condition(status).status == ConditionStatus.UNKNOWN


def test_start_writes_observed_generation():
    assert step().status.observed_generation == 1


# ----- success and data flow -----


def test_task_success_passes_output_to_next_task():
    first = step()
    decision = step(first.status, at=1, result=ok(0, 1, {"n": 2}))
    status = decision.status
    assert status.tasks[0].phase == TaskPhase.SUCCEEDED
    assert status.tasks[0].finished_at == T0 + timedelta(seconds=1)
    assert status.tasks[1].phase == TaskPhase.RUNNING
    assert status.current_task == "B" and status.progress == "1/3"
    assert status.output == {"n": 2}
    action = only(decision.actions, RunHandler)
    assert (action.task_index, action.attempt, action.input) == (1, 1, {"n": 2})
    assert reasons(decision) == [Reason.TASK_SUCCEEDED]


def test_last_task_done_succeeds_run_with_last_output():
    status = run_to([(1, ok(0, 1, {"n": 2})), (2, ok(1, 1, {"n": 3}))])
    decision = step(status, at=3, result=ok(2, 1, {"n": 4}))
    final = decision.status
    assert final.phase == RunPhase.SUCCEEDED
    assert final.output == {"n": 4}
    assert final.progress == "3/3" and final.current_task is None
    assert final.finished_at == T0 + timedelta(seconds=3)
    assert condition(final).status == ConditionStatus.TRUE
    assert condition(final).reason == Reason.SUCCEEDED
    assert not any(isinstance(a, RunHandler) for a in decision.actions)


def test_finished_run_is_left_alone():
    status = run_to([(1, ok(0, 1, {})), (2, ok(1, 1, {})), (3, ok(2, 1, {}))])
    decision = step(status, at=10)
    assert decision.status == status and decision.actions == ()


# ----- failures and retries -----


def test_failure_with_retries_left_schedules_retry_with_backoff():
    decision = step(step().status, at=1, result=err(0, 1, "gateway timeout"))
    task = decision.status.tasks[0]
    assert task.phase == TaskPhase.RETRYING
    assert task.attempts == 1
    assert task.last_error == "gateway timeout"
    assert task.next_retry_at == T0 + timedelta(seconds=1 + 2)
    assert decision.status.phase == RunPhase.RUNNING
    assert only(decision.actions, WakeAt).when == task.next_retry_at
    assert condition(decision.status).reason == Reason.TASK_RETRYING
    assert reasons(decision) == [Reason.TASK_RETRYING]


def test_backoff_not_elapsed_only_waits():
    retrying = step(step().status, at=1, result=err(0, 1)).status
    decision = step(retrying, at=2)
    assert decision.status == retrying.model_copy(update={"observed_generation": 1})
    assert decision.actions == (WakeAt(T0 + timedelta(seconds=3)),)


def test_backoff_elapsed_starts_next_attempt_with_same_input():
    retrying = step(step().status, at=1, result=err(0, 1)).status
    decision = step(retrying, at=3)
    task = decision.status.tasks[0]
    assert task.phase == TaskPhase.RUNNING and task.attempts == 2 and task.next_retry_at is None
    assert task.started_at == T0  # the task's first start is kept
    action = only(decision.actions, RunHandler)
    assert (action.attempt, action.input) == (2, {"n": 1})
    assert decision.status.retries == 1


def test_backoff_grows_by_factor_and_is_capped():
    wf = WorkflowView(
        spec=WorkflowSpec.model_validate(
            {
                "tasks": [
                    {
                        "name": "A",
                        "handler": "a",
                        "retry": {
                            "maxRetries": 5,
                            "backoffSeconds": 1,
                            "backoffFactor": 2,
                            "maxBackoffSeconds": 5,
                        },
                    }
                ]
            }
        ),
        generation=1,
    )
    status = step(workflow=wf).status
    now = 0.0
    delays = []
    for attempt in range(1, 6):
        status = step(status, at=now, result=err(0, attempt), workflow=wf).status
        delay = (status.tasks[0].next_retry_at - (T0 + timedelta(seconds=now))).total_seconds()
        delays.append(delay)
        now += delay
        status = step(status, at=now, workflow=wf).status
    assert delays == [1, 2, 4, 5, 5]


def test_retries_exhausted_fails_task_and_run_with_error():
    status = step().status
    for attempt, at in ((1, 1), (2, 4)):
        status = step(status, at=at, result=err(0, attempt, "card declined")).status
        status = step(status, at=at + 100).status
    decision = step(status, at=200, result=err(0, 3, "card declined"))
    final = decision.status
    assert final.phase == RunPhase.FAILED
    assert final.tasks[0].phase == TaskPhase.FAILED and final.tasks[0].attempts == 3
    assert final.finished_at == T0 + timedelta(seconds=200)
    cond = condition(final)
    assert cond.status == ConditionStatus.FALSE and cond.reason == Reason.TASK_FAILED
    assert "card declined" in cond.message and "3 attempts" in cond.message
    assert final.retries == 2
    assert not any(isinstance(a, (RunHandler, WakeAt)) for a in decision.actions)


def test_permanent_error_fails_at_once():
    decision = step(step().status, at=1, result=err(0, 1, "invalid order", permanent=True))
    assert decision.status.phase == RunPhase.FAILED
    assert decision.status.tasks[0].attempts == 1
    assert "permanent error" in condition(decision.status).message


def test_interrupted_attempt_after_restart_counts_and_is_retried():
    running = step().status  # task A attempt 1 Running, no result: the operator died
    decision = step(running, at=5)
    task = decision.status.tasks[0]
    assert task.phase == TaskPhase.RETRYING and task.attempts == 1
    assert task.last_error == INTERRUPTED
    assert reasons(decision) == [Reason.TASK_RETRYING]


def test_interrupted_last_attempt_fails_run():
    wf = WorkflowView(
        spec=WorkflowSpec.model_validate(
            {"tasks": [{"name": "A", "handler": "a", "retry": {"maxRetries": 0}}]}
        ),
        generation=1,
    )
    decision = step(step(workflow=wf).status, at=5, workflow=wf)
    assert decision.status.phase == RunPhase.FAILED
    assert condition(decision.status).reason == Reason.TASK_INTERRUPTED


def test_stale_result_is_ignored():
    retrying = step(step().status, at=1, result=err(0, 1)).status
    running = step(retrying, at=3).status  # attempt 2 running
    decision = step(running, at=4, result=ok(0, 1, {"late": True}))
    assert decision.status == running and decision.actions == ()


# ----- the run cannot start -----


def test_unknown_workflow_waits_then_fails():
    waiting = step(workflow=None, at=1)
    assert waiting.status.phase == RunPhase.PENDING
    assert condition(waiting.status).reason == Reason.WAITING_FOR_WORKFLOW
    assert only(waiting.actions, WakeAt).when == T0 + timedelta(seconds=30)
    assert reasons(waiting) == [Reason.WAITING_FOR_WORKFLOW]
    assert reasons(step(waiting.status, workflow=None, at=2)) == []  # no repeated event

    failed = step(waiting.status, workflow=None, at=30)
    assert failed.status.phase == RunPhase.FAILED
    cond = condition(failed.status)
    assert cond.reason == Reason.WORKFLOW_NOT_FOUND and '"wf"' in cond.message


def test_workflow_appearing_while_waiting_starts_run():
    waiting = step(workflow=None, at=1).status
    decision = step(waiting, at=2)
    assert decision.status.phase == RunPhase.RUNNING
    assert only(decision.actions, RunHandler).task_index == 0


def test_unknown_handler_fails_before_anything_runs():
    decision = step(handlers=frozenset({"a", "c"}))
    assert decision.status.phase == RunPhase.FAILED
    cond = condition(decision.status)
    assert cond.reason == Reason.HANDLER_NOT_FOUND
    assert 'task B: no handler registered as "b"' in cond.message
    assert not any(isinstance(a, RunHandler) for a in decision.actions)


@pytest.mark.parametrize("attempt", [1, 2])
def test_retry_delay_formula(attempt):
    status = step().status
    assert status.pinned_tasks[0].retry.delay_after(attempt) == 2 * 3 ** (attempt - 1)


# ----- Job tasks -----

JOB_WORKFLOW = WorkflowView(
    spec=WorkflowSpec.model_validate(
        {
            "tasks": [
                {"name": "A", "handler": "a"},
                {
                    "name": "J",
                    "job": {"image": "registry.example/mailer:1.2"},
                    "retry": {"maxRetries": 1, "backoffSeconds": 5},
                    "timeoutSeconds": 20,
                },
            ]
        }
    ),
    generation=1,
)


def job_step(status=None, *, at=0.0, result=None, alive=False) -> Decision:
    observed = Observations(workflow=JOB_WORKFLOW, handlers=HANDLERS, result=result, attempt_alive=alive)
    return plan(run=view(status), observed=observed, now=T0 + timedelta(seconds=at), options=OPTIONS)


def test_job_task_starts_by_creating_its_job_with_previous_output():
    decision = job_step(job_step().status, at=1, result=ok(0, 1, {"to": "bob"}))
    action = only(decision.actions, CreateJob)
    assert (action.task_index, action.attempt, action.input) == (1, 1, {"to": "bob"})
    assert action.task.timeout_seconds == 20
    assert decision.status.tasks[1].phase == TaskPhase.RUNNING


def test_running_job_that_is_alive_is_left_alone():
    running = job_step(job_step().status, at=1, result=ok(0, 1, {})).status
    decision = job_step(running, at=2, alive=True)
    assert decision.actions == () and decision.status == running


def test_running_job_not_seen_is_created_again_for_the_same_attempt():
    running = job_step(job_step().status, at=1, result=ok(0, 1, {"x": 1})).status
    decision = job_step(running, at=2)  # e.g. after a restart, before the Job's event arrived
    action = only(decision.actions, CreateJob)
    assert (action.attempt, action.input) == (1, {"x": 1})
    assert decision.status == running  # nothing counted as failed or interrupted


def test_job_deadline_exceeded_is_retried_then_fails_with_that_reason():
    running = job_step(job_step().status, at=1, result=ok(0, 1, {})).status
    deadline = AttemptResult(
        task_index=1, attempt=1, error="DeadlineExceeded: too slow", reason="DeadlineExceeded"
    )
    retrying = job_step(running, at=30, result=deadline).status
    assert retrying.tasks[1].phase == TaskPhase.RETRYING
    assert retrying.tasks[1].next_retry_at == T0 + timedelta(seconds=35)
    second = job_step(retrying, at=35)
    assert only(second.actions, CreateJob).attempt == 2
    again = AttemptResult(
        task_index=1, attempt=2, error="DeadlineExceeded: too slow", reason="DeadlineExceeded"
    )
    final = job_step(second.status, at=60, result=again).status
    assert final.phase == RunPhase.FAILED
    assert condition(final).reason == "DeadlineExceeded"


# ----- history -----


def kinds(status: WorkflowRunStatus) -> list[tuple[int, str, str | None, int | None]]:
    return [(r.seq, r.type, r.task, r.attempt) for r in status.pending_history]


def test_activity_log_entries_are_recorded_in_order():
    status = run_to(
        [
            (1, err(0, 1, "flaky")),
            (3, None),
            (4, ok(0, 2, {"n": 2})),
            (5, ok(1, 1, {"n": 3})),
            (6, ok(2, 1, {"n": 4})),
        ]
    )
    assert kinds(status) == [
        (1, "WORKFLOW_STARTED", None, None),
        (2, "TASK_STARTED", "A", 1),
        (3, "TASK_RETRY", "A", 1),
        (4, "TASK_STARTED", "A", 2),
        (5, "TASK_COMPLETED", "A", 2),
        (6, "TASK_STARTED", "B", 1),
        (7, "TASK_COMPLETED", "B", 1),
        (8, "TASK_STARTED", "C", 1),
        (9, "TASK_COMPLETED", "C", 1),
        (10, "WORKFLOW_COMPLETED", None, None),
    ]
    records = status.pending_history
    assert records[0].details["input"] == {"n": 1} and records[0].details["tasks"] == ["A", "B", "C"]
    assert records[2].details["error"] == "flaky" and records[2].details["backoff_seconds"] == 2
    assert records[2].details["retry_count"] == 1
    assert records[5].details["input"] == {"n": 2}  # B's input: A's output
    assert records[9].details["output"] == {"n": 4}
    assert status.history_seq == 10


def test_failures_are_recorded():
    failed = step(step().status, at=1, result=err(0, 1, "nope", permanent=True)).status
    assert [r.type for r in failed.pending_history][-2:] == ["TASK_FAILED", "WORKFLOW_FAILED"]
    assert failed.pending_history[-2].details["permanent"] is True
    not_found = step(workflow=None, at=60).status
    assert [r.type for r in not_found.pending_history] == ["WORKFLOW_FAILED"]
    assert not_found.pending_history[0].details["reason"] == "WorkflowNotFound"


def test_written_entries_are_trimmed_from_status():
    status = step(step().status, at=1, result=err(0, 1)).status  # 3 entries, waiting to retry
    observed = Observations(workflow=WORKFLOW, handlers=HANDLERS, history_written_through=2)
    trimmed = plan(run=view(status), observed=observed, now=T0 + timedelta(seconds=2), options=OPTIONS)
    assert [r.seq for r in trimmed.status.pending_history] == [3]
    retried = step(trimmed.status, at=5)
    assert [r.seq for r in retried.status.pending_history] == [3, 4]  # numbering goes on


def test_run_holds_while_history_backlog_is_full():
    small = EngineOptions(max_pending_history=3)
    observed = Observations(workflow=WORKFLOW, handlers=HANDLERS)
    running = plan(run=view(), observed=observed, now=T0, options=small).status  # 2 entries
    done = Observations(workflow=WORKFLOW, handlers=HANDLERS, result=ok(0, 1, {"n": 2}))
    held = plan(run=view(running), observed=done, now=T0, options=small)
    assert held.status.tasks[0].phase == TaskPhase.SUCCEEDED  # the result is kept
    assert held.status.tasks[1].phase == TaskPhase.PENDING  # but B waits for the store
    assert not any(isinstance(a, RunHandler) for a in held.actions)
    assert condition(held.status).reason == Reason.HISTORY_BACKLOG  # and says so
    assert "3 activity log entries wait for the history store" in condition(held.status).message
    assert reasons(held) == [Reason.TASK_SUCCEEDED, Reason.HISTORY_BACKLOG]
    drained = Observations(workflow=WORKFLOW, handlers=HANDLERS, history_written_through=3)
    resumed = plan(run=view(held.status), observed=drained, now=T0, options=small)
    assert only(resumed.actions, RunHandler).input == {"n": 2}


def test_long_errors_are_clipped():
    decision = step(step().status, at=1, result=err(0, 1, "x" * 5000))
    assert len(decision.status.tasks[0].last_error) == 1024
    assert decision.status.pending_history[-1].details["error"].endswith("…")


def test_run_holds_while_history_backlog_is_too_big():
    small = EngineOptions(max_pending_history_bytes=1000)
    big = {"blob": "x" * 2000}
    observed = Observations(workflow=WORKFLOW, handlers=HANDLERS)
    running = plan(run=view(), observed=observed, now=T0, options=small).status
    done = Observations(workflow=WORKFLOW, handlers=HANDLERS, result=ok(0, 1, big))
    held = plan(run=view(running), observed=done, now=T0, options=small)
    assert held.status.tasks[1].phase == TaskPhase.PENDING
    assert not any(isinstance(a, RunHandler) for a in held.actions)


# ----- bad input, deletion, blocked attempts: rows of given state and observations -----

BIG_SPEC = WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"}, "input": {"blob": "x" * 70_000}})
RUNNING_A = step().status
RETRYING_A = step(RUNNING_A, at=1, result=err(0, 1)).status
RUNNING_J = job_step(job_step().status, at=1, result=ok(0, 1, {})).status


@pytest.mark.parametrize(
    ("given", "spec", "observed", "phase", "reason", "actions", "entries"),
    [
        pytest.param(
            None, BIG_SPEC, {}, RunPhase.FAILED, Reason.INPUT_TOO_LARGE, [PostEvent], ["WORKFLOW_FAILED"],
            id="input over 64 KiB fails before anything runs",
        ),
        pytest.param(
            None, BIG_SPEC, {"workflow": None}, RunPhase.FAILED, Reason.INPUT_TOO_LARGE, [PostEvent],
            ["WORKFLOW_FAILED"], id="even before its Workflow exists",
        ),
        pytest.param(
            None, SPEC, {"deleted": True}, RunPhase.CANCELLED, Reason.RUN_DELETED, [], ["WORKFLOW_CANCELLED"],
            id="deleted before it started",
        ),
        pytest.param(
            RUNNING_A, SPEC, {"deleted": True}, RunPhase.CANCELLED, Reason.RUN_DELETED, [],
            ["TASK_CANCELLED", "WORKFLOW_CANCELLED"], id="deleted while an attempt runs",
        ),
        pytest.param(
            RETRYING_A, SPEC, {"deleted": True}, RunPhase.CANCELLED, Reason.RUN_DELETED, [],
            ["WORKFLOW_CANCELLED"], id="deleted during a backoff: no attempt is open",
        ),
        pytest.param(
            RUNNING_J, SPEC, {"workflow": JOB_WORKFLOW, "attempt_blocked": "a Job named x exists"},
            RunPhase.RUNNING, Reason.ATTEMPT_BLOCKED, [PostEvent, WakeAt], [],
            id="a foreign Job blocks the attempt: said once, looked at again later",
        ),
    ],
)  # fmt: skip
def test_bad_input_deletion_and_blocks(given, spec, observed, phase, reason, actions, entries):
    run = RunView(spec=spec, status=given or WorkflowRunStatus(), generation=1, created_at=T0)
    seen = Observations(**{"workflow": WORKFLOW, "handlers": HANDLERS, **observed})
    decision = plan(run=run, observed=seen, now=T0 + timedelta(seconds=5), options=OPTIONS)
    assert decision.status.phase == phase
    assert condition(decision.status).reason == reason
    assert [type(a) for a in decision.actions] == actions
    before = given.history_seq if given else 0
    assert [r.type for r in decision.status.pending_history if r.seq > before] == entries


def test_deleted_run_closes_its_running_attempt():
    run = view(RUNNING_A)
    observed = Observations(workflow=WORKFLOW, handlers=HANDLERS, deleted=True)
    cancelled = plan(run=run, observed=observed, now=T0 + timedelta(seconds=2), options=OPTIONS).status
    assert [t.phase for t in cancelled.tasks] == [TaskPhase.CANCELLED, TaskPhase.PENDING, TaskPhase.PENDING]
    record = cancelled.pending_history[-2]
    assert (record.task, record.attempt, record.details) == ("A", 1, {"reason": "RunDeleted"})
    assert cancelled.finished and cancelled.current_task is None


def test_blocked_attempt_is_told_once_and_clears_when_its_job_runs():
    blocked = {"workflow": JOB_WORKFLOW, "handlers": HANDLERS, "attempt_blocked": "a Job named x exists"}
    first = plan(run=view(RUNNING_J), observed=Observations(**blocked), now=T0, options=OPTIONS)
    assert only(first.actions, WakeAt).when == T0 + OPTIONS.blocked_recheck
    assert "Task J attempt 1 cannot start: a Job named x exists" in condition(first.status).message
    again = plan(run=view(first.status), observed=Observations(**blocked), now=T0, options=OPTIONS)
    assert again.status == first.status and [type(a) for a in again.actions] == [WakeAt]  # no 2nd Event
    alive = Observations(workflow=JOB_WORKFLOW, handlers=HANDLERS, attempt_alive=True)
    running = plan(run=view(first.status), observed=alive, now=T0, options=OPTIONS)
    assert condition(running.status).reason == Reason.TASK_STARTED and running.actions == ()


def test_unrecordable_run_fails_keeping_only_small_parts():
    decision = fail_unrecordable(RUNNING_A, reason=Reason.RUN_TOO_LARGE, message="too big", now=T0)
    failed = decision.status
    assert failed.phase == RunPhase.FAILED and failed.pinned_tasks is None and failed.output is None
    assert failed.tasks == RUNNING_A.tasks
    assert [r.seq for r in failed.pending_history] == [*(r.seq for r in RUNNING_A.pending_history), 3]
    assert failed.pending_history[-1].details == {"reason": "RunTooLarge", "message": "too big"}
    assert reasons(decision) == [Reason.RUN_TOO_LARGE]


def test_one_task_workflow_speaks_in_the_singular():
    one = WorkflowView(
        spec=WorkflowSpec.model_validate({"tasks": [{"name": "A", "handler": "a"}]}), generation=1
    )
    started = step(workflow=one)
    assert "(generation 1, 1 task)" in only(started.actions, PostEvent).message
    done = plan(
        run=view(started.status),
        observed=Observations(workflow=one, handlers=HANDLERS, result=ok(0, 1, {})),
        now=T0,
        options=OPTIONS,
    )
    assert condition(done.status).message == "The task succeeded"
