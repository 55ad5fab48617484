"""The run state machine: `plan()` turns a run, what was observed and the time into a decision.

Three passes over a draft of the new status: `_fold` takes in what happened (attempt results,
Jobs, child runs, the user's intent in the spec: cancel, retry, deletion), `_ready_steps` picks the
steps that may start now (while compensating, `_next_compensation` the next compensation),
and `_start_attempt` starts them; the run's phase is then derived from its nodes
(`derive_phase`) and its end, if it ended, recorded. The passes see the status whole (its nodes
and task list folded into the store put back in place, `compaction.expanded`), and the decision
carries it folded again (`compaction.compacted`). Pure: no clock, no I/O; the same inputs
always give the same status and actions, which the table tests in tests/unit/test_plan.py rely on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import assert_never

from seqflow.api.models import (
    CLUSTER_WORKFLOW,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    DEFAULT_PARALLEL_ITEMS,
    FINISHED,
    MAX_ITEMS,
    Artifacts,
    CompensateSpec,
    Condition,
    ConditionStatus,
    Ending,
    FailureCause,
    FanOut,
    FinallyTask,
    ForEachSpec,
    ForEachStep,
    HistoryEvent,
    HistoryRecord,
    JsonObject,
    MemberSpec,
    NodePhase,
    NodeStatus,
    NodeType,
    PinnedForEach,
    PinnedMember,
    PinnedTask,
    Reason,
    RetryPolicy,
    RunPhase,
    StoredArtifact,
    TaskSpec,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowSpec,
    WorkflowStatus,
    shortened_name,
)
from seqflow.api.values import REF_SHAPE, Encoded, encode, ref_of, size_of, stored
from seqflow.engine.compaction import FINAL_NODE, Folded, compacted, expanded
from seqflow.engine.expressions import ConditionError, compiled, evaluated, holds
from seqflow.engine.schemas import schema_problem, value_problems
from seqflow.engine.templates import expressions, has_templates, render, rendered, templated
from seqflow.engine.types import (
    Action,
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
    EventType,
    InputRead,
    Observations,
    PostEvent,
    RetrySource,
    RunHandler,
    RunView,
    ValueMissing,
    WakeAt,
    WorkflowView,
)

CONDITION = "Succeeded"  # the run's summary, Tekton style
READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"  # kstatus
MAX_ERROR = 1024  # characters of an error kept in the status, the Events and the history
INTERRUPTED = "attempt interrupted: the operator stopped while it was running"
ACTIVE = (NodePhase.RUNNING, NodePhase.WAITING, NodePhase.RETRYING)
IN_PROCESS = (NodeType.HANDLER, NodeType.HTTP)  # attempts the operator executes itself
DONE = (NodePhase.SUCCEEDED, NodePhase.SKIPPED, NodePhase.CACHED)
COMPENSATION = ":compensate"  # a compensation's node id: its step's name and this
# Runs that failed like this will fail the same way again: no retry (of a parent's step) helps.
FAILED_FOR_GOOD = (
    Reason.WORKFLOW_NOT_FOUND,
    Reason.HANDLER_NOT_FOUND,
    Reason.INVALID_WORKFLOW,
    Reason.INPUT_INVALID,
    Reason.INPUT_TOO_LARGE,
    Reason.DEPTH_EXCEEDED,
    Reason.CONDITION_FAILED,
    Reason.TOO_MANY_RUNS,
    Reason.RUN_TOO_LARGE,
    Reason.STATUS_INVALID,
    Reason.INTERNAL_ERROR,
    Reason.ITEMS_INVALID,
)
# `steps.Name` or `steps["Name"]` in a `when` expression: the outputs it reads
STEP_REFERENCE = re.compile(r"""\bsteps\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*["']([^"']+)["']\s*\])""")


@dataclass
class _Draft:
    """The status being planned and what to do about it (mutable only inside `plan`)."""

    run: RunView
    status: WorkflowRunStatus
    now: datetime
    options: EngineOptions
    actions: list[Action] = field(default_factory=list)
    end: tuple[str, str] | None = None  # why the run fails or is cancelled: (reason, message)
    unseen: list[str] = field(default_factory=list)  # running nodes whose Job or child run is not seen
    known: Mapping[str, JsonObject] = field(default_factory=dict)  # stored values observed, by digest
    folded: Folded = field(default_factory=Folded)  # what of the status was read from the store
    _indexed: tuple[list[NodeStatus], dict[str, int]] | None = None
    values: dict[str, Encoded] = field(default_factory=dict)  # new values to store, by digest
    _run_input: JsonObject | None = None
    _fan_outs: frozenset[str] | None = None  # the forEach steps, by name
    _own_nodes: list[NodeStatus] | None = None
    cached: Mapping[str, JsonObject | None] = field(default_factory=dict)  # cache lookups observed

    def keep(self, value: JsonObject) -> JsonObject:
        """What stands for `value` in the status: itself, or once it is larger than the inline
        threshold, its reference (the value to be stored before the status is written)."""
        kept, encoded = stored(value, inline_bytes=self.options.inline_value_bytes)
        if encoded is not None:
            self.values[kept["ref"]] = encoded
        return kept

    def resolve(self, value: JsonObject) -> JsonObject:
        """The value itself, read through its reference when it is one (`ValueMissing` when
        the value was neither observed nor made in this plan)."""
        ref = ref_of(value)
        if ref is None:
            return value
        new = self.values.get(ref.digest)
        known = new.value if new is not None else self.known.get(ref.digest)
        if known is None:
            raise ValueMissing(ref)
        return known

    def run_input(self) -> JsonObject:
        """The run's input as the status keeps it (the spec's inputRef, its input kept, or the
        one read from its inputFrom or made from the run it retries, at start)."""
        spec = self.run.spec
        if spec.input_from is not None or spec.retry_from is not None:
            return self.status.input or {}
        if self._run_input is None:
            self._run_input = spec.input_ref.to_wire() if spec.input_ref else self.keep(spec.input)
        return self._run_input

    def record(
        self, type: HistoryEvent, *, node: str | None = None, attempt: int | None = None, details: JsonObject
    ) -> None:
        """Append an activity log entry, to be written to the history store."""
        seq = self.status.history_seq + 1
        # (no task list: a run failed outside the plan, whose tasks are in the store)
        index = self.step_index(node) if node is not None and self.steps else None
        entry = HistoryRecord(
            seq=seq, type=type, at=self.now, task=node, task_index=index, attempt=attempt, details=details
        )
        self.update(history_seq=seq, pending_history=[*self.status.pending_history, entry])

    def update(self, **fields: object) -> None:
        self.status = self.status.model_copy(update=fields)

    def node(self, id: str) -> NodeStatus | None:
        position = self._positions().get(id)
        return None if position is None else self.status.nodes[position]

    def put(self, node: NodeStatus) -> None:
        """Set a node: in its place, or after the others when it is new. (The node list is the
        draft's own from its first change on, changed in place: a run may have thousands.)"""
        positions = self._positions()
        if self._own_nodes is not self.status.nodes:
            self.update(nodes=list(self.status.nodes))
            self._own_nodes = self.status.nodes
            self._indexed = (self.status.nodes, positions)
        nodes = self.status.nodes
        position = positions.setdefault(node.id, len(nodes))
        if position == len(nodes):
            nodes.append(node)
        else:
            nodes[position] = node

    def _positions(self) -> dict[str, int]:
        """The nodes' positions by id (a run may have thousands)."""
        if self._indexed is None or self._indexed[0] is not self.status.nodes:
            self._indexed = (self.status.nodes, {n.id: i for i, n in enumerate(self.status.nodes)})
        return self._indexed[1]

    def event(self, type: EventType, reason: str, message: str) -> None:
        self.actions.append(PostEvent(type, reason, message))

    def condition(self, status: ConditionStatus, reason: str, message: str) -> None:
        self.update(conditions=set_condition(self.status.conditions, status, reason, message, self.now))

    @property
    def steps(self) -> list[PinnedTask]:
        """The pinned tasks, finally tasks last."""
        return self.status.pinned_tasks or []

    @property
    def main(self) -> list[PinnedTask]:
        """The tasks, not the finally ones."""
        return [s for s in self.steps if not s.final]

    @property
    def finals(self) -> list[PinnedTask]:
        return [s for s in self.steps if s.final]

    def is_final(self, node: str) -> bool:
        return any(s.name == node for s in self.finals)

    def is_item(self, node: str) -> bool:
        """Whether a node is an item of a forEach step (not an item's compensation)."""
        if self._fan_outs is None:
            self._fan_outs = frozenset(s.name for s in self.steps if s.for_each is not None)
        return "/" in node and node.split("/", 1)[0] in self._fan_outs and not _is_compensation(node)

    def step_index(self, node: str) -> int:
        """The position of the step a node belongs to (a group member or a compensation: its
        step's)."""
        top = node.split("/", 1)[0].removesuffix(COMPENSATION)
        return next(i for i, s in enumerate(self.steps) if s.name == top)

    def spec_of(self, node: str) -> PinnedTask | PinnedMember:
        """The pinned step, group member or compensation a node executes."""
        step = self.steps[self.step_index(node)]
        if _is_compensation(node):
            assert step.compensate is not None
            return step.compensate
        if "/" not in node:
            return step
        if step.for_each is not None:
            return step.for_each.step
        member = node.split("/", 1)[1]
        return next(m for m in step.members or [] if m.name == member)


def plan(*, run: RunView, observed: Observations, now: datetime, options: EngineOptions) -> Decision:
    """Decide the next status of `run` and what to do about it."""
    try:
        whole, folded = expanded(run.status, known=observed.values)
        status = whole.model_copy(
            update={
                "observed_generation": run.generation,
                "pending_history": [
                    r for r in run.status.pending_history if r.seq > observed.history_written_through
                ],
            }
        )
        draft = _Draft(
            run=run,
            status=status,
            now=now,
            options=options,
            known=observed.values,
            folded=folded,
            cached=observed.cached,
        )
        return _planned(draft, observed)
    except ValueMissing as missing:
        return _held_for_value(run, missing, now=now, options=options)


def _planned(draft: _Draft, observed: Observations) -> Decision:
    run, status = draft.run, draft.status
    retry = _retry_requested(run.spec, status) and not observed.deleted
    if status.finished and not retry:
        _expire(draft, observed)
        return _decided(draft, conclude=False)
    if retry:
        _retry(draft)
    elif (run.spec.retry or 0) > status.retried:  # raised while running: nothing to retry
        draft.update(retried=run.spec.retry)
    if draft.status.pinned_tasks is None and not observed.deleted:
        if run.spec.cancel and not status.cancelled:
            draft.update(cancelled=True)
            draft.end = (Reason.CANCELLED, "The run was cancelled (spec.cancel) before it started")
            return _decided(draft)
        if not _start(draft, observed):
            return _decided(draft)
    _fold(draft, observed)
    while not observed.hold and _start_next(draft, observed):
        pass
    return _decided(draft)


def _start_next(draft: _Draft, observed: Observations) -> bool:
    """Start what may start now; True when a step ended as it started (a wait whose signal was
    there, a sub-workflow over the bound), so that what comes after it may start too."""
    starts = _next_starts(draft)
    for node in starts:
        if observed.progress_unknown and _node_type(draft.spec_of(node)) in IN_PROCESS:
            _hold_for_progress(draft, node)
        else:
            _start_attempt(draft, node)
    # (a forEach that started: its first items start in the next round)
    return any(
        (n := draft.node(id)) is not None and (n.phase in FINAL_NODE or n.type == NodeType.FOR_EACH)
        for id in starts
    )


def _next_starts(draft: _Draft) -> list[str]:
    """What starts now: the next steps; once the run is ending (a step failed, also one whose
    `when` could not be evaluated just now; a cancel; the deadline), the next compensation; once
    those are done, or the steps all succeeded, the next finally task."""
    if draft.status.ending is None:
        starts = _ready_steps(draft) if draft.end is None else []
        if draft.end is None and (starts or not _tasks_done(draft)):
            return starts
        if draft.end is None:
            _check_output(draft)
        if draft.end is not None:
            _begin_compensation(draft)
    ending = draft.status.ending
    if ending is not None and not ending.finally_:
        starts = _next_compensation(draft)
        if draft.end is None:
            return starts
    return _next_final(draft) if _begin_finally(draft) else []


def _check_output(draft: _Draft) -> None:
    """The tasks have all succeeded: the run ends with OutputInvalid (compensations and finally
    tasks run) if its output does not match its Workflow's outputSchema."""
    schema = draft.status.output_schema
    if schema is None:
        return
    mismatch = value_problems(schema, draft.resolve(draft.status.output or {}), what="output")
    if mismatch is not None:
        draft.end = (Reason.OUTPUT_INVALID, mismatch)


def _tasks_done(draft: _Draft) -> bool:
    """Whether every task (not the finally ones) has succeeded or was skipped."""
    return all((n := draft.node(s.name)) is not None and n.phase in DONE for s in draft.main)


def _decided(draft: _Draft, *, conclude: bool = True) -> Decision:
    if conclude:
        _conclude(draft)
    status, chunks = compacted(
        draft.status,
        draft.folded,
        pinned_now=not draft.run.status.started,
        chunk=draft.options.node_chunk,
        inline_tasks_bytes=draft.options.inline_tasks_bytes,
    )
    return Decision(status, tuple(draft.actions), {**draft.values, **chunks})


def _held_for_value(
    run: RunView, missing: ValueMissing, *, now: datetime, options: EngineOptions
) -> Decision:
    message = (
        f"Waiting for the stored value {missing.ref.digest} ({missing.ref.size} bytes): the history "
        "store does not answer; the run goes on once it does"
    )
    return hold(
        run, reason=Reason.VALUE_UNAVAILABLE, message=message, now=now, until=now + options.value_recheck
    )


def hold(run: RunView, *, reason: str, message: str, now: datetime, until: datetime) -> Decision:
    """A run that cannot go on now (what it needs from outside is not there): nothing changes
    but the condition saying why, and it looks again `until`."""
    draft = _Draft(run=run, status=run.status, now=now, options=EngineOptions())
    _hold(draft, reason=reason, message=message, until=until)
    return Decision(draft.status, tuple(draft.actions), held=True)


# ----- starting a run -----


def _start(draft: _Draft, observed: Observations) -> bool:
    """Pin the Workflow's steps and record the start; False when the run cannot start now."""
    run, now = draft.run, draft.now
    name = run.spec.workflow_ref.identity
    if run.spec.input and (run.spec.input_ref or run.spec.input_from):
        other = "inputRef" if run.spec.input_ref else "inputFrom"
        draft.end = (Reason.INPUT_INVALID, f"The run sets both input and {other}: set one of them")
        return False
    if ref_of(run.spec.input) is not None:
        draft.end = (
            Reason.INPUT_INVALID,
            f"The input may not be {REF_SHAPE}: that is a stored value's reference",
        )
        return False
    unread = run.spec.input_from is not None and draft.status.input is None
    if unread and not _take_input_from(draft, observed.input_from):
        return False
    size = size_of(draft.run_input())
    if size > draft.options.max_value_bytes:
        draft.end = (
            Reason.INPUT_TOO_LARGE,
            f"The input is {size} bytes of JSON, more than the {draft.options.max_value_bytes} a run "
            "takes (SEQFLOW_MAX_VALUE_BYTES): keep larger data in object storage and pass its name",
        )
        return False
    if observed.queued is not None and observed.workflow is not None:
        position, waiting = observed.queued
        limit = observed.workflow.spec.concurrency.limit if observed.workflow.spec.concurrency else 0
        message = f'Queued: Workflow "{name}" runs at most {limit} at once; '
        message += f"this run is {position} of {waiting} waiting"
        draft.condition(ConditionStatus.UNKNOWN, Reason.QUEUED, message)
        return False
    if run.spec.retry_from is not None:
        return _start_from(draft, observed)
    if observed.workflow is None:
        deadline = run.created_at + draft.options.workflow_wait
        if now >= deadline:
            draft.end = (Reason.WORKFLOW_NOT_FOUND, f"{_wanted(run)} not found in the run's namespace")
            return False
        message = (
            f"{_wanted(run)} not found; waiting until "
            f"{deadline.isoformat(timespec='seconds')} for it to appear"
        )
        if draft.status.phase is None:
            draft.event(EventType.WARNING, Reason.WAITING_FOR_WORKFLOW, message)
        draft.condition(ConditionStatus.UNKNOWN, Reason.WAITING_FOR_WORKFLOW, message)
        draft.actions.append(WakeAt(deadline))
        return False
    steps = pin_tasks(observed.workflow, options=draft.options)
    problem = workflow_problem(
        observed.workflow.spec, name=name, handlers=observed.handlers, workflows=observed.workflows
    )
    if problem is not None:
        draft.end = problem
        return False
    schema = observed.workflow.spec.input_schema
    mismatch = value_problems(schema, draft.resolve(draft.run_input()), what="input") if schema else None
    if mismatch:
        draft.end = (Reason.INPUT_INVALID, mismatch)
        return False
    if run.depth > draft.options.max_depth:
        draft.end = (
            Reason.DEPTH_EXCEEDED,
            f"This run is a sub-workflow nested {run.depth} deep, more than the {draft.options.max_depth} "
            "allowed: do the Workflows call each other in a loop?",
        )
        return False
    timeout = run.spec.timeout_seconds or observed.workflow.spec.timeout_seconds
    main = [t.name for t in steps if not t.final]
    draft.update(
        workflow_generation=observed.workflow.generation,
        pinned_tasks=steps,
        output_schema=observed.workflow.spec.output_schema,
        started_at=now,
        progress=f"0/{len(main)}",
        deadline=now + timedelta(seconds=timeout) if timeout else None,
    )
    draft.record(
        HistoryEvent.WORKFLOW_STARTED,
        details={
            "workflow": name,
            "generation": observed.workflow.generation,
            "tasks": main,
            "input": draft.run_input(),
        },
    )
    message = (
        f'Started Workflow "{name}" (generation {observed.workflow.generation}, {_count(len(main), "task")})'
    )
    draft.condition(ConditionStatus.UNKNOWN, Reason.STARTED, message)  # until a step says more
    draft.event(EventType.NORMAL, Reason.STARTED, message)
    return True


def _wanted(run: RunView) -> str:
    """The Workflow (and revision) a run names, as a person reads it."""
    ref = run.spec.workflow_ref
    return f'{ref.kind or "Workflow"} "{ref.name}"' + (
        f" revision {ref.revision}" if ref.revision is not None else ""
    )


def _start_from(draft: _Draft, observed: Observations) -> bool:
    """Start a run that retries another from one of its tasks (spec.retryFrom): with that run's
    task list, the nodes of the tasks before that one (not run again) and the input that one is
    to get (this run's, or the one it had there, patched); False when it cannot start now."""
    retry, source = draft.run.spec.retry_from, observed.retry_source
    assert retry is not None
    if source is None:
        message = f"Reading run {retry.run}, which this run retries from task {retry.step}"
        draft.condition(ConditionStatus.UNKNOWN, Reason.WAITING_FOR_INPUT, message)
        draft.actions.append(WakeAt(draft.now + draft.options.value_recheck))
        return False
    spec = draft.run.spec
    own = spec.input_ref.to_wire() if spec.input_ref else spec.input  # (an input of its own)
    problem = source.problem or _retry_problem(retry.step, source)
    if problem is None and not own and source.step_input is None:
        problem = f"the input task {retry.step} had is not known (its history is not in the store): give one"
    if problem is not None:
        draft.end = (
            Reason.RETRY_SOURCE_INVALID,
            f"Cannot retry run {retry.run} from task {retry.step}: {problem}",
        )
        return False
    given = own or merged(draft.resolve(source.step_input or {}), retry.patch or {})
    if (size := size_of(given)) > draft.options.max_value_bytes:
        draft.end = (
            Reason.INPUT_TOO_LARGE,
            f"The input is {size} bytes of JSON, more than the {draft.options.max_value_bytes} a run takes",
        )
        return False
    main = [t.name for t in source.pinned_tasks if not t.final]
    index = main.index(retry.step)
    before = set(main[:index])
    kept = [n for n in source.nodes if n.id.split("/", 1)[0] in before and not _is_compensation(n.id)]
    first = index == 0
    draft.update(
        pinned_tasks=source.pinned_tasks,
        output_schema=source.output_schema,
        nodes=kept,
        input=draft.keep(given if first else source.run_input),
        output=None if first else draft.keep(given),
        started_at=draft.now,
        progress=f"{index}/{len(main)}",
        workflow_generation=observed.workflow.generation if observed.workflow else None,
        deadline=draft.now + timedelta(seconds=spec.timeout_seconds) if spec.timeout_seconds else None,
    )
    details = {"retryOf": retry.run, "from": retry.step, "tasks": main, "input": draft.run_input()}
    draft.record(HistoryEvent.WORKFLOW_STARTED, details={"workflow": spec.workflow_ref.name, **details})
    message = f"Retrying run {retry.run} from task {retry.step} (the {_count(index, 'task')} before it kept)"
    draft.condition(ConditionStatus.UNKNOWN, Reason.STARTED, message)
    draft.event(EventType.NORMAL, Reason.STARTED, message)
    return True


def _retry_problem(step: str, source: RetrySource) -> str | None:
    """Why a run cannot be retried from `step`: not one of its tasks, or a task before it did
    not succeed there."""
    main = [t.name for t in source.pinned_tasks if not t.final]
    if step not in main:
        return f"it has no such task ({', '.join(main)})"
    nodes = {n.id: n for n in source.nodes}
    for name in main[: main.index(step)]:
        node = nodes.get(name)
        if node is None or node.phase not in DONE:
            return f"task {name} before it did not succeed there ({node.phase if node else 'never ran'})"
    return None


def merged(value: JsonObject, patch: JsonObject) -> JsonObject:
    """`value` with a JSON merge patch (RFC 7386) applied: objects merge, null removes a key."""
    result = dict(value)
    for key, change in patch.items():
        if change is None:
            result.pop(key, None)
        elif isinstance(change, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], change)
        else:
            result[key] = change
    return result


def _take_input_from(draft: _Draft, read: InputRead | None) -> bool:
    """Keep the input read from the spec's inputFrom in the status; False when there is none to
    take now: the run waits (a while for an object or key not there yet) or fails saying why."""
    assert draft.run.spec.input_from is not None
    source = draft.run.spec.input_from.describe()
    if read is not None and read.value is not None:
        if ref_of(read.value) is None:
            draft.update(input=draft.keep(read.value))
            return True
        read = InputRead(problem=f"it has the shape of a stored value's reference ({REF_SHAPE})")
    if read is not None and read.problem is not None:
        draft.end = (
            Reason.INPUT_INVALID,
            f"The input in {source} is not a JSON object to take: {read.problem}",
        )
        return False
    deadline = draft.run.created_at + draft.options.workflow_wait
    why = read.missing if read is not None else "it could not be read"
    if read is not None and draft.now >= deadline:
        draft.end = (Reason.INPUT_INVALID, f"No input in {source}: {why}")
        return False
    message = f"Waiting for the input in {source} ({why})"
    if read is not None:
        message += f"; until {deadline.isoformat(timespec='seconds')}"
    draft.condition(ConditionStatus.UNKNOWN, Reason.WAITING_FOR_INPUT, message)
    recheck = draft.now + draft.options.value_recheck  # (ConfigMaps and Secrets are not watched)
    draft.actions.append(WakeAt(min(recheck, deadline) if read is not None else recheck))
    return False


def pin_tasks(workflow: WorkflowView, *, options: EngineOptions) -> list[PinnedTask]:
    """The workflow's tasks with workflow and operator defaults resolved."""
    defaults = workflow.spec.defaults
    base_retry = RetryPolicy().merged(defaults.retry if defaults else None)
    base_timeout = (defaults.timeout_seconds if defaults else None) or options.default_timeout_seconds
    tasks = workflow.spec.tasks
    every: list[TaskSpec | FinallyTask] = [*tasks, *(workflow.spec.finally_ or [])]
    read = {name for task in every for _, text in _expressions(task) for name in _steps_read(text)}

    def timeout(spec: TaskSpec | MemberSpec | CompensateSpec | ForEachStep | FinallyTask) -> int:
        if spec.http is not None:
            return spec.http.timeout_seconds or DEFAULT_HTTP_TIMEOUT_SECONDS
        return spec.timeout_seconds or base_timeout

    def pinned(name: str, spec: MemberSpec | CompensateSpec | ForEachStep) -> PinnedMember:
        return PinnedMember(
            name=name,
            handler=spec.handler,
            job=spec.job,
            http=spec.http,
            artifacts=None if isinstance(spec, ForEachStep) else spec.artifacts,
            workflow_ref=spec.workflow_ref if isinstance(spec, ForEachStep) else None,
            retry=base_retry.merged(spec.retry),
            timeout_seconds=timeout(spec),
        )

    def pinned_for_each(name: str, spec: ForEachSpec) -> PinnedForEach:
        return PinnedForEach(
            items=spec.items,
            as_=spec.as_,
            into=spec.into,
            max_parallel=spec.max_parallel or DEFAULT_PARALLEL_ITEMS,
            tolerated_failures=spec.tolerated_failures or 0,
            fail_fast=bool(spec.fail_fast),
            step=pinned(name, spec.step),  # (its Jobs are labelled with the step's name and the item's index)
        )

    finals = [
        PinnedTask(
            name=final.name,
            handler=final.handler,
            job=final.job,
            http=final.http,
            final=True,
            retry=base_retry.merged(final.retry),
            timeout_seconds=timeout(final),
        )
        for final in workflow.spec.finally_ or []
    ]
    return [
        PinnedTask(
            name=task.name,
            handler=task.handler,
            job=task.job,
            http=task.http,
            artifacts=task.artifacts,
            sleep=task.sleep,
            wait=task.wait,
            workflow_ref=task.workflow_ref,
            members=[pinned(m.name, m) for m in task.parallel] if task.parallel is not None else None,
            for_each=pinned_for_each(task.name, task.for_each) if task.for_each is not None else None,
            max_parallel=task.max_parallel,
            fail_fast=bool(task.fail_fast),
            when=task.when,
            compensate=pinned("compensate", task.compensate) if task.compensate else None,
            keep_output=task.compensate is not None or task.name in read,
            cache=task.cache,
            retry=base_retry.merged(task.retry),
            timeout_seconds=timeout(task),
        )
        for task in tasks
    ] + finals


def _steps_read(expression: str) -> set[str]:
    """The steps whose outputs a `when` expression may read, by name."""
    return {dotted or quoted for dotted, quoted in STEP_REFERENCE.findall(expression)}


def workflow_problem(
    spec: WorkflowSpec,
    *,
    name: str,
    handlers: frozenset[str],
    workflows: Mapping[str, WorkflowSpec],
    require_subworkflows: bool = False,
) -> tuple[str, str] | None:
    """Why runs of a Workflow cannot run, as (reason, message); None when they can. The same
    check fills the Workflow's Ready condition and fails a run of it at start. `workflows` are
    the other Workflows of its namespace, known so far: a cycle through them is a problem, and
    with `require_subworkflows`, so is a sub-workflow missing from them."""
    unrunnable = _unrunnable(spec.tasks, spec.finally_ or [], handlers=handlers)
    if unrunnable:
        return Reason.HANDLER_NOT_FOUND, unrunnable
    problems = _subworkflow_problems(name, spec, workflows, require=require_subworkflows)
    problems += _condition_problems(spec.tasks, spec.finally_ or [])
    default_retry = spec.defaults.retry if spec.defaults else None
    if default_retry is not None and default_retry.when is not None:
        try:
            compiled(default_retry.when, field="retry.when")
        except ConditionError as error:
            problems.append(f"defaults: {error}")
    problems += _artifact_problems(spec.tasks)
    for named, schema in (("inputSchema", spec.input_schema), ("outputSchema", spec.output_schema)):
        if schema is not None:
            problems.append(schema_problem(schema, field=named) or "")
    message = "; ".join(p for p in problems if p)
    return (Reason.INVALID_WORKFLOW, message) if message else None


def _condition_problems(tasks: list[TaskSpec], finals: list[FinallyTask]) -> list[str]:
    """CEL expressions (`when`, forEach items, templates) that do not compile, or that read a
    step which has not run when they are evaluated: only the steps before a task (and their
    groups' members) have; a finally task's, every task and the finally tasks before it."""
    ids = [[task.name, *(f"{task.name}/{m.name}" for m in task.parallel or [])] for task in tasks]
    ids += [[final.name] for final in finals]
    every = {id for step in ids for id in step}
    problems, earlier = [], set[str]()
    every_task: list[TaskSpec | FinallyTask] = [*tasks, *finals]
    for task, own in zip(every_task, ids, strict=True):
        for where_in, expression in _expressions(task):
            try:
                compiled(expression, field=where_in)
            except ConditionError as error:
                problems.append(f"task {task.name}: {error}")
            for read in sorted(_steps_read(expression) - earlier):
                where = (
                    "a later step (it has not run yet)" if read in every else "not a step of this Workflow"
                )
                problems.append(f"task {task.name}: {where_in} {expression!r} reads steps.{read}, {where}")
        earlier.update(own)
    return problems


def _expressions(task: TaskSpec | FinallyTask) -> list[tuple[str, str]]:
    """A task's CEL expressions over its input and earlier steps (`when`, forEach items, the
    templates of its Jobs and requests), by the field they are in."""
    steps: list[tuple[str, TaskSpec | MemberSpec | CompensateSpec | ForEachStep | FinallyTask]] = [("", task)]
    found = []
    if isinstance(task, TaskSpec):
        found += [("when", task.when)] if task.when is not None else []
        found += [("forEach items", task.for_each.items)] if task.for_each is not None else []
        steps += [(f"member {m.name} ", m) for m in task.parallel or []]
        steps += [("compensate ", task.compensate)] if task.compensate is not None else []
        steps += [("forEach step ", task.for_each.step)] if task.for_each is not None else []
    for where, step in steps:
        for name, text in templated(step.job, step.http):
            found += [(where + name, expression) for expression in expressions(text)]
        if step.retry is not None and step.retry.when is not None:
            found.append((where + "retry.when", step.retry.when))
    return found


def _artifact_problems(tasks: list[TaskSpec]) -> list[str]:
    """Artifact names used twice by one step, and inputs that name no earlier step declaring
    them as an output (a compensation may read any step's)."""
    outputs: dict[str, set[str]] = {}  # step id -> its declared output files, for steps before
    problems = []

    def check(where: str, files: Artifacts | None, known: dict[str, set[str]]) -> None:
        if files is None:
            return
        names = [f.name for f in files.inputs] + [f.name for f in files.outputs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            problems.append(
                f"{where}: artifact names must be unique across inputs and outputs (each is a file of "
                f"one directory): {', '.join(twice)}"
            )
        for input in files.inputs:
            if input.step not in known:
                problems.append(
                    f'{where}: artifact input "{input.name}" names {input.step}, not an earlier step'
                )
            elif input.produced_as not in known[input.step]:
                problems.append(
                    f'{where}: artifact input "{input.name}" names {input.step}\'s "{input.produced_as}", '
                    "which it does not declare as an output"
                )

    def declared(files: Artifacts | None) -> set[str]:
        return {o.name for o in files.outputs} if files is not None else set()

    every = {task.name: declared(task.artifacts) for task in tasks}
    every |= {f"{t.name}/{m.name}": declared(m.artifacts) for t in tasks for m in t.parallel or []}
    for task in tasks:
        check(f"task {task.name}", task.artifacts, outputs)
        for member in task.parallel or []:
            check(f"task {task.name}/{member.name}", member.artifacts, outputs)
        if task.compensate is not None:
            check(f"task {task.name} compensate", task.compensate.artifacts, every)
        outputs[task.name] = every[task.name]
        outputs |= {f"{task.name}/{m.name}": every[f"{task.name}/{m.name}"] for m in task.parallel or []}
    return problems


def _subworkflow_problems(
    name: str, spec: WorkflowSpec, workflows: Mapping[str, WorkflowSpec], *, require: bool
) -> list[str]:
    problems = []
    for task in spec.tasks:
        ref = _sub_workflow(task)
        if ref is None:
            continue
        if _cluster_wide(name) and not _cluster_wide(ref):
            problems.append(
                f'task {task.name}: a ClusterWorkflow runs ClusterWorkflows only, not Workflow "{ref}"'
            )
            continue
        if require and ref != name and ref not in workflows:
            problems.append(f'task {task.name}: sub-workflow "{ref}" not found')
        loop = _call_path(ref, target=name, workflows={**workflows, name: spec}, seen=set())
        if loop is not None:
            problems.append(
                f"task {task.name}: sub-workflows call each other in a loop: {' -> '.join([name, *loop])}"
            )
    return problems


def _call_path(
    start: str, *, target: str, workflows: Mapping[str, WorkflowSpec], seen: set[str]
) -> list[str] | None:
    """The Workflows from `start` through sub-workflow steps to `target`, if it is reached."""
    if start == target:
        return [start]
    if start in seen or start not in workflows:
        return None
    seen.add(start)
    for task in workflows[start].tasks:
        if (ref := _sub_workflow(task)) is not None:
            rest = _call_path(ref, target=target, workflows=workflows, seen=seen)
            if rest is not None:
                return [start, *rest]
    return None


def _sub_workflow(task: TaskSpec) -> str | None:
    """The Workflow a task runs as a child run (its own, or its forEach's items'), as
    `WorkflowRef.identity` names it."""
    ref = task.workflow_ref or (task.for_each.step.workflow_ref if task.for_each is not None else None)
    return ref.identity if ref is not None else None


def _cluster_wide(workflow: str) -> bool:
    """Whether a Workflow so named (`WorkflowRef.identity`) is a ClusterWorkflow: it has no
    namespace of its own to find a Workflow in."""
    return workflow.startswith(f"{CLUSTER_WORKFLOW}/")


def workflow_status(
    spec: WorkflowSpec,
    *,
    name: str,
    generation: int,
    handlers: frozenset[str],
    workflows: Mapping[str, WorkflowSpec],
    previous: WorkflowStatus,
    now: datetime,
) -> WorkflowStatus:
    """The Workflow's status: Ready unless `workflow_problem` finds why its runs cannot run."""
    problem = workflow_problem(
        spec, name=name, handlers=handlers, workflows=workflows, require_subworkflows=True
    )
    status = ConditionStatus.FALSE if problem else ConditionStatus.TRUE
    reason, message = problem or ("Valid", "Runs of this Workflow can start")
    conditions = set_condition(previous.conditions, status, reason, message, now, type=READY)
    return WorkflowStatus(
        conditions=conditions,
        observed_generation=generation,
        revision=previous.revision,
        ready_revision=previous.ready_revision if problem else generation,
    )


def _unrunnable(tasks: list[TaskSpec], finals: list[FinallyTask], *, handlers: frozenset[str]) -> str | None:
    named = [(task.name, task.handler) for task in tasks]
    named += [(f"{task.name}/{m.name}", m.handler) for task in tasks for m in task.parallel or []]
    named += [(f"{task.name}{COMPENSATION}", t.handler) for task in tasks if (t := task.compensate)]
    named += [(task.name, f.step.handler) for task in tasks if (f := task.for_each)]
    named += [(final.name, final.handler) for final in finals]
    problems = [
        f'task {name}: no handler registered as "{handler}"'
        for name, handler in named
        if handler is not None and handler not in handlers
    ]
    if not problems:
        return None
    known = ", ".join(sorted(handlers)) or "none"
    return "; ".join(problems) + f" (registered handlers: {known})"


def _expire(draft: _Draft, observed: Observations) -> None:
    """A finished run is deleted once its time to live is over (the run's own, else its
    Workflow's, else the operator's); until then, a timer."""
    spec, workflow = draft.run.spec, observed.workflow
    seconds = spec.ttl_seconds_after_finished
    if seconds is None and workflow is not None:
        seconds = workflow.spec.ttl_seconds_after_finished
    ttl = timedelta(seconds=seconds) if seconds is not None else draft.options.run_ttl
    if ttl is None or draft.status.finished_at is None or observed.deleted:
        return
    due = draft.status.finished_at + ttl
    draft.actions.append(DeleteRun() if draft.now >= due else WakeAt(due))


# ----- fold: what happened -----


def _fold(draft: _Draft, observed: Observations) -> None:
    """Take in what happened: a deletion or a cancel first (what the attempts under way did
    no longer matters), else each active step's news."""
    if observed.deleted:
        _cancel(draft, reason=Reason.RUN_DELETED, message="The run was deleted before it finished")
        return
    if draft.run.spec.cancel and not draft.status.cancelled:
        draft.update(cancelled=True)
        if draft.status.ending is None:  # compensations and finally tasks are not cut short
            _cancel(draft, reason=Reason.CANCELLED, message="The run was cancelled (spec.cancel)")
            return
    deadline, started = draft.status.deadline, draft.status.started_at
    if deadline is not None and started is not None and draft.now >= deadline and draft.status.ending is None:
        took = int((deadline - started).total_seconds())
        _cancel(draft, reason=Reason.DEADLINE_EXCEEDED, message=f"The run passed its deadline ({took} s)")
        return
    gathering = (NodeType.PARALLEL, NodeType.FOR_EACH)  # after their members and items
    for node in list(draft.status.nodes):
        if node.phase == NodePhase.RUNNING and node.type not in gathering:
            _fold_running(draft, node, observed)
        elif node.phase == NodePhase.WAITING:
            _fold_waiting(draft, node)
    for node in list(draft.status.nodes):
        if node.type == NodeType.PARALLEL and node.phase == NodePhase.RUNNING:
            _fold_group(draft, node)
        elif node.type == NodeType.FOR_EACH and node.phase == NodePhase.RUNNING:
            _fold_fan_out(draft, node)
    for id in draft.unseen:  # (a failFast group may have cancelled it meanwhile)
        unseen = draft.node(id)
        if unseen is not None and unseen.phase == NodePhase.RUNNING:
            _create_again(draft, unseen, observed)


def _fold_running(draft: _Draft, node: NodeStatus, observed: Observations) -> None:
    result = next(
        (r for r in observed.results if (r.node, r.attempt) == (node.id, node.attempts)),
        None,
    )
    if node.type == NodeType.SLEEP:
        _fold_sleep(draft, node)
        return
    if node.type == NodeType.WORKFLOW and result is None:  # (a result: its child was refused)
        _fold_child(draft, node, observed)
        return
    if result is None and node.type == NodeType.JOB:
        if node.id in observed.jobs_running:
            _started_condition(draft, node)
        else:
            draft.unseen.append(node.id)
        return
    if result is None:
        if (node.id, node.attempts) in observed.handlers_running:
            return
        if observed.progress_unknown:  # (it may have ended in another process)
            _hold_for_progress(draft, node.id)
            return
        # Nobody is executing this attempt any more: the operator stopped while it ran.
        result = AttemptResult(node=node.id, attempt=node.attempts, error=INTERRUPTED)
    if result.succeeded:
        kept = draft.keep(result.output or {})  # (encoded once: its reference tells its size)
        size = size_of(kept)
        if size <= draft.options.max_value_bytes:
            _succeeded(draft, node, kept, artifacts=result.artifacts)
            return
        draft.values.pop(kept.get("ref", ""), None)
        result = _output_too_large(draft, result, size=size)
    _attempt_failed(draft, node, result)


def _output_too_large(draft: _Draft, result: AttemptResult, *, size: int) -> AttemptResult:
    """An output over the limit fails its attempt for good: the same step makes the same output."""
    error = (
        f"the output is {size} bytes of JSON, more than the "
        f"{draft.options.max_value_bytes} a step may return (SEQFLOW_MAX_VALUE_BYTES)"
    )
    return AttemptResult(
        node=result.node, attempt=result.attempt, error=error, permanent=True, reason=Reason.OUTPUT_TOO_LARGE
    )


def _create_again(draft: _Draft, node: NodeStatus, observed: Observations) -> None:
    """The Job or child run of an attempt is not seen (yet): create it again (if it exists,
    that finds it), unless one of its name that is not the run's blocks it."""
    if node.id in observed.blocked:
        _hold(
            draft,
            reason=Reason.ATTEMPT_BLOCKED,
            message=f"Task {node.id} attempt {node.attempts} cannot start: {observed.blocked[node.id]}",
            until=draft.now + draft.options.blocked_recheck,
        )
    else:
        _execute(draft, node)


def _fold_child(draft: _Draft, node: NodeStatus, observed: Observations) -> None:
    """A sub-workflow step ends with its child run: Succeeded with the child's output, else its
    attempt fails, for good when the child failed for good (its `cause`, passed on up: the
    message names the innermost run once) or was cancelled. Meanwhile the child is suspended
    and resumed with its parent."""
    child = observed.children.get(node.id)
    if child is None:
        draft.unseen.append(node.id)
        return
    assert node.child is not None
    if child.phase in FINISHED:
        draft.update(descendants=(draft.status.descendants or 0) + child.descendants)
    if child.phase == RunPhase.SUCCEEDED:
        _succeeded(draft, node, child.output or {})
    elif child.phase in (RunPhase.FAILED, RunPhase.CANCELLED):
        _attempt_failed(draft, node, _child_failure(node, child))
    elif child.suspended != bool(draft.run.spec.suspend):
        draft.actions.append(ControlChildRun(node.child, suspend=bool(draft.run.spec.suspend)))


def _child_failure(node: NodeStatus, child: ChildRun) -> AttemptResult:
    cause = child.cause
    if cause is not None:
        where = node.child if cause.run == node.child else f"{cause.run}, beneath child run {node.child},"
        error = f"run {where} failed: {cause.reason}: {cause.message}"
    else:
        error = f"child run {node.child} {child.phase}"
        error += f": {child.reason}: {child.message}" if child.reason else ""
    permanent = cause is not None or child.phase == RunPhase.CANCELLED or child.reason in FAILED_FOR_GOOD
    return AttemptResult(node=node.id, attempt=node.attempts, error=error, permanent=permanent, cause=cause)


def _fold_sleep(draft: _Draft, node: NodeStatus) -> None:
    """A sleeping step is done at its deadline (a timer until then, re-armed after a restart)."""
    if node.deadline is not None and draft.now < node.deadline:
        draft.actions.append(WakeAt(node.deadline))
    else:
        _succeeded(draft, node, _input_of(draft, draft.step_index(node.id)))


def _fold_waiting(draft: _Draft, node: NodeStatus) -> None:
    """A step waiting for a signal goes on when the signal is in the run's spec (its payload
    merged into the data), or at its deadline: then it fails (its retry policy applies) or,
    with onTimeout: continue, goes on without it."""
    step = draft.steps[draft.step_index(node.id)]
    assert step.wait is not None
    input = _input_of(draft, draft.step_index(node.id))
    signals = draft.run.spec.signals or {}
    if step.wait.signal in signals:
        payload = signals[step.wait.signal]
        given = payload if isinstance(payload, dict) else {step.wait.signal: payload}
        _succeeded_merged(draft, node, {**draft.resolve(input), **given})
    elif node.deadline is not None and draft.now >= node.deadline:
        if step.wait.on_timeout == "continue":
            _succeeded(draft, node, input)
        else:
            error = f"no signal {step.wait.signal} within {step.wait.timeout_seconds} s"
            _attempt_failed(draft, node, AttemptResult(node=node.id, attempt=node.attempts, error=error))
    else:
        _waiting_condition(draft, node, step)
        if node.deadline is not None:
            draft.actions.append(WakeAt(node.deadline))


def _waiting_condition(draft: _Draft, node: NodeStatus, step: PinnedTask) -> None:
    assert step.wait is not None
    until = f" until {node.deadline.isoformat(timespec='seconds')}" if node.deadline else ""
    message = f"Task {node.id} waits for signal {step.wait.signal}{until}"
    draft.condition(ConditionStatus.UNKNOWN, Reason.WAITING, message)


def _fold_group(draft: _Draft, group: NodeStatus) -> None:
    """A parallel group ends when its members have: Succeeded with its input merged with their
    outputs in declared order, or Failed once a member failed and none runs any more (with
    failFast, the running ones are cancelled first)."""
    step = draft.steps[draft.step_index(group.id)]
    members = [draft.node(f"{group.id}/{m.name}") for m in step.members or []]
    failed = [m for m in members if m is not None and m.phase == NodePhase.FAILED]
    if failed and step.fail_fast:
        for member in members:
            if member is not None and member.phase in ACTIVE:
                _cancel_node(draft, member, reason=Reason.CANCELLED)
        members = [draft.node(f"{group.id}/{m.name}") for m in step.members or []]
    if failed and not any(m is not None and m.phase in ACTIVE for m in members):
        message = f"Task {group.id} failed: {failed[0].id}: {failed[0].last_error}"
        draft.put(_with(group, phase=NodePhase.FAILED, finished_at=draft.now, last_error=_clip(message)))
        draft.record(
            HistoryEvent.TASK_FAILED, node=group.id, attempt=group.attempts, details={"error": _clip(message)}
        )
        draft.end = (Reason.TASK_FAILED, message)
    elif members and all(m is not None and m.phase == NodePhase.SUCCEEDED for m in members):
        output = dict(draft.resolve(_input_of(draft, draft.step_index(group.id))))
        for member in members:
            assert member is not None
            output.update(draft.resolve(member.output or {}))
            draft.put(_with(member, output=None))  # no longer needed: the group's output has it
        _succeeded_merged(draft, group, output)


def _fold_fan_out(draft: _Draft, node: NodeStatus) -> None:
    """A forEach ends when its items have: Succeeded with its input and their outputs in item
    order (a tolerated failure's as null), or Failed once more items failed than tolerated and
    none runs any more (with failFast, the running ones are cancelled first)."""
    step = draft.steps[draft.step_index(node.id)]
    assert step.for_each is not None and node.fan_out is not None
    spec, fan = step.for_each, node.fan_out
    items = _items(draft, step)
    failed = [n for n in items if n.phase == NodePhase.FAILED]
    tolerated = spec.tolerated(fan.total)
    if len(failed) > tolerated and spec.fail_fast:
        for item in items:
            if item.phase in ACTIVE:
                _cancel_node(draft, item, reason=Reason.CANCELLED)
        items = _items(draft, step)
    if len(failed) > tolerated and not any(n.phase in ACTIVE for n in items):
        message = f"Task {node.id} failed: {len(failed)} of {_count(fan.total, 'item')} failed, "
        message += f"more than the {tolerated} tolerated; {failed[0].id}: {failed[0].last_error}"
        draft.put(_with(node, phase=NodePhase.FAILED, finished_at=draft.now, last_error=_clip(message)))
        draft.record(
            HistoryEvent.TASK_FAILED, node=node.id, attempt=node.attempts, details={"error": _clip(message)}
        )
        draft.end = (Reason.TASK_FAILED, message)
    elif len(failed) + sum(n.phase == NodePhase.SUCCEEDED for n in items) == fan.total:
        _gathered(draft, node, spec, items)


def _items(draft: _Draft, step: PinnedTask) -> list[NodeStatus]:
    """The nodes of a forEach's items admitted so far."""
    prefix = step.name + "/"
    return [n for n in draft.status.nodes if n.id.startswith(prefix) and not _is_compensation(n.id)]


def _count_items(draft: _Draft) -> None:
    """Bring the counters of the forEach steps under way, or ended in this plan, up to date."""
    for node in list(draft.status.nodes):
        if node.fan_out is None or (node.phase not in ACTIVE and node.finished_at != draft.now):
            continue
        items = _items(draft, draft.steps[draft.step_index(node.id)])
        failed = [n.id for n in items if n.phase == NodePhase.FAILED]
        counted = node.fan_out.model_copy(
            update={
                "running": sum(n.phase in ACTIVE for n in items),
                "succeeded": sum(n.phase == NodePhase.SUCCEEDED for n in items),
                "failed": len(failed),
                "failed_items": failed or None,
            }
        )
        if counted != node.fan_out:
            draft.put(_with(node, fan_out=counted))


def _gathered(draft: _Draft, node: NodeStatus, spec: PinnedForEach, items: list[NodeStatus]) -> None:
    """The fan-in: a forEach's output once all its items have ended."""
    by_index = {int(n.id.rsplit("/", 1)[1]): n for n in items}
    assert node.fan_out is not None
    results = [
        draft.resolve(item.output or {}) if (item := by_index[i]).phase == NodePhase.SUCCEEDED else None
        for i in range(node.fan_out.total)
    ]
    output = {**draft.resolve(_input_of(draft, draft.step_index(node.id))), spec.into: results}
    kept = draft.keep(output)  # (encoded once)
    if (size := size_of(kept)) > draft.options.max_value_bytes:
        draft.values.pop(kept.get("ref", ""), None)
        result = AttemptResult(node=node.id, attempt=node.attempts)
        _attempt_failed(draft, node, _output_too_large(draft, result, size=size))
    elif kept is output:  # inline: it may have a reference's shape
        _succeeded_merged(draft, node, output)
    else:
        _succeeded(draft, node, kept)


def _succeeded_merged(draft: _Draft, node: NodeStatus, output: JsonObject) -> None:
    """A step whose output is a merge succeeds, unless the merge has the shape of a reference
    (it would be read as one): then it fails for good."""
    if ref_of(output) is None:
        _succeeded(draft, node, output)
        return
    error = f"the merged output is {REF_SHAPE}, the shape of a stored value's reference: rename a key"
    _failed_for_good(draft, node, error=error, reason=Reason.TASK_FAILED)


def _failed_for_good(draft: _Draft, node: NodeStatus, *, error: str, reason: str) -> None:
    """Fail a node's current attempt for good: no retry can help."""
    result = AttemptResult(node=node.id, attempt=node.attempts, error=error, permanent=True, reason=reason)
    _attempt_failed(draft, node, result)


def _succeeded(
    draft: _Draft, node: NodeStatus, output: JsonObject, *, artifacts: tuple[StoredArtifact, ...] = ()
) -> None:
    output = draft.keep(output)
    member = "/" in node.id  # a member's output waits in its node for the group's end
    compensation = _is_compensation(node.id)
    spec = draft.spec_of(node.id)
    kept = member or (isinstance(spec, PinnedTask) and spec.keep_output)
    draft.put(
        node.model_copy(
            update={
                "phase": NodePhase.SUCCEEDED,
                "finished_at": draft.now,
                "last_error": None,
                "output": output if kept else None,
                "artifacts": list(artifacts) or None,
            }
        )
    )
    details: JsonObject = {"output": output}
    if node.cache_key is not None and isinstance(spec, PinnedTask) and spec.cache is not None:
        details["cache"] = {"key": node.cache_key, "ttlSeconds": spec.cache.ttl_seconds}
    if artifacts:
        details["artifacts"] = [a.to_wire() for a in artifacts]
    draft.record(HistoryEvent.TASK_COMPLETED, node=node.id, attempt=node.attempts, details=details)
    if compensation:  # its step (or item) is undone
        step = draft.node(node.id.removesuffix(COMPENSATION))
        assert step is not None
        draft.put(_with(step, phase=NodePhase.COMPENSATED, output=None))
    elif not member and not draft.is_final(node.id):  # (a finally task's output is its own)
        draft.update(output=output)


def _attempt_failed(draft: _Draft, node: NodeStatus, result: AttemptResult) -> None:
    assert result.error is not None
    error = _clip(result.error)
    policy = draft.spec_of(node.id).retry
    attempt = node.attempts
    if result.disrupted:  # another attempt, not counted
        node = _with(node, budget_from=node.budget_from + 1)
    counted = attempt - node.budget_from
    reason = result.reason or (Reason.TASK_INTERRUPTED if result.error == INTERRUPTED else Reason.TASK_FAILED)
    unwanted = (
        None if result.permanent or counted > policy.max_retries else _not_retried(policy, result, attempt)
    )
    if result.permanent or counted > policy.max_retries or unwanted:
        why = "permanent error" if result.permanent else unwanted or f"{counted} attempts"
        draft.put(
            node.model_copy(update={"phase": NodePhase.FAILED, "finished_at": draft.now, "last_error": error})
        )
        draft.record(
            HistoryEvent.TASK_FAILED,
            node=node.id,
            attempt=attempt,
            details={"error": error, "reason": reason, "permanent": result.permanent, "attempts": counted},
        )
        message = f"Task {node.id} failed ({why}): {error}"
        if _is_compensation(node.id):
            assert draft.status.ending is not None
            message = f"{draft.status.ending.message}; compensation {node.id} failed ({why}): {error}"
            draft.end = (Reason.COMPENSATION_FAILED, message)
            return
        # The run fails for good (a group's too; an item's failure is its forEach's to weigh).
        if result.permanent and draft.status.cause is None and not draft.is_item(node.id):
            cause = result.cause or FailureCause(run=draft.run.name, reason=reason, message=message)
            draft.update(cause=cause)
        if "/" not in node.id and not draft.is_final(node.id):  # a member's is its group's to weigh
            draft.end = (reason, message)
        return
    delay = max(policy.delay_after(counted), result.retry_after or 0)
    retry_at = draft.now + timedelta(seconds=delay)
    message = f"Task {node.id} attempt {attempt} failed: {error}; "
    message += f"retry {counted} of {policy.max_retries} in {delay:g} s"
    draft.put(
        node.model_copy(update={"phase": NodePhase.RETRYING, "next_retry_at": retry_at, "last_error": error})
    )
    draft.record(
        HistoryEvent.TASK_RETRY,
        node=node.id,
        attempt=attempt,
        details={
            "error": error,
            "reason": reason,
            "retry_count": counted,
            "max_retries": policy.max_retries,
            "backoff_seconds": delay,
            "next_retry_at": retry_at.isoformat(),
        },
    )
    draft.condition(ConditionStatus.UNKNOWN, Reason.TASK_RETRYING, message)
    draft.event(EventType.WARNING, Reason.TASK_RETRYING, message)


def _not_retried(policy: RetryPolicy, result: AttemptResult, attempt: int) -> str | None:
    """Why a policy with conditions (`on`, `exitCodes`, `when`) does not retry this failure;
    None when it does (a policy without them retries every failure that is not permanent)."""
    if not policy.selective or result.disrupted:
        return None
    if result.error_type is not None and result.error_type in (policy.on or []):
        return None
    if result.exit_code is not None and result.exit_code in (policy.exit_codes or []):
        return None
    if policy.when is not None:
        error = {
            "message": result.error or "",
            "reason": result.reason or Reason.TASK_FAILED,
            "type": result.error_type or "",
            "exitCode": result.exit_code,
        }
        try:
            if holds(policy.when, {"error": error, "attempt": attempt}, field="retry.when"):
                return None
        except ConditionError as problem:
            return f"not retried: {problem}"
    kind = f"type {result.error_type}" if result.error_type else "no type"
    code = f", exit code {result.exit_code}" if result.exit_code is not None else ""
    return f"not retried: {kind}{code} is not among its retry conditions"


def _cancel(draft: _Draft, *, reason: str, message: str) -> None:
    """Stop every active step: running attempts are cancelled (Jobs deleted, handlers stopped)."""
    for node in draft.status.nodes:
        if node.phase in ACTIVE:
            _cancel_node(draft, node, reason=reason)
    draft.end = (reason, message)


def _cancel_node(draft: _Draft, node: NodeStatus, *, reason: str) -> None:
    if node.phase in (NodePhase.RUNNING, NodePhase.WAITING):  # an open attempt
        details = {"reason": reason}
        draft.record(HistoryEvent.TASK_CANCELLED, node=node.id, attempt=node.attempts, details=details)
        if node.type == NodeType.JOB and node.job:
            draft.actions.append(DeleteJob(node.job))
        elif node.type == NodeType.WORKFLOW and node.child:
            draft.actions.append(ControlChildRun(node.child, cancel=True))
        elif node.type in IN_PROCESS:
            draft.actions.append(CancelHandler(node.id, node.attempts))
    draft.put(_with(node, phase=NodePhase.CANCELLED, finished_at=draft.now, next_retry_at=None))


def _retry_requested(spec: WorkflowRunSpec, status: WorkflowRunStatus) -> bool:
    return (spec.retry or 0) > status.retried and status.phase in (RunPhase.FAILED, RunPhase.CANCELLED)


def _retry(draft: _Draft) -> None:
    """Run a Failed or Cancelled run again from the steps that did not succeed, each with a fresh
    attempt budget; succeeded steps keep their outputs. A run whose compensations undid steps
    runs again from its first step (the data those steps passed on is undone with them). The
    finally tasks run again after its new ending; its deadline is as far from now as it was
    from its start."""
    compensated = any(n.phase == NodePhase.COMPENSATED for n in draft.status.nodes)
    if draft.status.deadline is not None and draft.status.started_at is not None:
        draft.update(deadline=draft.now + (draft.status.deadline - draft.status.started_at))
    kept = draft.status.nodes
    if compensated:  # steps that never ran (skipped) are decided again; the others keep counting
        kept = [n for n in kept if n.attempts > 0]
    draft.update(nodes=kept, ending=None, cause=None, output=None if compensated else draft.status.output)
    again = set(NodePhase) if compensated else {NodePhase.FAILED, NodePhase.CANCELLED}
    for node in draft.status.nodes:  # (compensations too: one needed again is a new attempt)
        if node.phase in again or _is_compensation(node.id) or draft.is_final(node.id):
            draft.put(
                node.model_copy(
                    update={
                        "phase": NodePhase.PENDING,
                        "budget_from": node.attempts,
                        "finished_at": None,
                        "output": None if compensated else node.output,
                    }
                )
            )
    previous = draft.status.phase
    draft.update(retried=draft.run.spec.retry or 0, phase=RunPhase.RUNNING, finished_at=None)
    draft.record(HistoryEvent.RUN_RETRIED, details={"retry": draft.status.retried, "after": str(previous)})
    message = f"Retrying the run (retry {draft.status.retried}) from the steps that did not succeed"
    draft.condition(ConditionStatus.UNKNOWN, Reason.RETRIED, message)  # until a step says more
    draft.event(EventType.NORMAL, Reason.RETRIED, message)


# ----- compensation: undo what succeeded -----


def _begin_compensation(draft: _Draft) -> None:
    """The run fails or is cancelled (`draft.end`): when steps that succeeded have a
    compensation, the run is Compensating until those have run, in reverse order."""
    assert draft.end is not None
    reason, message = draft.end
    undo = [step.name for step in reversed(draft.steps) if _compensable(draft, step)]
    if reason == Reason.RUN_DELETED or not undo:
        return
    phase = RunPhase.CANCELLED if reason == Reason.CANCELLED else RunPhase.FAILED
    draft.update(ending=Ending(phase=phase, reason=reason, message=message))
    draft.end = None
    draft.record(
        HistoryEvent.COMPENSATION_STARTED, details={"reason": reason, "message": message, "steps": undo}
    )
    note = f"{message}; compensating {', '.join(undo)}"
    draft.condition(ConditionStatus.UNKNOWN, Reason.COMPENSATING, note)
    draft.event(EventType.WARNING, Reason.COMPENSATING, note)


def _compensable(draft: _Draft, step: PinnedTask) -> bool:
    """Whether a step has something to undo: itself, or for a forEach, an item, that succeeded."""
    return step.compensate is not None and bool(_to_undo(draft, step))


def _to_undo(draft: _Draft, step: PinnedTask) -> list[NodeStatus]:
    """The nodes a step's compensation is to undo, the last first: the step's own, or for a
    forEach (whether it ended or not), its items' that succeeded."""
    if step.for_each is None:
        node = draft.node(step.name)
        return [node] if node is not None and node.phase == NodePhase.SUCCEEDED else []
    done = [n for n in _items(draft, step) if n.phase == NodePhase.SUCCEEDED]
    return sorted(done, key=lambda n: int(n.id.rsplit("/", 1)[1]), reverse=True)


def _next_compensation(draft: _Draft) -> list[str]:
    """The next compensation to start: that of the last step (or item) still to undo; once
    none is left, the run ends (`draft.end`) as its `ending` says, compensated."""
    if draft.end is not None or draft.run.spec.suspend:
        return []
    for step in reversed(draft.steps):
        if step.compensate is None:
            continue
        for undone in _to_undo(draft, step):
            node = draft.node(undone.id + COMPENSATION)
            if node is None or node.phase == NodePhase.PENDING:
                return [undone.id + COMPENSATION] if _room_for_history(draft, step) else []
            if node.phase == NodePhase.RETRYING:
                return [node.id] if _due(draft, node) and _room_for_history(draft, step) else []
            return []  # running (a failed one has ended the run)
    ending = draft.status.ending
    assert ending is not None
    draft.end = (Reason.COMPENSATED, f"{ending.message}; compensated {', '.join(_undone(draft))}")
    return []


def _undone(draft: _Draft) -> list[str]:
    """The steps compensated, the last first (a forEach with the number of its items)."""
    undone = []
    for step in reversed(draft.steps):
        if step.for_each is not None:
            count = sum(n.phase == NodePhase.COMPENSATED for n in _items(draft, step))
            undone += [f"{step.name} ({_count(count, 'item')})"] if count else []
        elif (node := draft.node(step.name)) is not None and node.phase == NodePhase.COMPENSATED:
            undone.append(step.name)
    return undone


def _is_compensation(node: str) -> bool:
    return node.endswith(COMPENSATION)


# ----- finally: after any ending -----


def _begin_finally(draft: _Draft) -> bool:
    """Whether finally tasks run now: the tasks have ended (`draft.end`, or all succeeded) and
    compensations are done; the run's `ending` then says how it ends, for them to see. Deleting
    the run skips them (and stops one under way)."""
    ending = draft.status.ending
    if ending is not None and ending.finally_:
        return draft.end is None or draft.end[0] != Reason.RUN_DELETED
    if not draft.finals or (draft.end is not None and draft.end[0] == Reason.RUN_DELETED):
        return False
    phase: RunPhase
    if draft.end is None:
        main = len(draft.main)
        phase, reason = RunPhase.SUCCEEDED, str(Reason.SUCCEEDED)
        message = f"All {main} tasks succeeded" if main > 1 else "The task succeeded"
    else:
        reason, message = draft.end
        cancelled = reason == Reason.CANCELLED
        phase = ending.phase if ending else (RunPhase.CANCELLED if cancelled else RunPhase.FAILED)
    failed = next(
        (s.name for s in draft.main if (n := draft.node(s.name)) and n.phase == NodePhase.FAILED), None
    )
    ending = Ending(phase=phase, reason=reason, message=message, finally_=True, failed_step=failed)
    draft.update(ending=ending)
    draft.end = None
    names = [s.name for s in draft.finals]
    draft.record(HistoryEvent.FINALLY_STARTED, details={**_outcome(ending), "steps": names})
    draft.condition(
        ConditionStatus.UNKNOWN, Reason.FINALLY_RUNNING, f"{message}; running finally {', '.join(names)}"
    )
    return True


def _next_final(draft: _Draft) -> list[str]:
    """The next finally task to start, in order (one that failed does not stop the others);
    once none is left, the run ends as its `ending` says, or with FinallyFailed."""
    if draft.run.spec.suspend:
        return []
    failed = []
    for step in draft.finals:
        node = draft.node(step.name)
        if node is None or node.phase == NodePhase.PENDING:
            return [step.name] if _room_for_history(draft, step) else []
        if node.phase == NodePhase.RETRYING:
            return [node.id] if _due(draft, node) and _room_for_history(draft, step) else []
        if node.phase in ACTIVE:
            return []
        if node.phase != NodePhase.SUCCEEDED:
            failed.append(node)
    ending = draft.status.ending
    assert ending is not None
    if failed:
        first = failed[0]
        draft.end = (
            Reason.FINALLY_FAILED,
            f"{ending.message}; finally task {first.id} failed: {first.last_error}",
        )
    elif ending.phase == RunPhase.SUCCEEDED:
        draft.update(ending=None)  # (the run has Succeeded: its phase says so)
    else:
        draft.end = (ending.reason, ending.message)
    return []


def _outcome(ending: Ending) -> JsonObject:
    return {
        "phase": ending.phase.value,
        "reason": ending.reason,
        "message": ending.message,
        "failedStep": ending.failed_step,
    }


def _final_input(draft: _Draft) -> JsonObject:
    """A finally task's input: the run's input, its outcome and the data passed on so far."""
    ending = draft.status.ending
    assert ending is not None
    output = draft.resolve(draft.status.output or {})
    return {"input": draft.resolve(draft.run_input()), "outcome": _outcome(ending), "output": output}


# ----- schedule: what may start now -----


def _ready_steps(draft: _Draft) -> list[str]:
    """The nodes whose next attempt starts now: the first step not done (steps run in order),
    or members of its group."""
    status, spec = draft.status, draft.run.spec
    if draft.end is not None or status.pinned_tasks is None or spec.suspend:
        return []
    for index, step in enumerate(status.pinned_tasks):
        if step.final:  # (the finally tasks are last: `_next_final` starts them)
            return []
        node = draft.node(step.name)
        undecided = node is None or node.phase == NodePhase.PENDING  # (pending: after a retry)
        if undecided and step.when is not None and not _condition_holds(draft, index):
            if draft.end is not None:  # the condition could not be evaluated: the run fails
                return []
            continue  # skipped
        if step.members is not None and node is not None and node.phase == NodePhase.RUNNING:
            return _ready_members(draft, step)
        if step.for_each is not None and node is not None and node.phase == NodePhase.RUNNING:
            return _ready_items(draft, step, node)
        if node is None or node.phase == NodePhase.PENDING:
            if not _room_for_history(draft, step):
                return []
            return [step.name, *_ready_members(draft, step)] if step.members is not None else [step.name]
        if node.phase == NodePhase.RETRYING:
            return [step.name] if _due(draft, node) and _room_for_history(draft, step) else []
        if node.phase not in DONE:
            return []
    return []


def _ready_members(draft: _Draft, step: PinnedTask) -> list[str]:
    """The members of a running group that start now, in declared order, up to maxParallel.
    Once a member has failed, none starts any more, but those under way see their retries out."""
    members = step.members or []
    ids = [f"{step.name}/{m.name}" for m in members]
    failed = any((n := draft.node(id)) is not None and n.phase == NodePhase.FAILED for id in ids)
    running = sum(1 for id in ids if (n := draft.node(id)) is not None and n.phase == NodePhase.RUNNING)
    free = (step.max_parallel or len(members)) - running
    starts: list[str] = []
    for id in ids:
        node = draft.node(id)
        ready = not failed and (node is None or node.phase == NodePhase.PENDING)
        ready = ready or (node is not None and node.phase == NodePhase.RETRYING and _due(draft, node))
        if ready and len(starts) < free and _room_for_history(draft, step):
            starts.append(id)
    return starts


def _ready_items(draft: _Draft, step: PinnedTask, node: NodeStatus) -> list[str]:
    """The items of a running forEach that start now, up to maxParallel running: those to run
    again (a retry of the item, or of the run) first, then the next ones in item order. Once
    more have failed than tolerated, none starts any more."""
    assert step.for_each is not None and node.fan_out is not None
    spec, fan = step.for_each, node.fan_out
    items = _items(draft, step)
    if sum(n.phase == NodePhase.FAILED for n in items) > spec.tolerated(fan.total):
        return []
    running = sum(n.phase == NodePhase.RUNNING for n in items)
    free = spec.max_parallel - running
    starts = [
        n.id
        for n in items
        if n.phase == NodePhase.PENDING or (n.phase == NodePhase.RETRYING and _due(draft, n))
    ][: max(free, 0)]
    next = range(fan.admitted, min(fan.total, fan.admitted + free - len(starts)))
    starts += [f"{step.name}/{index}" for index in next]
    if not starts or not _room_for_history(draft, step):
        return []
    # An entry a start, and one an end: the entries of the running items' ends are kept room for.
    room = draft.options.max_pending_history - len(draft.status.pending_history) - running
    return starts[: max(room, 0)]


def _due(draft: _Draft, node: NodeStatus) -> bool:
    """Whether a retrying node's backoff is over; if not, a timer for it."""
    if node.next_retry_at and draft.now < node.next_retry_at:
        draft.actions.append(WakeAt(node.next_retry_at))
        return False
    return True


def _condition_holds(draft: _Draft, index: int) -> bool:
    """Evaluate a step's `when`. False skips the step (its input passes on); an expression that
    cannot be evaluated fails it, and the run, for good. A step decided again after a retry keeps
    its attempt count (its next attempt's Job is a new one)."""
    step = draft.steps[index]
    assert step.when is not None
    input = _input_of(draft, index)
    node = draft.node(step.name) or NodeStatus(id=step.name, type=_node_type(step))
    try:
        if holds(step.when, _variables(draft, input)):
            return True
    except ConditionError as error:
        message = f"Task {step.name}: {error}"
        draft.put(_with(node, phase=NodePhase.FAILED, finished_at=draft.now, last_error=message))
        draft.record(
            HistoryEvent.TASK_FAILED,
            node=step.name,
            details={"error": message, "reason": Reason.CONDITION_FAILED, "permanent": True},
        )
        draft.end = (Reason.CONDITION_FAILED, message)
        return False
    draft.put(
        _with(node, phase=NodePhase.SKIPPED, started_at=draft.now, finished_at=draft.now, last_error=None)
    )
    draft.record(HistoryEvent.TASK_SKIPPED, node=step.name, details={"when": step.when})
    draft.update(output=input)
    return False


def _variables(draft: _Draft, input: JsonObject) -> dict[str, object]:
    """What a step's CEL expressions see: its input, the run, and the earlier steps."""
    run = draft.run
    return {
        "input": draft.resolve(input),
        "run": {"name": run.name, "namespace": run.namespace, "labels": dict(run.labels)},
        "steps": {
            n.id: {"phase": n.phase.value, "output": draft.resolve(n.output or {})}
            for n in draft.status.nodes
            if not _is_compensation(n.id) and not draft.is_item(n.id)
        },
    }


def _room_for_history(draft: _Draft, step: PinnedTask) -> bool:
    """Whether the entries waiting for the history store leave room for another attempt (by
    count, and by size: the whole object must stay well below etcd's limit); if not, the run
    holds and says why. Writing them trims the list, and that status change brings it back."""
    pending = draft.status.pending_history
    size = sum(json_size(r.details) for r in pending)
    if len(pending) < draft.options.max_pending_history and size < draft.options.max_pending_history_bytes:
        return True
    message = (
        f"Holding before task {step.name}: "
        f"{_count(len(pending), 'activity log entry', 'activity log entries')} wait for the history store"
    )
    _hold(draft, reason=Reason.HISTORY_BACKLOG, message=message)
    return False


# ----- emit: start attempts -----


def _start_attempt(draft: _Draft, id: str) -> None:
    spec = draft.spec_of(id)
    node = draft.node(id) or NodeStatus(id=id, type=_node_type(spec))
    first = node.attempts == node.budget_from  # (of the run, or of its retry: the cache is asked)
    if isinstance(spec, PinnedTask) and spec.cache is not None and first and _from_cache(draft, node, spec):
        return
    node = draft.node(id) or node  # (with its cache key)
    attempt = node.attempts + 1
    input = _input_for(draft, id)
    workflow = spec.workflow_ref is not None
    node = node.model_copy(
        update={
            "phase": NodePhase.WAITING if node.type == NodeType.WAIT else NodePhase.RUNNING,
            "attempts": attempt,
            "started_at": node.started_at or draft.now,
            "next_retry_at": None,
            "job": job_name(run=draft.run.name, node=node.id, attempt=attempt) if spec.job else None,
            "child": child_run_name(run=draft.run.name, node=node.id, attempt=attempt) if workflow else None,
            "deadline": _deadline(spec, now=draft.now),
        }
    )
    draft.put(node)
    if draft.is_item(id):
        _admitted(draft, id)
    draft.record(
        HistoryEvent.TASK_STARTED,
        node=node.id,
        attempt=attempt,
        details={"input": input, "executor": node.type.value},
    )
    # No Event for a start: the status shows it, and the outcome's Event names the attempt.
    match node.type:
        case NodeType.WORKFLOW if _descendant_budget(draft) < 1:
            message = (
                f"this run may create at most {_max_descendants(draft)} runs beneath it, its "
                "sub-workflows' own included (SEQFLOW_MAX_DESCENDANTS), and has created them all"
            )
            _failed_for_good(draft, node, error=message, reason=Reason.TOO_MANY_RUNS)
        case NodeType.HANDLER | NodeType.HTTP | NodeType.JOB if (
            missing := _missing_artifact(draft, spec)
        ) is not None:
            _failed_for_good(draft, node, error=missing, reason=Reason.ARTIFACT_MISSING)
        case NodeType.HANDLER | NodeType.HTTP | NodeType.JOB | NodeType.WORKFLOW:
            if node.type == NodeType.WORKFLOW:  # (a sub-workflow's step has no templates to fail)
                draft.update(descendants=(draft.status.descendants or 0) + 1)
            if _execute(draft, node, input):
                _started_condition(draft, node)
        case NodeType.SLEEP:  # a timer, never a worker
            _started_condition(draft, node)
            draft.actions.append(WakeAt(node.deadline or draft.now))
        case NodeType.WAIT:
            _fold_waiting(draft, node)  # the signal may be there already
        case NodeType.PARALLEL:
            _started_condition(draft, node)  # its members start with it
        case NodeType.FOR_EACH:
            _begin_fan_out(draft, node, input)
        case _:
            assert_never(node.type)


def _from_cache(draft: _Draft, node: NodeStatus, step: PinnedTask) -> bool:
    """Whether a cached step's first attempt is settled by the cache: Cached with the output kept
    under its key, or waiting for the lookup (its key in its node); False when nothing is kept
    under it, so that the step runs (its output is kept under the key after)."""
    assert step.cache is not None
    input = _input_for(draft, node.id)
    if node.cache_key is None:
        try:
            text = render("{{" + step.cache.key + "}}", _variables(draft, input), field="cache.key")
        except ConditionError as error:
            _failed_for_good(
                draft,
                _with(node, attempts=node.attempts + 1),
                error=str(error),
                reason=Reason.CONDITION_FAILED,
            )
            return True
        task = step.model_dump_json(by_alias=True, exclude={"keep_output"})
        node = _with(node, cache_key=hashlib.sha256(f"{task}\n{text}".encode()).hexdigest())
        draft.put(node)
    if node.id not in draft.cached:
        draft.condition(
            ConditionStatus.UNKNOWN, Reason.TASK_STARTED, f"Looking up task {node.id}'s kept output"
        )
        draft.actions.append(WakeAt(draft.now + draft.options.value_recheck))
        return True
    output = draft.cached[node.id]
    if output is None:
        return False
    kept = output if step.keep_output else None
    draft.put(_with(node, phase=NodePhase.CACHED, started_at=draft.now, finished_at=draft.now, output=kept))
    draft.record(HistoryEvent.TASK_CACHED, node=node.id, details={"key": node.cache_key, "output": output})
    draft.update(output=output)
    return True


def _admitted(draft: _Draft, item: str) -> None:
    """Count an item started for the first time as admitted (items are admitted in order)."""
    step, index = item.rsplit("/", 1)
    fan_out = draft.node(step)
    assert fan_out is not None and fan_out.fan_out is not None
    if int(index) >= fan_out.fan_out.admitted:
        draft.put(_with(fan_out, fan_out=fan_out.fan_out.model_copy(update={"admitted": int(index) + 1})))


def _begin_fan_out(draft: _Draft, node: NodeStatus, input: JsonObject) -> None:
    """Evaluate a forEach's items (once: a retry of the run keeps them) and start the first; a
    list that cannot be had fails the step for good, an empty one succeeds it at once."""
    step = draft.steps[draft.step_index(node.id)]
    assert step.for_each is not None
    if node.fan_out is None:
        try:
            items = _evaluated_items(draft, step.for_each, input)
        except ConditionError as error:
            _failed_for_good(draft, node, error=str(error), reason=Reason.ITEMS_INVALID)
            return
        node = _with(node, fan_out=FanOut(items=draft.keep({"items": items}), total=len(items)))
        draft.put(node)
    assert node.fan_out is not None
    if node.fan_out.total == 0:
        _gathered(draft, node, step.for_each, [])
    else:
        _started_condition(draft, node)


def _evaluated_items(draft: _Draft, spec: PinnedForEach, input: JsonObject) -> list[object]:
    items = evaluated(spec.items, _variables(draft, input), field="forEach items")
    if not isinstance(items, list):
        raise ConditionError(f"forEach items {spec.items!r} gave {type(items).__name__}, not a list")
    if len(items) > MAX_ITEMS:
        raise ConditionError(
            f"forEach items {spec.items!r} gave {len(items)} items, "
            f"more than the {MAX_ITEMS} one step may run"
        )
    try:
        encode(items)
    except (TypeError, ValueError) as error:
        raise ConditionError(f"forEach items {spec.items!r} gave a value that is not JSON: {error}") from None
    return items


def _deadline(step: PinnedTask | PinnedMember, *, now: datetime) -> datetime | None:
    """When an attempt's sleep ends or its wait times out (None: no deadline)."""
    if not isinstance(step, PinnedTask):
        return None
    if step.sleep is not None:
        return step.sleep.until or now + timedelta(seconds=step.sleep.seconds or 0)
    if step.wait is not None and step.wait.timeout_seconds is not None:
        return now + timedelta(seconds=step.wait.timeout_seconds)
    return None


def _node_type(step: PinnedTask | PinnedMember) -> NodeType:
    if step.job is not None:
        return NodeType.JOB
    if step.http is not None:
        return NodeType.HTTP
    if step.workflow_ref is not None:
        return NodeType.WORKFLOW
    if not isinstance(step, PinnedTask):
        return NodeType.HANDLER
    if step.members is not None:
        return NodeType.PARALLEL
    if step.for_each is not None:
        return NodeType.FOR_EACH
    if step.sleep is not None:
        return NodeType.SLEEP
    return NodeType.WAIT if step.wait is not None else NodeType.HANDLER


def _execute(draft: _Draft, node: NodeStatus, input: JsonObject | None = None) -> bool:
    """Emit the action of a node's current attempt, its templates rendered; False when one
    cannot be, which fails the attempt for good."""
    data = _input_for(draft, node.id) if input is None else input
    task = draft.spec_of(node.id)
    if draft.is_item(node.id):  # its own copy of the forEach's input, not a reference to it
        data = {**data, "input": draft.resolve(data["input"])}
    try:
        if has_templates(task):
            variables = (
                _variables(draft, data["input"]) | data if draft.is_item(node.id) else _variables(draft, data)
            )
            task = rendered(task, variables)
    except ConditionError as error:
        _failed_for_good(draft, node, error=str(error), reason=Reason.TEMPLATE_FAILED)
        return False
    draft.actions.append(_action(draft, node, task, data))
    return True


def _action(draft: _Draft, node: NodeStatus, task: PinnedTask | PinnedMember, data: JsonObject) -> Action:
    if (draft.is_item(node.id) or draft.is_final(node.id)) and node.type in (NodeType.JOB, NodeType.WORKFLOW):
        data = draft.keep(data)  # (its copy of the values it is made of is stored once)
    if node.type == NodeType.JOB:
        assert node.job is not None
        files = tuple(f for f in _input_artifacts(draft, task).values() if f is not None)
        item = int(node.id.rsplit("/", 1)[1]) if draft.is_item(node.id) else None
        return CreateJob(
            node=node.id,
            name=node.job,
            task=task,
            attempt=node.attempts,
            input=data,
            artifacts=files,
            item=item,
        )
    if node.type == NodeType.WORKFLOW:
        assert task.workflow_ref is not None and node.child is not None
        return CreateChildRun(
            node=node.id,
            name=node.child,
            attempt=node.attempts,
            workflow=task.workflow_ref,
            input=data,
            suspend=bool(draft.run.spec.suspend),
            depth=draft.run.depth + 1,
            max_descendants=_descendant_budget(draft),
        )
    files = tuple(f for f in _input_artifacts(draft, task).values() if f is not None)
    return RunHandler(
        node=node.id, task=task, attempt=node.attempts, input=draft.resolve(data), artifacts=files
    )


def _input_artifacts(draft: _Draft, step: PinnedTask | PinnedMember) -> dict[str, StoredArtifact | None]:
    """A step's input files as their producers kept them, under the names they have for it
    (None: not kept, so far)."""
    wanted = step.artifacts.inputs if step.artifacts is not None else []
    found: dict[str, StoredArtifact | None] = {}
    for input in wanted:
        producer = draft.node(input.step)
        kept = {a.name: a for a in (producer.artifacts or [])} if producer is not None else {}
        file = kept.get(input.produced_as)
        found[input.name] = file.model_copy(update={"name": input.name}) if file is not None else None
    return found


def _missing_artifact(draft: _Draft, step: PinnedTask | PinnedMember) -> str | None:
    """Why a step cannot start for want of an input file, or None."""
    found = _input_artifacts(draft, step)
    for input in step.artifacts.inputs if step.artifacts is not None else []:
        if found[input.name] is None:
            producer = draft.node(input.step)
            if producer is None:
                how = "it has not run"
            elif producer.phase == NodePhase.SUCCEEDED:
                how = "it ended without it"
            else:
                how = f"it {producer.phase.value.lower()}"
            return (
                f'its input artifact "{input.name}" is step {input.step}\'s "{input.produced_as}", '
                f"which was not kept ({how})"
            )
    return None


def _max_descendants(draft: _Draft) -> int:
    """The runs this run may create beneath it: a child run's share of its parent's bound, else
    the operator's."""
    own = draft.run.max_descendants
    return own if own is not None else draft.options.max_descendants


def _descendant_budget(draft: _Draft) -> int:
    """What is left of it. A run has one child at a time, so a child's share is all of it."""
    return _max_descendants(draft) - (draft.status.descendants or 0)


def _input_of(draft: _Draft, index: int) -> JsonObject:
    """The input of the step at `index`: the run's for the first, else the data flowing on."""
    return draft.run_input() if index == 0 else (draft.status.output or {})


def _input_for(draft: _Draft, node: str) -> JsonObject:
    """The input of a node: its step's, or for a compensation, the output of the step it undoes."""
    if draft.is_item(node):
        return _item_input(draft, node)
    if draft.is_final(node):
        return _final_input(draft)
    if not _is_compensation(node):
        return _input_of(draft, draft.step_index(node))
    step = draft.node(node.removesuffix(COMPENSATION))
    return (step.output if step else None) or {}


def _item_input(draft: _Draft, node: str) -> JsonObject:
    """An item's input: the item, its index, and the forEach's input (by reference when it is
    stored: the same for every item, it is read, not copied, for each)."""
    step, index = node.rsplit("/", 1)
    fan_out = draft.node(step)
    assert fan_out is not None and fan_out.fan_out is not None
    spec = draft.steps[draft.step_index(node)].for_each
    assert spec is not None
    item = draft.resolve(fan_out.fan_out.items)["items"][int(index)]
    return {spec.as_: item, "index": int(index), "input": _input_of(draft, draft.step_index(node))}


def job_name(*, run: str, node: str, attempt: int) -> str:
    """`<run>-<step id>-<attempt>` as a Job name: lower case, at most 63 characters (shortened
    with a hash; also when the id had to change, so two ids never share a name)."""
    return _attempt_name(run=run, node=node, attempt=attempt, limit=63)


def child_run_name(*, run: str, node: str, attempt: int) -> str:
    """The same as a WorkflowRun name (up to 253 characters)."""
    return _attempt_name(run=run, node=node, attempt=attempt, limit=253)


def _attempt_name(*, run: str, node: str, attempt: int, limit: int) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in node.lower()).strip("-")
    suffix = "" if slug == node else "-" + hashlib.sha256(node.encode()).hexdigest()[:6]
    return shortened_name(f"{run}-{slug}-{attempt}{suffix}", limit=limit)


# ----- the run's phase, derived from its nodes -----


def derive_phase(status: WorkflowRunStatus, spec: WorkflowRunSpec, *, ended: str | None = None) -> RunPhase:
    """The run's phase from its nodes and the user's intent; `ended` is why it stopped, if it did."""
    steps = [s for s in status.pinned_tasks or [] if not s.final]
    nodes = {n.id: n for n in status.nodes}
    ending = status.ending
    if any(n.phase in ACTIVE for n in nodes.values()) or (ending is not None and ended is None):
        compensating = ending is not None and not ending.finally_
        going_on = RunPhase.COMPENSATING if compensating else RunPhase.RUNNING
        return RunPhase.SUSPENDED if spec.suspend else going_on
    if ending is not None:
        if ended in (Reason.RUN_DELETED, Reason.FINALLY_FAILED):
            return RunPhase.CANCELLED if ended == Reason.RUN_DELETED else RunPhase.FAILED
        return ending.phase
    # (a member's or an item's end is its group's or forEach's to weigh)
    ends = {n.phase for n in nodes.values() if "/" not in n.id}
    if ended in (Reason.CANCELLED, Reason.RUN_DELETED) or (ended is None and NodePhase.CANCELLED in ends):
        return RunPhase.CANCELLED
    if ended is not None or NodePhase.FAILED in ends:
        return RunPhase.FAILED
    if steps and all(s.name in nodes and nodes[s.name].phase in DONE for s in steps):
        return RunPhase.SUCCEEDED
    if status.pinned_tasks is None:
        return RunPhase.PENDING
    return RunPhase.SUSPENDED if spec.suspend else RunPhase.RUNNING


def _conclude(draft: _Draft) -> None:
    """Derive the phase and the summary fields; record the run's end or suspension, if new."""
    before = draft.status.phase  # (Running again after a retry)
    _count_items(draft)
    reason = draft.end[0] if draft.end else None
    phase = derive_phase(draft.status, draft.run.spec, ended=reason)
    steps = draft.main
    nodes = draft.status.nodes
    names = {step.name for step in steps}
    succeeded = sum(n.phase in DONE for n in nodes if n.id in names)  # tasks, not members nor finally tasks
    progress = f"{succeeded}/{len(steps)}" if steps else draft.status.progress
    for fan_out in (n for n in nodes if n.fan_out is not None and n.phase in ACTIVE):
        assert fan_out.fan_out is not None
        progress = f"{progress}, {fan_out.id} {fan_out.fan_out.succeeded}/{fan_out.fan_out.total}"
    draft.update(
        phase=phase,
        current=[n.id for n in nodes if n.phase in ACTIVE and not draft.is_item(n.id)],
        progress=progress,
        retries=sum(max(n.attempts - 1, 0) for n in nodes),
    )
    deadline = draft.status.deadline
    if deadline is not None and phase not in FINISHED and draft.status.ending is None:
        draft.actions.append(WakeAt(deadline))  # (a durable timer: every plan sets it again)
    _report_phase(draft, phase, before)
    if any(c.type == CONDITION for c in draft.status.conditions):
        _gitops_conditions(draft, phase)


def _report_phase(draft: _Draft, phase: RunPhase, before: RunPhase | None) -> None:
    """Record and tell the run's end, suspension or resumption, when this plan brought it."""
    steps = draft.main
    if phase in (RunPhase.FAILED, RunPhase.CANCELLED):
        _record_end(draft, phase)
    elif phase == RunPhase.SUCCEEDED:
        message = f"All {len(steps)} tasks succeeded" if len(steps) > 1 else "The task succeeded"
        draft.record(HistoryEvent.WORKFLOW_COMPLETED, details={"output": draft.status.output or {}})
        draft.update(finished_at=draft.now)
        draft.condition(ConditionStatus.TRUE, Reason.SUCCEEDED, message)
        draft.event(EventType.NORMAL, Reason.SUCCEEDED, message)
    elif phase == RunPhase.SUSPENDED:  # told anew as what runs ends, never left stale
        message = _suspended_message(draft)
        draft.condition(ConditionStatus.UNKNOWN, Reason.SUSPENDED, message)
        if before != RunPhase.SUSPENDED:
            draft.record(HistoryEvent.RUN_SUSPENDED, details={})
            draft.event(EventType.NORMAL, Reason.SUSPENDED, message)
    elif phase in (RunPhase.RUNNING, RunPhase.COMPENSATING) and before == RunPhase.SUSPENDED:
        draft.record(HistoryEvent.RUN_RESUMED, details={})
        draft.event(EventType.NORMAL, Reason.RESUMED, "Resumed")
        if not draft.status.current:
            draft.condition(ConditionStatus.UNKNOWN, Reason.RESUMED, "Resumed")


def _suspended_message(draft: _Draft) -> str:
    """What a suspended run does now, and on resume."""
    running = [n.id for n in draft.status.nodes if n.phase in (NodePhase.RUNNING, NodePhase.WAITING)]
    message = "Suspended: no new step or attempt starts until spec.suspend is false"
    if running:
        return f"{message}; {', '.join(running)} {'runs' if len(running) == 1 else 'run'} on meanwhile"
    if draft.status.ending is not None:
        what = "finally tasks" if draft.status.ending.finally_ else "compensations"
        return f"{message}; on resume, the {what} go on"
    nodes = {n.id: n for n in draft.status.nodes}
    step = next((s.name for s in draft.main if s.name not in nodes or nodes[s.name].phase not in DONE), None)
    return f"{message}; on resume, task {step} goes on" if step else message


def _record_end(draft: _Draft, phase: RunPhase) -> None:
    reason, message = draft.end or (Reason.TASK_FAILED, "A task failed")
    cancelled = phase == RunPhase.CANCELLED
    draft.record(
        HistoryEvent.WORKFLOW_CANCELLED if cancelled else HistoryEvent.WORKFLOW_FAILED,
        details={"reason": reason, "message": message},
    )
    draft.update(finished_at=draft.now, current=[])
    if not cancelled and draft.status.cause is None and reason in FAILED_FOR_GOOD:
        draft.update(cause=FailureCause(run=draft.run.name, reason=reason, message=message))
    draft.condition(ConditionStatus.FALSE, reason, message)
    if reason != Reason.RUN_DELETED:  # nobody reads the Events of a run being deleted
        draft.event(EventType.NORMAL if cancelled else EventType.WARNING, reason, message)


def fail_unrecordable(run: RunView, *, reason: str, message: str, now: datetime) -> Decision:
    """Fail a run whose status cannot be written as planned (too large) or read at all: keep
    only the small parts (nodes, counters, the history not yet in the store) and say why."""
    status = run.status
    kept = WorkflowRunStatus(
        started_at=status.started_at,
        nodes=status.nodes,
        earlier_nodes=status.earlier_nodes,
        progress=status.progress,
        retries=status.retries,
        retried=status.retried,
        conditions=status.conditions,
        observed_generation=status.observed_generation,
        history_seq=status.history_seq,
        pending_history=status.pending_history,
    )
    draft = _Draft(run=run, status=kept, now=now, options=EngineOptions(), end=(reason, message))
    draft.update(phase=RunPhase.FAILED)
    _record_end(draft, RunPhase.FAILED)
    _gitops_conditions(draft, RunPhase.FAILED)
    return Decision(draft.status, tuple(draft.actions))


def fail_internal(run: RunView, *, message: str, now: datetime) -> Decision:
    """Fail a run that `plan()` could not plan (a defect of seqflow): what runs is stopped, as
    on a cancel, and the run ends Failed with reason InternalError, so it never goes without a
    status. A retry of the run plans it again."""
    draft = _Draft(run=run, status=run.status, now=now, options=EngineOptions())
    _cancel(draft, reason=Reason.INTERNAL_ERROR, message=_clip(message))
    draft.update(phase=RunPhase.FAILED)
    _record_end(draft, RunPhase.FAILED)
    _gitops_conditions(draft, RunPhase.FAILED)
    return Decision(draft.status, tuple(draft.actions))


# ----- holds and conditions -----


def _hold(draft: _Draft, *, reason: str, message: str, until: datetime | None = None) -> None:
    """Wait for something outside the run (the condition says what), looking again `until`;
    a Warning Event tells it the first time."""
    previous = next((c for c in draft.status.conditions if c.type == CONDITION), None)
    draft.condition(ConditionStatus.UNKNOWN, reason, message)
    if previous is None or previous.reason != reason:
        draft.event(EventType.WARNING, reason, message)
    if until is not None:
        draft.actions.append(WakeAt(until))


def _hold_for_progress(draft: _Draft, node: str) -> None:
    _hold(
        draft,
        reason=Reason.PROGRESS_UNKNOWN,
        message=f"Task {node} waits: the progress journal (in the history database) cannot be read, "
        "so what an earlier operator process did with in-process attempts is not known yet",
    )


def _started_condition(draft: _Draft, node: NodeStatus) -> None:
    """The condition of a run whose attempt is under way (after a hold, too)."""
    draft.condition(
        ConditionStatus.UNKNOWN, Reason.TASK_STARTED, f"Task {node.id} attempt {node.attempts} started"
    )


def set_condition(
    conditions: list[Condition],
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    *,
    type: str = CONDITION,
) -> list[Condition]:
    previous = next((c for c in conditions if c.type == type), None)
    changed_at = previous.last_transition_time if previous and previous.status == status else now
    condition = Condition(
        type=type, status=status, reason=reason, message=message, last_transition_time=changed_at
    )
    if previous is None:
        return [*conditions, condition]
    return [condition if c.type == type else c for c in conditions]  # in place: no churn in writes


def _gitops_conditions(draft: _Draft, phase: RunPhase) -> None:
    """Ready, Reconciling and Stalled as kstatus reads them (Flux health checks, `kubectl wait
    --for=condition=Ready`): Reconciling while the run goes on, Stalled once it failed or was
    cancelled (both only while true), Ready once it succeeded."""
    (summary,) = [c for c in draft.status.conditions if c.type == CONDITION]
    reason, message = summary.reason, summary.message
    ready = ConditionStatus.TRUE if phase == RunPhase.SUCCEEDED else ConditionStatus.FALSE
    conditions = set_condition(draft.status.conditions, ready, reason, message, draft.now, type=READY)
    true = None
    if phase in (RunPhase.PENDING, RunPhase.RUNNING, RunPhase.COMPENSATING):
        true = RECONCILING
    elif phase in (RunPhase.FAILED, RunPhase.CANCELLED):
        true = STALLED
    conditions = [c for c in conditions if c.type not in (RECONCILING, STALLED) or c.type == true]
    if true is not None:  # (set in place: it keeps the time it became true)
        conditions = set_condition(conditions, ConditionStatus.TRUE, reason, message, draft.now, type=true)
    draft.update(conditions=conditions)


# ----- small helpers -----


def _with(node: NodeStatus, **changes: object) -> NodeStatus:
    return node.model_copy(update=changes)


def json_size(value: JsonObject) -> int:
    """Bytes of `value` as compact JSON (as it is stored and passed on)."""
    return len(encode(value))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
