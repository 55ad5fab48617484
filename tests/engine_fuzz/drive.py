"""The shell and the world around a fuzzed run: `Driver` drives it through `plan()` to its end.

Each round it observes the world, plans, checks the decision (`properties.check_decision`), writes
the status (through its wire form, as the API server stores it) and carries out the actions:
in-process attempts and Jobs run for some rounds and succeed (with random outputs), fail, fail
for good or are interrupted (neither running nor with a result); child runs go through their
phases to an end, follow suspend and cancel; creates are refused or blocked now and then. For
its first rounds it also steers the run as users do (suspend and resume, cancel, retry once it
ended, signals with object payloads, deletion, the Workflow edited or deleted, hand-overs and an
unreadable journal, stale results) and moves the clock to the next WakeAt or far beyond; then it
stops steering, resumes the run, sends every signal and answers everything, and the run must
reach a final phase within a bound of rounds without ever stalling silently.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from seqflow.api.models import (
    FailureCause,
    NodePhase,
    NodeType,
    PinnedTask,
    RunPhase,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowSpec,
)
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
from tests.engine_fuzz.generate import HANDLERS, SIGNALS, T0, WORKFLOW, Case, json_object, make_case, workflow
from tests.engine_fuzz.properties import ACTIVE, STARTS, Ledger, Violation, check_decision

RUN, NAMESPACE = "fz", "ns"


# ----- the world: attempts, Jobs and child runs -----


@dataclass
class Execution:
    """An in-process attempt or a Job: it runs `rounds` more rounds, then ends with `result`
    (None: it vanishes without one, interrupted)."""

    node: str
    attempt: int
    rounds: int
    result: AttemptResult | None


@dataclass
class Child:
    """A child run: it goes through `phases`, one a round (not while suspended), and ends."""

    node: str
    phases: list[RunPhase | None]
    end: ChildRun
    suspended: bool
    cancel: bool = False
    seen: int = 0

    def view(self) -> ChildRun:
        if self.seen < len(self.phases):
            phase = self.phases[self.seen]
            if self.suspended and phase == RunPhase.RUNNING:
                phase = RunPhase.SUSPENDED
            return ChildRun(phase=phase, suspended=self.suspended)
        return replace(self.end, suspended=self.suspended)

    @property
    def finished(self) -> bool:
        return self.seen >= len(self.phases)


@dataclass
class Coverage:
    """What the runs went through, summed over runs (the bench prints it)."""

    kinds: Counter[str] = field(default_factory=Counter)  # step kinds written in Workflows
    started: Counter[str] = field(default_factory=Counter)  # node types that started an attempt
    phases: Counter[str] = field(default_factory=Counter)  # final phases reached
    reasons: Counter[str] = field(default_factory=Counter)  # their Succeeded condition's reason
    steering: Counter[str] = field(default_factory=Counter)  # spec changes and stray observations
    plans: int = 0

    def add(self, other: Coverage) -> None:
        for mine, theirs in (
            (self.kinds, other.kinds),
            (self.started, other.started),
            (self.phases, other.phases),
            (self.reasons, other.reasons),
            (self.steering, other.steering),
        ):
            mine.update(theirs)
        self.plans += other.plans


def kind_of(task: dict[str, Any]) -> str:
    """A task's kind as the coverage counts it (waits with and without a timeout apart)."""
    for kind, key in (("handler", "handler"), ("job", "job"), ("sleep", "sleep"), ("parallel", "parallel")):
        if key in task:
            return kind
    if "wait" in task:
        return "wait+timeout" if "timeoutSeconds" in task["wait"] else "wait"
    return "workflow"


# ----- the driver: the shell around plan() -----


class Driver:
    """Drives one run of a case to its end, checking every decision (see the module docstring)."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.rng = random.Random(case.seed * 7919 + 1)
        self.spec: dict[str, Any] = {"workflowRef": {"name": WORKFLOW}, "input": case.input}
        if case.ttl is not None:
            self.spec["ttlSecondsAfterFinished"] = case.ttl
        self.status = WorkflowRunStatus()
        self.now = T0
        self.round = 0
        self.workflow: WorkflowView | None = WorkflowView(
            spec=WorkflowSpec.model_validate(case.workflow), generation=3
        )
        self.workflows = {k: WorkflowSpec.model_validate(v) for k, v in case.workflows.items()}
        self.handlers: dict[tuple[str, int], Execution] = {}
        self.jobs: dict[str, Execution] = {}
        self.children: dict[str, Child] = {}
        self.refused: list[AttemptResult] = []  # child runs the API server refused
        self.blocked: dict[str, str] = {}
        self.stale: list[AttemptResult] = []  # results of attempts long over, seen again
        self.deleted = False
        self.gone = False  # deleted for good (DeleteRun, or a deletion finished)
        self.flushed = 0
        self.hold = False
        self.progress_unknown = False
        self.queued = case.queued_rounds
        self.settling = False
        self.coverage = Coverage()
        self.trace: list[str] = []
        self.last: Decision | None = None
        # properties kept across rounds
        self.ledger = Ledger()
        for t in case.workflow["tasks"]:
            self.coverage.kinds[kind_of(t)] += 1
            if "when" in t:
                self.coverage.kinds["when"] += 1
            if "compensate" in t:
                self.coverage.kinds["compensate"] += 1

    # -- the run's life --

    def run(self) -> Coverage:
        for _ in range(self.case.steer_rounds):
            if self.gone:
                break
            self.steer()
            self.step()
        self.settle()
        if self.status.phase is not None:
            self.coverage.phases[str(self.status.phase)] += 1
            summary = next((c for c in self.status.conditions if c.type == "Succeeded"), None)
            self.coverage.reasons[summary.reason if summary else "-"] += 1
        self.coverage.started.update(self.ledger.started)
        return self.coverage

    def settle(self) -> None:
        """Stop steering: resume, send every signal, answer everything; the run must finish."""
        self.settling = True
        self.hold = self.progress_unknown = False
        self.spec["suspend"] = False
        signals = dict(self.spec.get("signals") or {})
        for name in self.waits():
            signals.setdefault(name, json_object(self.rng, most=2))
        self.spec["signals"] = signals
        bound = 40 + 10 * attempt_budget(self.status.pinned_tasks or [])
        for _ in range(bound):
            if self.gone:
                return
            decision = self.step()
            if self.status.finished:
                self.step()  # and it stays so
                return
            if not self.outstanding(decision):
                raise Violation(
                    "stalled",
                    f"the run is {self.status.phase} with nothing under way, no WakeAt and nothing "
                    f"left to answer: {self.summary()}",
                )
        raise Violation("unfinished", f"not final after {bound} rounds of answers: {self.summary()}")

    def step(self) -> Decision:
        """One round: observe, plan, check, write the status, act, let time pass."""
        self.round += 1
        observed = self.observe()
        run = RunView(
            name=RUN,
            spec=WorkflowRunSpec.model_validate(self.spec),
            status=self.status,
            generation=self.round,
            created_at=T0,
            namespace=NAMESPACE,
            labels=self.case.labels,
            depth=self.case.depth,
            max_descendants=self.case.max_descendants,
        )
        try:
            decision = plan(run=run, observed=observed, now=self.now, options=self.case.options)
        except Exception as error:
            raise Violation("raised", f"plan() raised {type(error).__name__}: {error}") from error
        self.coverage.plans += 1
        self.last = decision
        self.note(observed, decision)
        check_decision(self.ledger, run, observed, decision, now=self.now)
        self.status = WorkflowRunStatus.model_validate(decision.status.to_wire())
        if observed.deleted:
            self.gone = True
            return decision
        self.act(decision)
        if not self.gone and not self.status.finished and not self.outstanding(decision):
            self.check_fixpoint(run, observed)
        self.advance(decision)
        return decision

    def check_fixpoint(self, run: RunView, observed: Observations) -> None:
        """A decision that leaves nothing to wake the run (no timer, nothing under way) must leave
        nothing to do either: planned again as it is, at the same time, the run does not move.
        Otherwise it has stalled silently: the shell would not look at it again."""
        quiet = replace(
            observed,
            results=(),
            handlers_running=frozenset(),
            jobs_running=frozenset(),
            children={},
            blocked={},
            history_written_through=self.flushed,
            hold=False,
            progress_unknown=False,
        )
        again = plan(
            run=replace(run, status=self.status), observed=quiet, now=self.now, options=self.case.options
        )
        moved = [type(a).__name__ for a in again.actions if isinstance(a, (*STARTS, WakeAt))]
        if moved or again.status.nodes != self.status.nodes or again.status.phase != self.status.phase:
            raise Violation(
                "stalled",
                f"the decision asks for no wake-up and leaves nothing under way, yet planned again "
                f"as it is the run moves: {self.summary()} -> {self.summary(again.status)} {moved}",
            )

    # -- steering: the user's changes to the spec, and stray observations --

    def steer(self) -> None:
        rng, spec, steering = self.rng, self.spec, self.coverage.steering
        if rng.random() < 0.08:
            spec["suspend"] = rng.choice([True, True, False, None])
            steering[f"suspend={spec['suspend']}"] += 1
        if rng.random() < 0.02 and not spec.get("cancel"):
            spec["cancel"] = True
            steering["cancel"] += 1
        finished_badly = self.status.phase in (RunPhase.FAILED, RunPhase.CANCELLED)
        if (finished_badly and rng.random() < 0.35) or rng.random() < 0.01:
            spec["retry"] = (spec.get("retry") or 0) + 1
            steering["retry" if finished_badly else "retry while not failed"] += 1
        if rng.random() < 0.1:
            waits = self.waits()
            name = rng.choice(waits) if waits and rng.random() < 0.8 else rng.choice(SIGNALS)
            spec["signals"] = {**(spec.get("signals") or {}), name: json_object(rng, most=2)}
            steering["signal"] += 1
        if rng.random() < 0.01:
            self.deleted = True
            steering["deleted"] += 1
        if rng.random() < 0.02:  # the Workflow edited or deleted mid-run: the run goes on as pinned
            edited = WorkflowView(spec=WorkflowSpec.model_validate(workflow(rng)), generation=4)
            self.workflow = rng.choice([edited, None])
            steering["workflow edited" if self.workflow else "workflow deleted"] += 1
        self.hold = rng.random() < 0.03
        self.progress_unknown = rng.random() < 0.03
        if rng.random() < 0.05 and self.status.nodes:
            node = rng.choice(self.status.nodes)  # a result of an attempt that is over, again
            last = node.attempts - 1 if node.phase in ACTIVE else node.attempts  # (never the open one)
            self.stale.append(AttemptResult(node=node.id, attempt=rng.randint(0, max(last, 0)), output={}))
            steering["stale result"] += 1
        if rng.random() < 0.01:
            self.stale.append(AttemptResult(node="Ghost", attempt=1, error="of no step"))

    def waits(self) -> list[str]:
        """The signals the run's steps wait for (as pinned, else as its Workflow says now)."""
        if self.status.pinned_tasks is not None:
            return [t.wait.signal for t in self.status.pinned_tasks if t.wait is not None]
        return [t.wait.signal for t in self.workflow.spec.tasks if t.wait] if self.workflow else []

    # -- observing the world --

    def observe(self) -> Observations:
        status = self.status
        results: list[AttemptResult] = [*self.refused, *self.stale]
        self.refused, self.stale = [], []
        running: set[tuple[str, int]] = set()
        for key, execution in list(self.handlers.items()):
            if execution.rounds > 0:
                running.add(key)
            else:
                del self.handlers[key]
                if execution.result is not None:
                    results.append(execution.result)
        jobs_running: set[str] = set()
        children: dict[str, ChildRun] = {}
        for node in status.nodes:
            if node.phase != NodePhase.RUNNING:
                continue
            job = self.jobs.get(node.job or "")
            if node.type == NodeType.JOB and job is not None:
                if job.rounds > 0:
                    jobs_running.add(node.id)
                elif job.result is None:
                    del self.jobs[node.job or ""]  # lost: the engine creates it again
                else:  # (read from the Job as the attempt of the node, as the shell does)
                    results.append(replace(job.result, node=node.id, attempt=node.attempts))
            child = self.children.get(node.child or "")
            if node.type == NodeType.WORKFLOW and child is not None:
                children[node.id] = child.view()
        blocked, self.blocked = self.blocked, {}
        flushed = status.history_seq if self.settling or self.rng.random() < 0.7 else self.flushed
        self.flushed = max(self.flushed, flushed)
        seen = self.case.late_workflow == 0 or 0 < self.case.late_workflow < self.round
        return Observations(
            workflow=self.workflow if seen or self.status.pinned_tasks is not None else None,
            workflows=self.workflows,
            handlers=HANDLERS,
            results=tuple(results),
            handlers_running=frozenset(running),
            jobs_running=frozenset(jobs_running),
            children=children,
            blocked=blocked,
            history_written_through=self.flushed,
            deleted=self.deleted,
            queued=(1, 2) if self.queued > 0 and self.round <= self.queued else None,
            hold=self.hold,
            progress_unknown=self.progress_unknown,
        )

    # -- carrying out the actions --

    def act(self, decision: Decision) -> None:
        for action in decision.actions:
            if isinstance(action, RunHandler):
                self.handlers[(action.node, action.attempt)] = self.execution(action.node, action.attempt)
            elif isinstance(action, CreateJob):
                if action.name not in self.jobs and not self.maybe_blocked(action.node):
                    self.jobs[action.name] = self.execution(action.node, action.attempt)
            elif isinstance(action, CreateChildRun):
                self.create_child(action)
            elif isinstance(action, ControlChildRun):
                child = self.children.get(action.name)
                if child is not None and action.suspend is not None:
                    child.suspended = action.suspend
                if child is not None and action.cancel:
                    child.cancel = True
            elif isinstance(action, CancelHandler):
                self.handlers.pop((action.node, action.attempt), None)
            elif isinstance(action, DeleteJob):
                self.jobs.pop(action.name, None)
            elif isinstance(action, DeleteRun):
                self.gone = True

    def execution(self, node: str, attempt: int) -> Execution:
        """How a new attempt goes: how long it runs and how it ends."""
        rng, odds = self.rng, self.case.odds
        rounds = rng.randint(1, 4) if rng.random() < odds.slow and not self.settling else rng.randint(0, 1)
        roll = rng.random()
        if roll < odds.interrupt:
            return Execution(node, attempt, rounds, None)
        roll -= odds.interrupt
        if roll < odds.permanent:
            error = AttemptResult(node=node, attempt=attempt, error="bad input", permanent=True)
            return Execution(node, attempt, rounds, error)
        roll -= odds.permanent
        if roll < odds.fail:
            reason = "DeadlineExceeded" if rng.random() < 0.2 else None
            error = AttemptResult(
                node=node, attempt=attempt, error="boom " * rng.randint(1, 3), reason=reason
            )
            return Execution(node, attempt, rounds, error)
        return Execution(
            node, attempt, rounds, AttemptResult(node=node, attempt=attempt, output=json_object(rng))
        )

    def maybe_blocked(self, node: str) -> bool:
        if self.rng.random() < 0.04:
            self.blocked[node] = "an object of that name exists and is not this run's"
            self.coverage.steering["blocked"] += 1
            return True
        return False

    def create_child(self, action: CreateChildRun) -> None:
        rng = self.rng
        if action.name in self.children or self.maybe_blocked(action.node):
            return
        if rng.random() < 0.03:
            refusal = f"the child run was refused: {action.name}: spec.input: Invalid value"
            self.refused.append(
                AttemptResult(node=action.node, attempt=action.attempt, error=refusal, permanent=True)
            )
            return
        phases: list[RunPhase | None] = [None, RunPhase.PENDING] + [RunPhase.RUNNING] * rng.randint(0, 3)
        script = phases[: rng.randint(1, len(phases))]
        if rng.random() < 0.1:
            script.append(RunPhase.COMPENSATING)
        self.children[action.name] = Child(action.node, script, self.child_end(action), action.suspend)

    def child_end(self, action: CreateChildRun) -> ChildRun:
        """How a child run ends: Succeeded with an output, Failed (for good or not, with the
        cause of a failure for good in it or in a run beneath it) or Cancelled; with the runs
        created beneath it (at most its share)."""
        rng = self.rng
        beneath = rng.randint(0, max(action.max_descendants - 1, 0)) if rng.random() < 0.3 else 0
        roll = rng.random()
        if roll < 1 - self.case.odds.fail - 0.15:
            output = json_object(rng)
            return ChildRun(RunPhase.SUCCEEDED, False, output=output, reason="Succeeded", descendants=beneath)
        if roll < 0.95:
            reason = rng.choice(
                [
                    "TaskFailed",
                    "Compensated",
                    "InputInvalid",
                    "WorkflowNotFound",
                    "DepthExceeded",
                    "TooManyRuns",
                ]
            )
            cause = None
            if rng.random() < 0.3:
                where = rng.choice([action.name, f"{action.name}-inner-1"])
                cause = FailureCause(run=where, reason=reason, message="Task Inner failed (permanent error)")
            return ChildRun(
                RunPhase.FAILED,
                False,
                reason=reason,
                message="Task Inner failed",
                cause=cause,
                descendants=beneath,
            )
        return ChildRun(
            RunPhase.CANCELLED, False, reason="Cancelled", message="cancelled", descendants=beneath
        )

    # -- time --

    def advance(self, decision: Decision) -> None:
        """Let a round pass: attempts run on, child runs move on, the clock goes forward (to the
        earliest WakeAt when nothing else is under way, now and then much further)."""
        for execution in [*self.handlers.values(), *self.jobs.values()]:
            execution.rounds = max(execution.rounds - 1, 0)
        for child in self.children.values():
            if child.cancel and not child.finished:
                child.seen = len(child.phases)
                child.end = ChildRun(phase=RunPhase.CANCELLED, suspended=child.suspended, reason="Cancelled")
            elif not child.suspended and not child.finished:
                child.seen += 1
        if not self.settling and self.rng.random() < self.case.odds.lost:
            self.lose_one()
        self.tick(decision)

    def lose_one(self) -> None:
        """A Job or a child run disappears (deleted by someone): the engine creates it again."""
        names = [*self.jobs, *self.children]
        if not names:
            return
        name = self.rng.choice(names)
        if name in self.jobs:
            self.jobs[name].result, self.jobs[name].rounds = None, 0
        else:
            del self.children[name]
        self.coverage.steering["lost"] += 1

    def tick(self, decision: Decision) -> None:
        """The clock goes on: while settling, a second while something runs, else to the next
        WakeAt; before, a jump to the WakeAt or further, or a little, or not at all."""
        wakes = [a.when for a in decision.actions if isinstance(a, WakeAt)]
        busy = self.handlers or any(e.rounds for e in self.jobs.values()) or self.refused
        if self.settling:
            self.now += (
                timedelta(seconds=1) if busy or not wakes else max(min(wakes) - self.now, timedelta(0))
            )
            return
        roll = self.rng.random()
        if wakes and roll < 0.5:
            self.now = max(self.now, min(wakes) + timedelta(seconds=self.rng.choice([0, 0, 0.5, 3])))
        elif roll < 0.55:
            self.now += timedelta(seconds=self.rng.randint(10, 5000))
        elif roll < 0.8:
            self.now += timedelta(seconds=self.rng.choice([0.1, 1, 2]))

    def outstanding(self, decision: Decision) -> bool:
        """Whether something will make the shell look at the run again: a timer, an attempt, Job
        or child run under way, a result or refusal to come, a blocked create to retry."""
        if any(isinstance(a, WakeAt | RunHandler | CreateJob | CreateChildRun) for a in decision.actions):
            return True
        if self.handlers or self.refused or self.blocked or self.round < self.queued:
            return True
        if self.hold or self.progress_unknown:  # the hand-over ends, the journal comes back
            return True
        for node in self.status.nodes:
            if node.phase == NodePhase.RUNNING and node.type == NodeType.JOB and node.job in self.jobs:
                return True
            child = self.children.get(node.child or "")
            if node.phase == NodePhase.RUNNING and child is not None:
                return True  # it changes or ends, and wakes its parent
        return self.flushed < self.status.history_seq

    # -- the trace printed with a failure --

    def note(self, observed: Observations, decision: Decision) -> None:
        seen = []
        if observed.results:
            seen.append(
                "results="
                + ",".join(f"{r.node}#{r.attempt}{'+' if r.succeeded else '!'}" for r in observed.results)
            )
        if observed.handlers_running:
            seen.append(f"running={sorted(observed.handlers_running)}")
        if observed.jobs_running:
            seen.append(f"jobs={sorted(observed.jobs_running)}")
        if observed.children:
            seen.append("children=" + ",".join(f"{k}:{c.phase}" for k, c in observed.children.items()))
        for flag in ("deleted", "hold", "progress_unknown"):
            if getattr(observed, flag):
                seen.append(flag)
        if observed.blocked:
            seen.append(f"blocked={sorted(observed.blocked)}")
        if observed.workflow is None:
            seen.append("no workflow")
        spec = {k: v for k, v in self.spec.items() if k in ("suspend", "cancel", "retry") and v}
        if self.spec.get("signals"):
            spec["signals"] = sorted(self.spec["signals"])
        actions = [
            type(a).__name__ + (f"({a.node}#{a.attempt})" if isinstance(a, STARTS) else "")
            for a in decision.actions
            if not isinstance(a, PostEvent)
        ]
        self.trace.append(
            f"round {self.round} t+{(self.now - T0).total_seconds():g}s spec={spec} "
            f"saw {' '.join(seen) or '-'} -> {self.summary(decision.status)} actions={actions}"
        )

    def summary(self, status: WorkflowRunStatus | None = None) -> str:
        status = status or self.status
        nodes = " ".join(f"{n.id}:{n.phase}/{n.attempts}" for n in status.nodes)
        summary = next((c for c in status.conditions if c.type == "Succeeded"), None)
        reason = summary.reason if summary else "-"
        return f"{status.phase} ({reason}) [{nodes}]"


def attempt_budget(steps: list[PinnedTask]) -> int:
    """The most attempts a run of `steps` can make without a retry of the run (its rounds bound)."""
    total = 0
    for step in steps:
        total += step.retry.max_retries + 1 + sum(m.retry.max_retries + 1 for m in step.members or [])
        if step.compensate is not None:
            total += step.compensate.retry.max_retries + 1
    return total


# ----- one run -----


@dataclass
class FuzzFailure(Exception):
    """A property that failed in the run of a seed: all it takes to reproduce it."""

    seed: int
    kind: str
    message: str
    case: Case
    trace: list[str]  # a line a round
    status: WorkflowRunStatus  # the status of the last decision

    def __str__(self) -> str:
        return (
            f"seed {self.seed}: {self.kind}: {self.message}\n"
            f"reproduce: python bench/engine_fuzz.py --runs 1 --seed {self.seed} --trace\n"
            f"case: {self.case.describe()}\n"
            "last rounds:\n  " + "\n  ".join(self.trace[-30:])
        )


def fuzz(seed: int) -> Coverage:
    """Run the case of `seed` to its end; a `FuzzFailure` if a property fails."""
    case = make_case(seed)
    driver = Driver(case)
    try:
        return driver.run()
    except Violation as violation:
        status = driver.last.status if driver.last else driver.status
        raise FuzzFailure(seed, violation.kind, violation.message, case, driver.trace, status) from violation


def trace(seed: int) -> list[str]:
    """The rounds of the run of `seed`, whether it fails or not (for a look at one case)."""
    driver = Driver(make_case(seed))
    try:
        driver.run()
    except Violation as violation:
        driver.trace.append(f"FAILED {violation}")
    return driver.trace
