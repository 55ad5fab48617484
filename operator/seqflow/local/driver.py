"""Driving a local run to its end: the shell around `plan()` that the operator is, on this
machine. Each round it plans every run that something happened to (a result, a child run's
change, a signal, its timer), writes the status through its wire form, keeps the values and the
activity log the engine hands over (the history store's part), and carries out the actions
with one `match` (none can be ignored). Sub-workflow steps run as child runs of the same
world. While attempts run, time is the wall clock's; when nothing runs, the clock jumps to the
next timer (unless real time is kept), after any signal the waiting steps are given.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import assert_never

from seqflow.api.models import (
    HistoryEvent,
    HistoryRecord,
    JsonObject,
    NodePhase,
    NodeStatus,
    NodeType,
    RunPhase,
    WorkflowRef,
    WorkflowRunSpec,
    WorkflowRunStatus,
)
from seqflow.api.values import ref_of
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
    Observations,
    PostEvent,
    RunHandler,
    RunView,
    WakeAt,
    WorkflowView,
    plan,
)
from seqflow.executors.inprocess import TaskContext
from seqflow.local.clock import LocalClock
from seqflow.local.options import LocalOptions, handlers_of
from seqflow.local.result import LocalResult, StepResult, Transition
from seqflow.local.signals import NoSignals, SignalSource
from seqflow.local.steps import LocalSteps

WORKFLOW_GENERATION = 1
MAX_PLANS_IN_A_ROW = 10_000  # plans of due runs with no wait between them: the engine settles in a few
OUTPUTS = (HistoryEvent.TASK_COMPLETED, HistoryEvent.TASK_CACHED)

TransitionSink = Callable[[Transition], None]


@dataclass(eq=False)
class LocalRun:
    """A run of the world, as the API server and the operator's caches would hold it."""

    name: str
    spec: JsonObject  # its wire form: signals, suspend and cancel are written into it
    path: tuple[str, ...]  # the sub-workflow steps above it (none for the run itself)
    created_at: datetime
    parent: LocalRun | None = None
    depth: int = 0
    max_descendants: int | None = None
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: WorkflowRunStatus = field(default_factory=WorkflowRunStatus)
    generation: int = 1
    due: bool = True  # something happened to it: plan it
    gone: bool = False  # deleted (its time to live after finishing is over)
    timers: set[datetime] = field(default_factory=set)
    attempts: dict[tuple[str, int], asyncio.Task[AttemptResult]] = field(default_factory=dict)
    jobs: dict[str, tuple[str, asyncio.Task[AttemptResult]]] = field(default_factory=dict)  # name: node
    results: list[AttemptResult] = field(default_factory=list)
    history: list[HistoryRecord] = field(default_factory=list)
    events: list[PostEvent] = field(default_factory=list)
    nodes: dict[str, NodeStatus] = field(default_factory=dict)  # as last seen (folded ones too)

    @property
    def workflow(self) -> str:
        """Its Workflow, as `WorkflowRef.identity` names it (ClusterWorkflow/NAME for one)."""
        return WorkflowRef.model_validate(self.spec["workflowRef"]).identity

    def tasks(self) -> list[asyncio.Task[AttemptResult]]:
        return [*self.attempts.values(), *(task for _, task in self.jobs.values())]

    def waiting_for(self) -> dict[str, str]:
        """The signals its waiting steps wait for and that it has not been given, by the step's
        path (`Step`, or through sub-workflow steps `Step > Child step`)."""
        given = self.spec.get("signals") or {}
        pinned = {task.name: task for task in self.status.pinned_tasks or []}
        return {
            " > ".join((*self.path, node.id)): wait.signal
            for node in self.status.nodes
            if node.type == NodeType.WAIT and node.phase == NodePhase.WAITING
            if (wait := pinned[node.id].wait) is not None and wait.signal not in given
        }


class LocalWorld:
    """The runs of one local run's tree, the values they store and the attempts under way."""

    def __init__(
        self, *, options: LocalOptions, signals: SignalSource, on_transition: TransitionSink
    ) -> None:
        self.options = options
        self.clock = LocalClock(start=options.start or datetime.now(UTC), real_time=options.real_time)
        self.steps = LocalSteps(options=options, clock=self.clock)
        self.signals = signals
        self.on_transition = on_transition
        self.runs: dict[str, LocalRun] = {}
        self.stubbed_children: dict[str, ChildRun] = {}
        self.values: dict[str, JsonObject] = {}  # the history store's stored values, by digest
        self.transitions: list[Transition] = []
        self.handlers = options.handlers.names() | {
            handler
            for spec in options.workflows.specs.values()
            for id, handler in handlers_of(spec)
            if options.stub_for(id) is not None
        }

    # -- the loop --

    async def drive(self, top: LocalRun) -> str | None:
        """Drive `top` and its child runs until it has finished; why not, when it cannot."""
        plans_in_a_row = 0  # with nothing between them: a run whose status never settles is a bug
        while not top.status.finished:
            self._collect()
            due = [run for run in self.runs.values() if not run.gone and self._is_due(run)]
            plans_in_a_row = plans_in_a_row + 1 if due else 0
            if plans_in_a_row > MAX_PLANS_IN_A_ROW:
                return f"its status did not settle after {MAX_PLANS_IN_A_ROW} plans in a row (a seqflow bug)"
            if due:
                for run in due:
                    self._plan(run)
            elif any(run.tasks() for run in self.runs.values()):
                await self._wait_for_attempts()
            elif not await self._signalled():
                timer = self._next_timer()
                if timer is None:
                    return self._why_stuck()
                await self.clock.reach(timer)
        return None

    async def close(self) -> None:
        tasks = [task for run in self.runs.values() for task in run.tasks()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.steps.close()

    def _is_due(self, run: LocalRun) -> bool:
        now = self.clock.now()
        return run.due or any(timer <= now for timer in run.timers)

    def _collect(self) -> None:
        """Take in the attempts that ended."""
        for run in self.runs.values():
            for key, task in list(run.attempts.items()):
                if task.done():
                    del run.attempts[key]
                    run.results.append(task.result())
                    run.due = True
            for name, (_, task) in list(run.jobs.items()):
                if task.done():
                    del run.jobs[name]
                    run.results.append(task.result())
                    run.due = True

    async def _wait_for_attempts(self) -> None:
        """Until an attempt ends, or the next timer is due (by the wall clock)."""
        tasks = [task for run in self.runs.values() for task in run.tasks()]
        timer = self._next_timer()
        timeout = None if timer is None else max((timer - self.clock.now()).total_seconds(), 0.0)
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

    async def _signalled(self) -> bool:
        """Whether a run's waiting steps were given a signal (written into its spec)."""
        for run in self.runs.values():
            waiting = run.waiting_for()
            if run.gone or run.status.finished or not waiting:
                continue
            given = await self.signals.answer(waiting=waiting)
            if given:
                run.spec["signals"] = {**(run.spec.get("signals") or {}), **given}
                run.generation += 1
                run.due = True
                return True
        return False

    def _next_timer(self) -> datetime | None:
        timers = [timer for run in self.runs.values() if not run.gone for timer in run.timers]
        return min(timers, default=None)

    def _why_stuck(self) -> str:
        waits = [
            f"step {step} waits for signal {signal}"
            for run in self.runs.values()
            for step, signal in run.waiting_for().items()
        ]
        if waits:
            return "; ".join(waits) + " and none was given"
        return "nothing is under way and nothing is to come"

    # -- one plan --

    def _plan(self, run: LocalRun) -> None:
        now = self.clock.now()
        run.timers = {timer for timer in run.timers if timer > now}
        view = RunView(
            name=run.name,
            spec=WorkflowRunSpec.model_validate(run.spec),
            status=run.status,
            generation=run.generation,
            created_at=run.created_at,
            namespace=self.options.namespace,
            depth=run.depth,
            max_descendants=run.max_descendants,
        )
        decision = plan(run=view, observed=self._observe(run), now=now, options=self.options.engine)
        self.values.update({digest: encoded.value for digest, encoded in decision.values.items()})
        before = run.status
        run.status = WorkflowRunStatus.model_validate(decision.status.to_wire())
        run.due = run.status != before  # planned again until it settles, as a status write would
        if run.due and run.parent is not None:
            run.parent.due = True
        self._keep_history(run)
        self._note_transitions(run, now=now)
        self._act(run, decision)

    def _observe(self, run: LocalRun) -> Observations:
        status = run.status
        results, run.results = tuple(run.results), []
        spec = self.options.workflows.specs.get(run.workflow)
        return Observations(
            workflow=WorkflowView(spec=spec, generation=WORKFLOW_GENERATION) if spec else None,
            workflows=self.options.workflows.specs,
            handlers=self.handlers,
            results=results,
            handlers_running=frozenset(key for key, task in run.attempts.items() if not task.done()),
            jobs_running=frozenset(node for node, task in run.jobs.values() if not task.done()),
            children=self._children_of(run),
            history_written_through=status.history_seq,
            values=self.values,
            cached={  # a local run keeps no outputs from earlier runs
                node.id: None
                for node in status.nodes
                if node.cache_key and node.phase == NodePhase.PENDING and node.attempts == node.budget_from
            },
        )

    def _children_of(self, run: LocalRun) -> dict[str, ChildRun]:
        children = {}
        for node in run.status.nodes:
            if node.type != NodeType.WORKFLOW or node.phase != NodePhase.RUNNING or node.child is None:
                continue
            child = self.runs.get(node.child)
            seen = self._child_view(child) if child is not None else self.stubbed_children.get(node.child)
            if seen is not None:
                children[node.id] = seen
        return children

    def _child_view(self, child: LocalRun) -> ChildRun:
        status = child.status
        summary = next((c for c in status.conditions if c.type == "Succeeded"), None)
        phase = status.phase
        if child.spec.get("suspend") and phase == RunPhase.RUNNING:
            phase = RunPhase.SUSPENDED
        return ChildRun(
            phase=phase,
            suspended=bool(child.spec.get("suspend")),
            output=status.output,
            reason=summary.reason if summary else "",
            message=summary.message if summary else "",
            cause=status.cause,
            descendants=status.descendants or 0,
        )

    def _keep_history(self, run: LocalRun) -> None:
        last = run.history[-1].seq if run.history else 0
        run.history += [record for record in run.status.pending_history if record.seq > last]

    def _note_transitions(self, run: LocalRun, *, now: datetime) -> None:
        for node in run.status.nodes:
            seen = run.nodes.get(node.id)
            run.nodes[node.id] = node
            if seen is not None and (seen.phase, seen.attempts) == (node.phase, node.attempts):
                continue
            failed = node.phase in (NodePhase.FAILED, NodePhase.RETRYING)
            transition = Transition(
                offset=self.clock.offset(now),
                path=(*run.path, node.id),
                phase=node.phase,
                attempt=node.attempts,
                error=node.last_error if failed else None,
            )
            self.transitions.append(transition)
            self.on_transition(transition)

    # -- the actions --

    def _act(self, run: LocalRun, decision: Decision) -> None:
        for action in decision.actions:
            match action:
                case PostEvent():
                    run.events.append(action)
                case WakeAt():
                    run.timers.add(action.when)
                case RunHandler():
                    self._start_handler(run, action)
                case CreateJob():
                    self._start_job(run, action)
                case CreateChildRun():
                    self._create_child(run, action)
                case ControlChildRun():
                    self._control_child(action)
                case CancelHandler():
                    cancelled = run.attempts.pop((action.node, action.attempt), None)
                    if cancelled is not None:
                        cancelled.cancel()
                case DeleteJob():
                    _, job = run.jobs.pop(action.name, (None, None))
                    if job is not None:
                        job.cancel()
                case DeleteRun():
                    run.gone = True
                case _:
                    assert_never(action)

    def _context(self, run: LocalRun, node: str, attempt: int) -> TaskContext:
        return TaskContext(
            namespace=self.options.namespace, run=run.name, run_uid=run.uid, task=node, attempt=attempt
        )

    def _start_handler(self, run: LocalRun, action: RunHandler) -> None:
        key = (action.node, action.attempt)
        if key not in run.attempts:
            attempt = self.steps.run_handler(action, self._context(run, action.node, action.attempt))
            run.attempts[key] = asyncio.create_task(attempt, name=f"seqflow-local-{run.name}-{action.node}")

    def _start_job(self, run: LocalRun, action: CreateJob) -> None:
        if action.name in run.jobs:
            return  # created again: it is the same Job
        attempt = self.steps.run_job(
            action,
            input=self._resolved(action.input),
            context=self._context(run, action.node, action.attempt),
        )
        run.jobs[action.name] = (
            action.node,
            asyncio.create_task(attempt, name=f"seqflow-local-{action.name}"),
        )

    def _create_child(self, parent: LocalRun, action: CreateChildRun) -> None:
        if action.name in self.runs or action.name in self.stubbed_children:
            return  # created again: it is the same run
        stub = self.options.stub_for(action.node)
        if stub is not None:
            self.stubbed_children[action.name] = ChildRun(
                phase=RunPhase.SUCCEEDED, suspended=False, output=stub, reason="Succeeded"
            )
            parent.due = True
            return
        spec: JsonObject = {"workflowRef": action.workflow.to_wire()}
        spec["inputRef" if ref_of(action.input) is not None else "input"] = action.input
        spec |= {"suspend": True} if action.suspend else {}
        spec |= {"signals": dict(self.options.signals)} if self.options.signals else {}
        self.runs[action.name] = LocalRun(
            name=action.name,
            spec=spec,
            path=(*parent.path, action.node),
            created_at=self.clock.now(),
            parent=parent,
            depth=action.depth,
            max_descendants=action.max_descendants,
        )

    def _control_child(self, action: ControlChildRun) -> None:
        child = self.runs.get(action.name)
        if child is None:
            return
        if action.suspend is not None:
            child.spec["suspend"] = action.suspend
        if action.cancel is not None:
            child.spec["cancel"] = action.cancel
        child.generation += 1
        child.due = True

    def _resolved(self, value: JsonObject) -> JsonObject:
        ref = ref_of(value)
        return value if ref is None else self.values[ref.digest]

    # -- the result --

    def result(self, run: LocalRun, *, wall_seconds: float, stuck: str | None = None) -> LocalResult:
        status = run.status
        summary = next((c for c in status.conditions if c.type == "Succeeded"), None)
        end = status.finished_at or self.clock.now()
        started = status.started_at or run.created_at
        return LocalResult(
            name=run.name,
            uid=run.uid,
            workflow=run.workflow,
            phase=status.phase,
            reason=summary.reason if summary else "",
            message=summary.message if summary else "",
            output=None if status.output is None else self._resolved(status.output),
            steps={id: self._step(run, node, wall_seconds=wall_seconds) for id, node in run.nodes.items()},
            history=tuple(run.history),
            events=tuple(run.events),
            transitions=tuple(t for t in self.transitions if t.path[: len(run.path)] == run.path),
            virtual_seconds=(end - started).total_seconds(),
            wall_seconds=wall_seconds,
            stuck=stuck,
        )

    def _step(self, run: LocalRun, node: NodeStatus, *, wall_seconds: float) -> StepResult:
        outputs = [r.details.get("output") for r in run.history if r.task == node.id and r.type in OUTPUTS]
        output = outputs[-1] if outputs else node.output
        child = self.runs.get(node.child or "")
        return StepResult(
            id=node.id,
            phase=node.phase,
            attempts=node.attempts,
            output=None if output is None else self._resolved(output),
            error=node.last_error,
            run=None if child is None else self.result(child, wall_seconds=wall_seconds),
        )


async def run_local(
    options: LocalOptions,
    *,
    signals: SignalSource | None = None,
    on_transition: TransitionSink | None = None,
) -> LocalResult:
    """Run the main Workflow of `options` to its end (or until it cannot go on: `stuck`)."""
    began = time.monotonic()
    world = LocalWorld(
        options=options, signals=signals or NoSignals(), on_transition=on_transition or _ignore
    )
    spec: JsonObject = {"workflowRef": options.workflows.main_ref.to_wire(), "input": dict(options.input)}
    spec |= {"signals": dict(options.signals)} if options.signals else {}
    top = LocalRun(name=options.run_name, spec=spec, path=(), created_at=world.clock.now())
    world.runs[top.name] = top
    try:
        stuck = await world.drive(top)
    finally:
        await world.close()
    return world.result(top, wall_seconds=time.monotonic() - began, stuck=stuck)


def _ignore(transition: Transition) -> None:
    """No one follows the transitions."""
