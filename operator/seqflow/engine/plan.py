"""The run state machine: `plan()` turns a run, what was observed and the time into a decision.

Pure: no clock, no I/O. The same inputs always give the same new status and actions, which is
what the table tests in tests/unit/test_plan.py rely on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

from seqflow.api.models import (
    Condition,
    ConditionStatus,
    HistoryEvent,
    HistoryRecord,
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
MAX_ERROR = 1024  # characters of an error kept in the status, the Events and the history
INTERRUPTED = "attempt interrupted: the operator stopped while it was running"


def plan(*, run: RunView, observed: Observations, now: datetime, options: EngineOptions) -> Decision:
    """Decide the next status of `run` and what to do about it."""
    status = run.status.model_copy(
        update={
            "observed_generation": run.generation,
            "pending_history": [
                r for r in run.status.pending_history if r.seq > observed.history_written_through
            ],
        }
    )
    if status.finished:
        return Decision(status)
    if observed.deleted:
        return _cancel_run(
            status, reason=Reason.RUN_DELETED, message="The run was deleted before it finished", now=now
        )
    if status.pinned_tasks is None:
        return _start(run=run, status=status, observed=observed, now=now, options=options)
    return _advance(run=run, status=status, observed=observed, now=now, options=options)


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
    size = json_size(run.spec.input)
    if size > options.max_input_bytes:
        message = (
            f"The input is {size} bytes of JSON, more than the {options.max_input_bytes} a run takes: "
            "keep large data in storage and pass a reference to it"
        )
        return _fail_run(status, reason=Reason.INPUT_TOO_LARGE, message=message, now=now)
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

    started = _record(
        status.model_copy(
            update={
                "phase": RunPhase.RUNNING,
                "workflow_generation": observed.workflow.generation,
                "pinned_tasks": tasks,
                "tasks": [TaskStatus(name=t.name) for t in tasks],
                "started_at": now,
                "progress": f"0/{len(tasks)}",
            }
        ),
        HistoryEvent.WORKFLOW_STARTED,
        now,
        details={
            "workflow": name,
            "generation": observed.workflow.generation,
            "tasks": [t.name for t in tasks],
            "input": run.spec.input,
        },
    )
    event = PostEvent(
        EventType.NORMAL,
        Reason.STARTED,
        f'Started Workflow "{name}" '
        f"(generation {observed.workflow.generation}, {_count(len(tasks), 'task')})",
    )
    return _start_attempt(
        status=started, index=0, input=run.spec.input, now=now, options=options, events=[event]
    )


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
        f"{until.isoformat(timespec='seconds')} for it to appear"
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
    *,
    run: RunView,
    status: WorkflowRunStatus,
    observed: Observations,
    now: datetime,
    options: EngineOptions,
) -> Decision:
    assert status.pinned_tasks is not None
    index = status.current_index()
    assert index is not None, "a started run that has not finished has a current task"
    task = status.tasks[index]
    result = observed.result
    if task.phase == TaskPhase.RUNNING:
        if result is None and status.pinned_tasks[index].job is not None:
            if observed.attempt_alive:  # the Job is running; its events will wake us
                return Decision(_started(status, task_name=task.name, attempt=task.attempts, now=now))
            if observed.attempt_blocked:
                message = f"Task {task.name} attempt {task.attempts} cannot start: {observed.attempt_blocked}"
                return _hold(
                    status,
                    reason=Reason.ATTEMPT_BLOCKED,
                    message=message,
                    now=now,
                    until=now + options.blocked_recheck,
                )
            # Not seen (yet): create it again; if it exists, that is a no-op that finds it.
            job = _execute(status, index, task.attempts, _input_of(run, status, index))
            return Decision(status, (job,))
        if result is None:
            # Nobody is executing this attempt any more: the operator stopped while it ran.
            result = AttemptResult(task_index=index, attempt=task.attempts, error=INTERRUPTED)
        elif (result.task_index, result.attempt) != (index, task.attempts):
            return Decision(status)  # a stale result of an attempt already accounted for
        if result.succeeded:
            output = result.output or {}
            return _task_succeeded(status=status, index=index, output=output, now=now, options=options)
        return _attempt_failed(status=status, index=index, result=result, now=now)

    if task.phase == TaskPhase.RETRYING and task.next_retry_at and now < task.next_retry_at:
        return Decision(status, (WakeAt(task.next_retry_at),))
    return _start_attempt(
        status=status, index=index, input=_input_of(run, status, index), now=now, options=options
    )


def _input_of(run: RunView, status: WorkflowRunStatus, index: int) -> JsonObject:
    return run.spec.input if index == 0 else (status.output or {})


def _start_attempt(
    *,
    status: WorkflowRunStatus,
    index: int,
    input: JsonObject,
    now: datetime,
    options: EngineOptions,
    events: list[PostEvent] | None = None,
) -> Decision:
    assert status.pinned_tasks is not None
    if _backlog_full(status, options):
        # The history store is behind (down?): hold here rather than lose entries. Writing
        # them trims the list, and that status change brings the run back.
        message = (
            f"Holding before task {status.pinned_tasks[index].name}: "
            f"{_count(len(status.pending_history), 'activity log entry', 'activity log entries')} "
            "wait for the history store"
        )
        return _hold(status, reason=Reason.HISTORY_BACKLOG, message=message, now=now, events=events)
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
    started = _record(
        status,
        HistoryEvent.TASK_STARTED,
        now,
        index=index,
        attempt=attempt,
        details={"input": input, "executor": "job" if pinned.job is not None else "handler"},
    )
    running = _with_task(started, index, task).model_copy(update={"current_task": pinned.name})
    running = _started(running, task_name=pinned.name, attempt=attempt, now=now)
    # No Event for a start: the status shows it, and the outcome's Event names the attempt.
    return Decision(running, (*(events or []), _execute(status, index, attempt, input)))


def _started(status: WorkflowRunStatus, *, task_name: str, attempt: int, now: datetime) -> WorkflowRunStatus:
    """The condition of a run whose attempt is under way (after a hold, too)."""
    message = f"Task {task_name} attempt {attempt} started"
    conditions = _set_condition(status.conditions, ConditionStatus.UNKNOWN, Reason.TASK_STARTED, message, now)
    return status.model_copy(update={"conditions": conditions})


def _execute(status: WorkflowRunStatus, index: int, attempt: int, input: JsonObject) -> Action:
    assert status.pinned_tasks is not None
    task = status.pinned_tasks[index]
    kind = CreateJob if task.job is not None else RunHandler
    return kind(task_index=index, task=task, attempt=attempt, input=input)


def _task_succeeded(
    *,
    status: WorkflowRunStatus,
    index: int,
    output: JsonObject,
    now: datetime,
    options: EngineOptions,
) -> Decision:
    task = status.tasks[index].model_copy(
        update={"phase": TaskPhase.SUCCEEDED, "finished_at": now, "last_error": None}
    )
    recorded = _record(
        status,
        HistoryEvent.TASK_COMPLETED,
        now,
        index=index,
        attempt=task.attempts,
        details={"output": output},
    )
    done = _with_task(recorded, index, task).model_copy(update={"output": output})
    event = PostEvent(
        EventType.NORMAL,
        Reason.TASK_SUCCEEDED,
        f"Task {task.name} succeeded on attempt {task.attempts}",
    )
    if index + 1 < len(done.tasks):
        return _start_attempt(
            status=done, index=index + 1, input=output, now=now, options=options, events=[event]
        )

    message = f"All {len(done.tasks)} tasks succeeded" if len(done.tasks) > 1 else "The task succeeded"
    done = _record(done, HistoryEvent.WORKFLOW_COMPLETED, now, details={"output": output})
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
    result = replace(result, error=_clip(result.error))
    policy = status.pinned_tasks[index].retry
    task = status.tasks[index]
    attempt = task.attempts
    reason = result.reason or (Reason.TASK_INTERRUPTED if result.error == INTERRUPTED else Reason.TASK_FAILED)

    if result.permanent or attempt > policy.max_retries:
        why = "permanent error" if result.permanent else f"{attempt} attempts"
        message = f"Task {task.name} failed ({why}): {result.error}"
        failed_task = task.model_copy(
            update={"phase": TaskPhase.FAILED, "finished_at": now, "last_error": result.error}
        )
        recorded = _record(
            status,
            HistoryEvent.TASK_FAILED,
            now,
            index=index,
            attempt=attempt,
            details={
                "error": result.error,
                "reason": reason,
                "permanent": result.permanent,
                "attempts": attempt,
            },
        )
        return _fail_run(_with_task(recorded, index, failed_task), reason=reason, message=message, now=now)

    delay = policy.delay_after(attempt)
    retry_at = now + timedelta(seconds=delay)
    message = (
        f"Task {task.name} attempt {attempt} failed: {result.error}; "
        f"retry {attempt} of {policy.max_retries} in {delay:g} s"
    )
    retrying_task = task.model_copy(
        update={"phase": TaskPhase.RETRYING, "next_retry_at": retry_at, "last_error": result.error}
    )
    recorded = _record(
        status,
        HistoryEvent.TASK_RETRY,
        now,
        index=index,
        attempt=attempt,
        details={
            "error": result.error,
            "reason": reason,
            "retry_count": attempt,
            "max_retries": policy.max_retries,
            "backoff_seconds": delay,
            "next_retry_at": retry_at.isoformat(),
        },
    )
    retrying = _with_task(recorded, index, retrying_task).model_copy(
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
    status = _record(
        status, HistoryEvent.WORKFLOW_FAILED, now, details={"reason": reason, "message": message}
    )
    failed = status.model_copy(
        update={
            "phase": RunPhase.FAILED,
            "finished_at": now,
            "conditions": _set_condition(status.conditions, ConditionStatus.FALSE, reason, message, now),
        }
    )
    return Decision(failed, (PostEvent(EventType.WARNING, reason, message),))


def fail_unrecordable(status: WorkflowRunStatus, *, reason: str, message: str, now: datetime) -> Decision:
    """Fail a run whose status cannot be written as planned (too large) or read at all: keep
    only the small parts (tasks, counters, the history not yet in the store) and say why."""
    kept = WorkflowRunStatus(
        started_at=status.started_at,
        tasks=status.tasks,
        progress=status.progress,
        retries=status.retries,
        conditions=status.conditions,
        observed_generation=status.observed_generation,
        history_seq=status.history_seq,
        pending_history=status.pending_history,
    )
    return _fail_run(kept, reason=reason, message=message, now=now)


def _cancel_run(status: WorkflowRunStatus, *, reason: str, message: str, now: datetime) -> Decision:
    """End the run Cancelled: its running attempt, if any, is recorded as cancelled."""
    index = status.current_index() if status.pinned_tasks is not None else None
    if index is not None and status.tasks[index].phase in (TaskPhase.RUNNING, TaskPhase.RETRYING):
        task = status.tasks[index]
        if task.phase == TaskPhase.RUNNING:
            status = _record(
                status,
                HistoryEvent.TASK_CANCELLED,
                now,
                index=index,
                attempt=task.attempts,
                details={"reason": reason},
            )
        cancelled_task = task.model_copy(
            update={"phase": TaskPhase.CANCELLED, "finished_at": now, "next_retry_at": None}
        )
        status = _with_task(status, index, cancelled_task)
    status = _record(
        status, HistoryEvent.WORKFLOW_CANCELLED, now, details={"reason": reason, "message": message}
    )
    cancelled = status.model_copy(
        update={
            "phase": RunPhase.CANCELLED,
            "current_task": None,
            "finished_at": now,
            "conditions": _set_condition(status.conditions, ConditionStatus.FALSE, reason, message, now),
        }
    )
    return Decision(cancelled)


def _hold(
    status: WorkflowRunStatus,
    *,
    reason: str,
    message: str,
    now: datetime,
    until: datetime | None = None,
    events: list[PostEvent] | None = None,
) -> Decision:
    """Wait for something outside the run (the condition says what), looking again `until`;
    a Warning Event tells it the first time."""
    previous = next((c for c in status.conditions if c.type == CONDITION), None)
    held = status.model_copy(
        update={
            "conditions": _set_condition(status.conditions, ConditionStatus.UNKNOWN, reason, message, now)
        }
    )
    actions: list[Action] = list(events or ())
    if previous is None or previous.reason != reason:
        actions.append(PostEvent(EventType.WARNING, reason, message))
    if until is not None:
        actions.append(WakeAt(until))
    return Decision(held, tuple(actions))


# ----- small helpers -----


def json_size(value: JsonObject) -> int:
    """Bytes of `value` as compact JSON (as it is stored and passed on)."""
    return len(json.dumps(value, separators=(",", ":")).encode())


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def _backlog_full(status: WorkflowRunStatus, options: EngineOptions) -> bool:
    """Whether the entries waiting for the history store fill the room the status has for them
    (by count, and by size: the whole object must stay well below etcd's limit)."""
    pending = status.pending_history
    if len(pending) >= options.max_pending_history:
        return True
    size = sum(json_size(r.details) for r in pending)
    return size >= options.max_pending_history_bytes


def _record(
    status: WorkflowRunStatus,
    type: HistoryEvent,
    now: datetime,
    *,
    index: int | None = None,
    attempt: int | None = None,
    details: JsonObject,
) -> WorkflowRunStatus:
    """Append an activity log entry to the status, to be written to the history store."""
    seq = status.history_seq + 1
    record = HistoryRecord(
        seq=seq,
        type=type,
        at=now,
        task=status.tasks[index].name if index is not None else None,
        task_index=index,
        attempt=attempt,
        details=details,
    )
    return status.model_copy(
        update={"history_seq": seq, "pending_history": [*status.pending_history, record]}
    )


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
