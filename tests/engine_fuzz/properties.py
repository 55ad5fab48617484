"""The properties every `plan()` decision of a fuzzed run must have.

`check_decision` checks one decision against the run it was planned from and what was observed;
a `Violation` names the property that failed. `Ledger` is what the checks remember of the run
across its rounds (attempts seen, attempts ended, Job and child names given out).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from seqflow.api.models import (
    FINISHED,
    ConditionStatus,
    NodePhase,
    NodeStatus,
    NodeType,
    RetryPolicy,
    RunPhase,
    WorkflowRunStatus,
)
from seqflow.engine import (
    CancelHandler,
    ControlChildRun,
    CreateChildRun,
    CreateJob,
    Decision,
    DeleteJob,
    EngineOptions,
    Observations,
    RunHandler,
    RunView,
    WakeAt,
)
from seqflow.engine.expressions import ConditionError, holds

ACTIVE = (NodePhase.RUNNING, NodePhase.WAITING, NodePhase.RETRYING)
DONE = (NodePhase.SUCCEEDED, NodePhase.SKIPPED)
FAILED_OR_CANCELLED = (NodePhase.FAILED, NodePhase.CANCELLED)
STARTS = (RunHandler, CreateJob, CreateChildRun)


@dataclass
class Ledger:
    """What the checks remember of one run across its rounds."""

    most_attempts: dict[str, int] = field(default_factory=dict)  # node -> the most attempts seen
    ended: set[tuple[str, int]] = field(default_factory=set)  # (node, attempt) that have ended
    names: dict[str, tuple[str, int]] = field(default_factory=dict)  # Job/child name -> (node, attempt)
    executed: set[tuple[str, int]] = field(default_factory=set)  # in-process attempts handed out
    started: Counter[str] = field(default_factory=Counter)  # attempts started, by node type
    children: set[str] = field(default_factory=set)  # child runs created


class Violation(AssertionError):
    """A property of the engine that did not hold; `kind` names the property."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def check_decision(
    ledger: Ledger, run: RunView, observed: Observations, decision: Decision, *, now: datetime
) -> None:
    """Every property of one plan() step; a `Violation` names the first that fails."""
    status = decision.status
    check_wire(status)
    check_summary(status)
    check_nodes(ledger, run, status)
    check_starts(ledger, run, observed, decision)
    check_policy(run, observed, decision, now=now)
    check_cancels(run, observed, decision)
    check_descendants(ledger, run, decision)
    check_finished(run, observed, decision)


def check_wire(status: WorkflowRunStatus) -> None:
    """The status is what the API server stores and gives back: its wire form is JSON and reads
    back as the same status."""
    wire = status.to_wire()
    try:
        json.dumps(wire, allow_nan=False)
    except ValueError as error:
        raise Violation("wire", f"the status is not JSON: {error}") from None
    again = WorkflowRunStatus.model_validate(wire)
    if again != status:
        raise Violation("wire", "the status does not read back as itself from its wire form")


def check_summary(status: WorkflowRunStatus) -> None:
    """The phase, the Succeeded condition, current, progress, retries and the activity log agree."""
    if status.phase not in set(RunPhase):
        raise Violation("phase", f"phase {status.phase!r} is not a RunPhase")
    summary = [c for c in status.conditions if c.type == "Succeeded"]
    if len(summary) != 1:
        raise Violation("condition", f"{len(summary)} Succeeded conditions once the run was planned")
    expected = {RunPhase.SUCCEEDED: ConditionStatus.TRUE, RunPhase.FAILED: ConditionStatus.FALSE}
    expected[RunPhase.CANCELLED] = ConditionStatus.FALSE
    if summary[0].status != expected.get(status.phase, ConditionStatus.UNKNOWN):
        raise Violation("condition", f"Succeeded is {summary[0].status} in phase {status.phase}")
    active = [n.id for n in status.nodes if n.phase in ACTIVE]
    if status.current != active:
        raise Violation("current", f"current {status.current} but the active nodes are {active}")
    if status.finished and active:
        raise Violation("finished", f"{status.phase} with nodes still active: {active}")
    if status.finished != (status.finished_at is not None):
        raise Violation("finished", f"{status.phase} with finishedAt {status.finished_at}")
    retries = sum(max(n.attempts - 1, 0) for n in status.nodes)
    if status.retries != retries:
        raise Violation("retries", f"retries {status.retries}, the nodes' attempts say {retries}")
    if status.phase == RunPhase.SUCCEEDED and status.cause is not None:
        raise Violation("cause", f"Succeeded with a failure cause: {status.cause}")
    seqs = [r.seq for r in status.pending_history]
    if seqs != list(range(status.history_seq - len(seqs) + 1, status.history_seq + 1)):
        raise Violation("history", f"pending entries {seqs} do not end at historySeq {status.history_seq}")


def check_descendants(ledger: Ledger, run: RunView, decision: Decision) -> None:
    """The count of runs created beneath the run never goes down, and the run creates no more
    child runs than its bound allows; each child gets what is left of it."""
    before, after = run.status.descendants or 0, decision.status.descendants or 0
    if after < before:
        raise Violation("descendants", f"descendants went from {before} to {after}")
    bound = run.max_descendants if run.max_descendants is not None else EngineOptions().max_descendants
    for action in decision.actions:
        if isinstance(action, CreateChildRun):
            ledger.children.add(action.name)
            if action.max_descendants < 0 or action.max_descendants > bound:
                raise Violation(
                    "descendants", f"{action.name} given a share of {action.max_descendants} of {bound}"
                )
    if len(ledger.children) > bound:
        raise Violation(
            "descendants", f"{len(ledger.children)} child runs created, more than the {bound} allowed"
        )


def check_nodes(ledger: Ledger, run: RunView, status: WorkflowRunStatus) -> None:
    """Nodes belong to pinned steps; attempts never go down; an attempt that ended stays ended."""
    steps = {t.name: t for t in status.pinned_tasks or []}
    for node in status.nodes:
        top = node.id.split("/", 1)[0].removesuffix(":compensate")
        if top not in steps:
            raise Violation("nodes", f"node {node.id} of no pinned step")
        if node.attempts < ledger.most_attempts.get(node.id, 0):
            raise Violation(
                "attempts",
                f"node {node.id} has {node.attempts} attempts after {ledger.most_attempts[node.id]}",
            )
        ledger.most_attempts[node.id] = max(ledger.most_attempts.get(node.id, 0), node.attempts)
    after = {n.id: n for n in status.nodes}
    for node in run.status.nodes:
        if node.phase in (NodePhase.RUNNING, NodePhase.WAITING):
            now = after.get(node.id)
            if (
                now is None
                or now.attempts != node.attempts
                or now.phase not in (NodePhase.RUNNING, NodePhase.WAITING)
            ):
                ledger.ended.add((node.id, node.attempts))


def check_starts(ledger: Ledger, run: RunView, observed: Observations, decision: Decision) -> None:
    """What the decision starts is a Running attempt of its status, new unless it is a Job or
    child run created again; a step runs only if its `when` holds; nothing new starts while the
    run is suspended or held."""
    for action in decision.actions:
        if isinstance(action, STARTS):
            check_start(ledger, decision.status, action)
            check_when(run, decision.status, action)
    nodes = {n.id: n for n in decision.status.nodes}
    new = [node.id for node, _ in new_attempts(run, decision.status)]
    if new and (run.spec.suspend or observed.hold):
        why = "suspended" if run.spec.suspend else "held"
        raise Violation("started while held", f"{new} started an attempt while the run is {why}")
    if observed.progress_unknown and any(nodes[i].type == NodeType.HANDLER for i in new):
        raise Violation("started while held", f"{new} started in-process while the progress is unknown")
    for id in new:
        ledger.started[str(nodes[id].type)] += 1
    check_started_with_action(run, decision)


def check_started_with_action(run: RunView, decision: Decision) -> None:
    """An attempt that starts comes with what carries it out: its handler call, its Job or child
    run, its sleep's timer."""
    kinds = {NodeType.HANDLER: RunHandler, NodeType.JOB: CreateJob, NodeType.WORKFLOW: CreateChildRun}
    for node, _ in new_attempts(run, decision.status):
        if node.phase != NodePhase.RUNNING:
            continue  # (a wait, or an attempt that ended at once)
        if node.type == NodeType.SLEEP:
            if not any(isinstance(a, WakeAt) and a.when == node.deadline for a in decision.actions):
                raise Violation("start", f"sleep {node.id} started without a WakeAt at its end")
            continue
        kind = kinds.get(node.type)
        found = [
            a
            for a in decision.actions
            if isinstance(a, STARTS) and (a.node, a.attempt) == (node.id, node.attempts)
        ]
        if kind is not None and not any(isinstance(a, kind) for a in found):
            raise Violation("start", f"{node.id} attempt {node.attempts} started without a {kind.__name__}")


def check_start(ledger: Ledger, status: WorkflowRunStatus, action: Any) -> None:
    """One RunHandler, CreateJob or CreateChildRun: of the node's open attempt, by its name, and
    of an attempt that has not ended (a handler is called once per attempt)."""
    what = f"{type(action).__name__} {action.node}#{action.attempt}"
    node = status.node(action.node)
    if node is None or node.phase != NodePhase.RUNNING or node.attempts != action.attempt:
        raise Violation(
            "start", f"{what} but the status has {f'{node.phase}/{node.attempts}' if node else 'no node'}"
        )
    want = {RunHandler: NodeType.HANDLER, CreateJob: NodeType.JOB, CreateChildRun: NodeType.WORKFLOW}
    if node.type != want[type(action)]:
        raise Violation("start", f"{what} for a node of type {node.type}")
    attempt = (action.node, action.attempt)
    if isinstance(action, CreateJob | CreateChildRun):
        name = node.job if isinstance(action, CreateJob) else node.child
        if action.name != name:
            raise Violation("start", f"{what} named {action.name}, the node's is {name}")
        owner = ledger.names.setdefault(action.name, attempt)
        if owner != attempt:
            raise Violation("reused name", f"{what}: {action.name} is the name of {owner}'s")
    if attempt in ledger.ended:
        raise Violation("attempt again", f"{what}: that attempt ended before")
    if isinstance(action, RunHandler):
        if attempt in ledger.executed:
            raise Violation("attempt again", f"{what} a second time")
        ledger.executed.add(attempt)


def new_attempts(run: RunView, status: WorkflowRunStatus) -> list[tuple[NodeStatus, NodeStatus | None]]:
    """The nodes whose attempts went up in this decision, with what they were before."""
    before = {n.id: n for n in run.status.nodes}
    return [
        (node, before.get(node.id))
        for node in status.nodes
        if node.attempts > (was.attempts if (was := before.get(node.id)) else 0)
    ]


def check_policy(run: RunView, observed: Observations, decision: Decision, *, now: datetime) -> None:
    """Attempts start in order, after their backoff and within their retry budget; a permanent
    failure is not retried; a group runs at most maxParallel members at once."""
    status = decision.status
    for node, was in new_attempts(run, status):
        check_order(status, node)
        if was is not None and was.phase == NodePhase.RETRYING and now < (was.next_retry_at or now):
            raise Violation(
                "backoff", f"{node.id} attempt {node.attempts} started before {was.next_retry_at}"
            )
        policy = policy_of(status, node.id)
        if node.attempts - node.budget_from > policy.max_retries + 1:
            raise Violation(
                "budget", f"{node.id} attempt {node.attempts} past its {policy.max_retries} retries"
            )
    before = {n.id: n for n in run.status.nodes}
    for result in observed.results:
        was, after = before.get(result.node), status.node(result.node)
        open_attempt = was is not None and was.phase == NodePhase.RUNNING and was.attempts == result.attempt
        if result.permanent and open_attempt and after is not None and after.phase not in FAILED_OR_CANCELLED:
            raise Violation("permanent", f"{result.node} failed for good, yet {after.phase}/{after.attempts}")
    for id, child in observed.children.items():
        after = status.node(id)
        for_good = child.phase == RunPhase.CANCELLED or (child.phase == RunPhase.FAILED and child.cause)
        if for_good and before[id].phase == NodePhase.RUNNING and after and after.phase == NodePhase.RETRYING:
            raise Violation(
                "permanent", f"{id}'s child run ended {child.phase} for good, yet the step retries"
            )
    for step in status.pinned_tasks or []:
        members = [status.node(f"{step.name}/{m.name}") for m in step.members or []]
        running = [m.id for m in members if m is not None and m.phase == NodePhase.RUNNING]
        if step.max_parallel is not None and len(running) > step.max_parallel:
            raise Violation("maxParallel", f"{step.name} runs {running}, more than {step.max_parallel}")


def check_order(status: WorkflowRunStatus, node: NodeStatus) -> None:
    """A step starts once the steps before it are done; a compensation while the run is ending,
    of a step that succeeded."""
    steps = status.pinned_tasks or []
    top = node.id.split("/", 1)[0].removesuffix(":compensate")
    if node.id.endswith(":compensate"):
        undone = status.node(top)
        if status.ending is None or undone is None or undone.phase != NodePhase.SUCCEEDED:
            why = f"its step {undone.phase if undone else 'not run'}, ending {status.ending}"
            raise Violation("order", f"{node.id} started, {why}")
        return
    index = next(i for i, t in enumerate(steps) if t.name == top)
    before = [t.name for t in steps[:index] if (n := status.node(t.name)) is None or n.phase not in DONE]
    if before:
        raise Violation("order", f"{node.id} started before {before} were done")


def policy_of(status: WorkflowRunStatus, id: str) -> RetryPolicy:
    """The retry policy of a node: its step's, its member's or its compensation's."""
    step = next(
        t for t in status.pinned_tasks or [] if t.name == id.split("/", 1)[0].removesuffix(":compensate")
    )
    if id.endswith(":compensate") and step.compensate is not None:
        return step.compensate.retry
    member = next((m for m in step.members or [] if f"{step.name}/{m.name}" == id), None)
    return member.retry if member is not None else step.retry


def check_cancels(run: RunView, observed: Observations, decision: Decision) -> None:
    """An open attempt that the decision cancels is stopped: its handler cancelled, its Job
    deleted, its child run cancelled; a running child run follows the run's suspend."""
    nodes = {n.id: n for n in decision.status.nodes}
    actions = [a for a in decision.actions if isinstance(a, CancelHandler | DeleteJob | ControlChildRun)]
    for was in run.status.nodes:
        now = nodes.get(was.id)
        if (
            was.phase not in (NodePhase.RUNNING, NodePhase.WAITING)
            or now is None
            or now.phase != NodePhase.CANCELLED
        ):
            continue
        stop: Any = None  # (only for what was seen under way)
        if was.type == NodeType.HANDLER and (was.id, was.attempts) in observed.handlers_running:
            stop = CancelHandler(was.id, was.attempts)
        elif was.type == NodeType.JOB and was.job and was.id in observed.jobs_running:
            stop = DeleteJob(was.job)
        elif was.type == NodeType.WORKFLOW and was.child and was.id in observed.children:
            stop = ControlChildRun(was.child, cancel=True)
            if observed.children[was.id].phase in FINISHED:
                stop = None
        if stop is not None and stop not in actions:
            raise Violation("stop", f"{was.id}#{was.attempts} cancelled without {stop}")
    suspend = bool(run.spec.suspend)
    for id, child in observed.children.items():
        node = nodes.get(id)
        if (
            node is None
            or node.phase != NodePhase.RUNNING
            or child.phase in FINISHED
            or child.suspended == suspend
        ):
            continue
        if ControlChildRun(node.child or "", suspend=suspend) not in actions:
            raise Violation(
                "suspend", f"child run of {id} suspended={child.suspended}, the run's suspend={suspend}"
            )


def check_when(run: RunView, status: WorkflowRunStatus, action: Any) -> None:
    """A step (or a member of a group) starts only when its `when` holds for its input. Checked for
    expressions that read only `input` and `run` (what `steps` holds depends on the moment)."""
    if action.node.endswith(":compensate"):
        return
    step = next(t for t in status.pinned_tasks or [] if t.name == action.node.split("/", 1)[0])
    if step.when is None or "steps" in step.when:
        return
    variables = {
        "input": action.input,
        "run": {"name": run.name, "namespace": run.namespace, "labels": dict(run.labels)},
        "steps": {},
    }
    try:
        verdict = holds(step.when, variables)
    except ConditionError as error:
        raise Violation(
            "when", f"{action.node}#{action.attempt} started though its when fails: {error}"
        ) from None
    if not verdict:
        raise Violation("when", f"{action.node}#{action.attempt} started though when {step.when!r} is false")


def check_finished(run: RunView, observed: Observations, decision: Decision) -> None:
    """A finished run stays finished (nothing starts) unless a retry is asked; a deleted run ends;
    a cancel stops every step but compensations."""
    before, status = run.status, decision.status
    retry_asked = (run.spec.retry or 0) > before.retried
    if before.finished and not (retry_asked and not observed.deleted):
        if status.phase != before.phase or status.nodes != before.nodes:
            raise Violation("finished", f"a {before.phase} run changed: now {status.phase}")
        if any(isinstance(a, STARTS) for a in decision.actions):
            raise Violation("finished", f"a {before.phase} run started something")
    if observed.deleted and not status.finished:
        raise Violation("deleted", f"a deleted run is {status.phase}, not finished")
    if run.spec.cancel and not before.cancelled and before.ending is None and not before.finished:
        active = [n.id for n in status.nodes if n.phase in ACTIVE and not n.id.endswith(":compensate")]
        if active:
            raise Violation("cancel", f"cancelled, yet {active} go on")
        if status.phase not in (*FINISHED, RunPhase.COMPENSATING, RunPhase.SUSPENDED):
            raise Violation("cancel", f"cancelled, yet {status.phase}")
