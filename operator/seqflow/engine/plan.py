"""The run state machine: `plan()` turns a run, what was observed and the time into a decision.

Pure: no clock, no I/O. The same inputs always give the same new status and actions, which is
what the table tests in tests/unit/test_plan.py rely on.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from seqflow.api.models import (
    Condition,
    ConditionStatus,
    JsonObject,
    PinnedTask,
    Reason,
    RetryPolicy,
    RunPhase,
    TaskPhase,
    TaskStatus,
    WorkflowRunStatus,
)
from seqflow.engine.types import (
    Action,
    AttemptResult,
    CreateJob,
    Decision,
    EngineOptions,
    EventType,
    Observations,
    PostEvent,
    RunHandler,
    RunView,
    WakeAt,
    WorkflowView,
)

CONDITION = "Succeeded"
INTERRUPTED = "attempt interrupted: the operator stopped while it was running"


def plan(*, run: RunView, observed: Observations, now: datetime, options: EngineOptions) -> Decision:
    """Decide the next status of `run` and what to do about it."""
    status = run.status.model_copy(update={"observed_generation": run.generation})
    if status.finished:
        return Decision(status)
    if status.pinned_tasks is None:
        return _start(run=run, status=status, observed=observed, now=now, options=options)
    return _advance(run=run, status=status, observed=observed, now=now)


# ----- starting -----


def _start(
    *,
    run: RunView,
    status: WorkflowRunStatus,
    observed: Observations,
    now: datetime,
    options: EngineOptions,
) -> Decision:
    name = run.spec.workflow_ref.name
    if observed.workflow is None:
        deadline = run.created_at + options.workflow_wait
        if now < deadline:
            return _wait_for_workflow(status=status, workflow=name, until=deadline, now=now)
        return _fail_run(
            status,
            reason=Reason.WORKFLOW_NOT_FOUND,
            message=f'Workflow "{name}" not found in the run\'s namespace',
            now=now,
        )

    tasks = pin_tasks(observed.workflow, options=options)
    problem = _unrunnable(tasks, handlers=observed.handlers)
    if problem:
        return _fail_run(status, reason=Reason.HANDLER_NOT_FOUND, message=problem, now=now)

    started = status.model_copy(
        update={
            "phase": RunPhase.RUNNING,
            "workflow_generation": observed.workflow.generation,
            "pinned_tasks": tasks,
            "tasks": [TaskStatus(name=t.name) for t in tasks],
            "started_at": now,
            "progress": f"0/{len(tasks)}",
        }
    )
    event = PostEvent(
        EventType.NORMAL,
        Reason.STARTED,
        f'Started Workflow "{name}" (generation {observed.workflow.generation}, '
        f"{len(tasks)} tasks)",
    )
    return _start_attempt(status=started, index=0, input=run.spec.input, now=now, events=[event])


def pin_tasks(workflow: WorkflowView, *, options: EngineOptions) -> list[PinnedTask]:
    """The workflow's tasks with workflow and operator defaults resolved."""
    defaults = workflow.spec.defaults
    base_retry = RetryPolicy().merged(defaults.retry if defaults else None)
    base_timeout = (defaults.timeout_seconds if defaults else None) or options.default_timeout_seconds
    return [
        PinnedTask(
            name=task.name,
            handler=task.handler,
            job=task.job,
            retry=base_retry.merged(task.retry),
            timeout_seconds=task.timeout_seconds or base_timeout,
        )
        for task in workflow.spec.tasks
    ]


def _unrunnable(tasks: list[PinnedTask], *, handlers: frozenset[str]) -> str | None:
    problems = [
        f'task {task.name}: no handler registered as "{task.handler}"'
        for task in tasks
        if task.handler is not None and task.handler not in handlers
    ]
    if not problems:
        return None
    known = ", ".join(sorted(handlers)) or "none"
    return "; ".join(problems) + f" (registered handlers: {known})"


def _wait_for_workflow(
    *, status: WorkflowRunStatus, workflow: str, until: datetime, now: datetime
) -> Decision:
    message = (
        f'Workflow "{workflow}" not found; waiting until '
        f'{until.isoformat(timespec="seconds")} for it to appear'
    )
    waiting = status.model_copy(
        update={
            "phase": RunPhase.PENDING,
            "conditions": _set_condition(
                status.conditions, ConditionStatus.UNKNOWN, Reason.WAITING_FOR_WORKFLOW, message, now
            ),
        }
    )
    actions: list[Action] = [WakeAt(until)]
    if status.phase is None:
        actions.insert(0, PostEvent(EventType.WARNING, Reason.WAITING_FOR_WORKFLOW, message))
    return Decision(waiting, tuple(actions))


# ----- advancing -----


def _advance(
    *, run: RunView, status: WorkflowRunStatus, observed: Observations, now: datetime
) -> Decision:
    assert status.pinned_tasks is not None
    index = status.current_index()
    assert index is not None, "a started run that has not finished has a current task"
    task = status.tasks[index]
    result = observed.result
    if task.phase == TaskPhase.RUNNING:
        if result is None and status.pinned_tasks[index].job is not None:
            if observed.attempt_alive:
                return Decision(status)  # the Job is running; its events will wake us
            # Not seen (yet): create it again; if it exists, that is a no-op that finds it.
            job = _execute(status, index, task.attempts, _input_of(run, status, index))
            return Decision(status, (job,))
        if result is None:
            # Nobody is executing this attempt any more: the operator stopped while it ran.
            result = AttemptResult(task_index=index, attempt=task.attempts, error=INTERRUPTED)
        elif (result.task_index, result.attempt) != (index, task.attempts):
            return Decision(status)  # a stale result of an attempt already accounted for
        if result.succeeded:
            return _task_succeeded(status=status, index=index, output=result.output or {}, now=now)
        return _attempt_failed(status=status, index=index, result=result, now=now)

    if task.phase == TaskPhase.RETRYING and task.next_retry_at and now < task.next_retry_at:
        return Decision(status, (WakeAt(task.next_retry_at),))
    return _start_attempt(status=status, index=index, input=_input_of(run, status, index), now=now)


def _input_of(run: RunView, status: WorkflowRunStatus, index: int) -> JsonObject:
    return run.spec.input if index == 0 else (status.output or {})


def _start_attempt(
    *,
    status: WorkflowRunStatus,
    index: int,
    input: JsonObject,
    now: datetime,
    events: list[PostEvent] | None = None,
) -> Decision:
    assert status.pinned_tasks is not None
    pinned = status.pinned_tasks[index]
    current = status.tasks[index]
    attempt = current.attempts + 1
    task = current.model_copy(
        update={
            "phase": TaskPhase.RUNNING,
            "attempts": attempt,
            "started_at": current.started_at or now,
            "next_retry_at": None,
        }
    )
    message = f"Task {pinned.name} attempt {attempt} started"
    running = _with_task(status, index, task).model_copy(
        update={
            "current_task": pinned.name,
            "conditions": _set_condition(
                status.conditions, ConditionStatus.UNKNOWN, Reason.TASK_STARTED, message, now
            ),
        }
    )
    # No Event for a start: the status shows it, and the outcome's Event names the attempt.
    return Decision(running, (*(events or []), _execute(status, index, attempt, input)))


def _execute(status: WorkflowRunStatus, index: int, attempt: int, input: JsonObject) -> Action:
    assert status.pinned_tasks is not None
    task = status.pinned_tasks[index]
    kind = CreateJob if task.job is not None else RunHandler
    return kind(task_index=index, task=task, attempt=attempt, input=input)


def _task_succeeded(
    *, status: WorkflowRunStatus, index: int, output: JsonObject, now: datetime
) -> Decision:
    task = status.tasks[index].model_copy(
        update={"phase": TaskPhase.SUCCEEDED, "finished_at": now, "last_error": None}
    )
    done = _with_task(status, index, task).model_copy(update={"output": output})
    event = PostEvent(
        EventType.NORMAL,
        Reason.TASK_SUCCEEDED,
        f"Task {task.name} succeeded on attempt {task.attempts}",
    )
    if index + 1 < len(done.tasks):
        return _start_attempt(status=done, index=index + 1, input=output, now=now, events=[event])

    message = f"All {len(done.tasks)} tasks succeeded"
    finished = done.model_copy(
        update={
            "phase": RunPhase.SUCCEEDED,
            "current_task": None,
            "finished_at": now,
            "conditions": _set_condition(
                done.conditions, ConditionStatus.TRUE, Reason.SUCCEEDED, message, now
            ),
        }
    )
    return Decision(finished, (event, PostEvent(EventType.NORMAL, Reason.SUCCEEDED, message)))


def _attempt_failed(
    *, status: WorkflowRunStatus, index: int, result: AttemptResult, now: datetime
) -> Decision:
    assert status.pinned_tasks is not None and result.error is not None
    policy = status.pinned_tasks[index].retry
    task = status.tasks[index]
    attempt = task.attempts
    reason = result.reason or (
        Reason.TASK_INTERRUPTED if result.error == INTERRUPTED else Reason.TASK_FAILED
    )

    if result.permanent or attempt > policy.max_retries:
        why = "permanent error" if result.permanent else f"{attempt} attempts"
        message = f"Task {task.name} failed ({why}): {result.error}"
        failed_task = task.model_copy(
            update={"phase": TaskPhase.FAILED, "finished_at": now, "last_error": result.error}
        )
        failed = _with_task(status, index, failed_task)
        return _fail_run(failed, reason=reason, message=message, now=now)

    delay = policy.delay_after(attempt)
    retry_at = now + timedelta(seconds=delay)
    message = (
        f"Task {task.name} attempt {attempt} failed: {result.error}; "
        f"retry {attempt} of {policy.max_retries} in {delay:g} s"
    )
    retrying_task = task.model_copy(
        update={"phase": TaskPhase.RETRYING, "next_retry_at": retry_at, "last_error": result.error}
    )
    retrying = _with_task(status, index, retrying_task).model_copy(
        update={
            "conditions": _set_condition(
                status.conditions, ConditionStatus.UNKNOWN, Reason.TASK_RETRYING, message, now
            )
        }
    )
    return Decision(
        retrying,
        (PostEvent(EventType.WARNING, Reason.TASK_RETRYING, message), WakeAt(retry_at)),
    )


def _fail_run(status: WorkflowRunStatus, *, reason: str, message: str, now: datetime) -> Decision:
    failed = status.model_copy(
        update={
            "phase": RunPhase.FAILED,
            "finished_at": now,
            "conditions": _set_condition(status.conditions, ConditionStatus.FALSE, reason, message, now),
        }
    )
    return Decision(failed, (PostEvent(EventType.WARNING, reason, message),))


# ----- small helpers -----


def _with_task(status: WorkflowRunStatus, index: int, task: TaskStatus) -> WorkflowRunStatus:
    tasks = [*status.tasks[:index], task, *status.tasks[index + 1 :]]
    succeeded = sum(t.phase == TaskPhase.SUCCEEDED for t in tasks)
    return status.model_copy(
        update={
            "tasks": tasks,
            "progress": f"{succeeded}/{len(tasks)}",
            "retries": sum(max(t.attempts - 1, 0) for t in tasks),
        }
    )


def _set_condition(
    conditions: list[Condition],
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
) -> list[Condition]:
    previous = next((c for c in conditions if c.type == CONDITION), None)
    changed_at = previous.last_transition_time if previous and previous.status == status else now
    condition = Condition(
        type=CONDITION, status=status, reason=reason, message=message, last_transition_time=changed_at
    )
    return [*(c for c in conditions if c.type != CONDITION), condition]
