"""The engine fuzz in the unit tests: random runs from a fixed seed, driven through `plan()` with
every decision checked (tests/engine_fuzz makes and drives them), and a minimal reproduction of
each defect the fuzz has found, fixed since: the fuzz holds the engine to them from then on."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from seqflow.api.models import NodePhase, Reason, RunPhase, WorkflowRunSpec, WorkflowRunStatus, WorkflowSpec
from seqflow.engine import (
    AttemptResult,
    CancelHandler,
    CreateJob,
    Decision,
    EngineOptions,
    Observations,
    RunHandler,
    RunView,
    WakeAt,
    WorkflowView,
    plan,
)
from tests import engine_fuzz
from tests.engine_fuzz import Coverage, FuzzFailure, fuzz

SEED = 20261121
RUNS = 400

# ----- the fuzz -----


def fuzz_runs(seed: int, runs: int) -> tuple[Coverage, list[FuzzFailure]]:
    """Run `runs` cases from `seed`: what they covered, and the failures."""
    coverage, failures = Coverage(), []
    for case in range(seed, seed + runs):
        try:
            coverage.add(fuzz(case))
        except FuzzFailure as failure:
            failures.append(failure)
    return coverage, failures


def test_random_runs_keep_the_engine_properties():
    coverage, failures = fuzz_runs(SEED, RUNS)
    assert not failures, f"{len(failures)} runs broke a property; the first:\n{failures[0]}"
    # the cases are not trivial: every step kind ran, every end was reached
    assert set(coverage.started) == {"handler", "job", "sleep", "wait", "parallel", "workflow"}
    assert {RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED} <= set(coverage.phases)
    for reason in (Reason.SUCCEEDED, Reason.TASK_FAILED, Reason.CONDITION_FAILED, Reason.COMPENSATED):
        assert coverage.reasons[reason] > 0, coverage.reasons
    for change in ("suspend=True", "cancel", "retry", "signal", "deleted"):
        assert coverage.steering[change] > 0, coverage.steering


def test_a_failure_names_its_seed_and_case():
    failure = FuzzFailure(
        7, "stalled", "the run is Running", engine_fuzz.make_case(7), ["round 1"], WorkflowRunStatus()
    )
    assert "seed 7: stalled" in str(failure) and "--seed 7" in str(failure) and '"tasks"' in str(failure)


def test_the_same_seed_makes_the_same_run():
    assert engine_fuzz.trace(SEED + 3) == engine_fuzz.trace(SEED + 3)
    assert engine_fuzz.make_case(SEED).describe() != engine_fuzz.make_case(SEED + 1).describe()


def dropping(kind: type) -> Any:
    """plan() without its actions of `kind`: a broken engine the fuzz must catch."""

    def broken(**arguments: Any) -> Decision:
        decision = plan(**arguments)
        return replace(decision, actions=tuple(a for a in decision.actions if not isinstance(a, kind)))

    return broken


@pytest.mark.parametrize(
    ("kind", "property"), [(WakeAt, "stalled"), (RunHandler, "start"), (CancelHandler, "stop")]
)
def test_the_fuzz_catches_an_engine_that_forgets_an_action(monkeypatch, kind, property):
    monkeypatch.setattr(engine_fuzz.drive, "plan", dropping(kind))
    _, failures = fuzz_runs(SEED, 60)
    assert property in {f.kind for f in failures}


# ----- reproductions of the defects found -----

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
HANDLERS = frozenset({"h"})


def go(
    tasks: list[dict[str, Any]],
    status: WorkflowRunStatus | None = None,
    *,
    at: float = 0,
    spec: dict[str, Any] | None = None,
    **observed: Any,
) -> Decision:
    """Plan a run of a Workflow of `tasks` from `status`, `at` seconds after it was created."""
    run = RunView(
        name="r",
        spec=WorkflowRunSpec.model_validate({"workflowRef": {"name": "wf"}, **(spec or {})}),
        status=status or WorkflowRunStatus(),
        generation=1,
        created_at=T0,
    )
    workflow = WorkflowView(spec=WorkflowSpec.model_validate({"tasks": tasks}), generation=1)
    seen = Observations(**{"workflow": workflow, "handlers": HANDLERS, **observed})
    return plan(run=run, observed=seen, now=T0 + timedelta(seconds=at), options=EngineOptions())


def ok(node: str, attempt: int = 1, output: dict[str, Any] | None = None) -> tuple[AttemptResult, ...]:
    return (AttemptResult(node=node, attempt=attempt, output=output or {}),)


def err(node: str, attempt: int = 1, **kw: Any) -> tuple[AttemptResult, ...]:
    return (AttemptResult(node=node, attempt=attempt, error="boom", **kw),)


def starts(decision: Decision) -> list[tuple[str, int]]:
    return [(a.node, a.attempt) for a in decision.actions if isinstance(a, RunHandler | CreateJob)]


def test_a_group_member_retries_after_another_failed_for_good():
    group = [
        {
            "name": "G",
            "parallel": [
                {"name": "once", "handler": "h", "retry": {"maxRetries": 0}},
                {"name": "twice", "handler": "h", "retry": {"maxRetries": 1, "backoffSeconds": 5}},
            ],
        }
    ]
    started = go(group)
    failed = go(group, started.status, at=1, results=(*err("G/once"), *err("G/twice")))
    assert failed.status.node("G/twice").phase == NodePhase.RETRYING  # type: ignore[union-attr]
    later = go(group, failed.status, at=10)
    # the retry starts, or the group ends; seen: nothing starts, no WakeAt asked, Running for ever
    group_ended = later.status.node("G").phase == NodePhase.FAILED  # type: ignore[union-attr]
    assert starts(later) == [("G/twice", 2)] or group_ended


def test_a_signal_sent_before_its_wait_lets_the_run_go_on():
    tasks = [
        {"name": "A", "handler": "h"},
        {"name": "Gate", "wait": {"signal": "go"}},
        {"name": "C", "handler": "h"},
    ]
    spec = {"signals": {"go": {"by": "bob"}}}
    started = go(tasks, spec=spec)
    gate_done = go(tasks, started.status, at=1, spec=spec, results=ok("A"))
    assert gate_done.status.node("Gate").phase == NodePhase.SUCCEEDED  # type: ignore[union-attr]
    # C starts, or the run asks to be looked at again; seen: no action at all (though planned
    # again as it is, C starts)
    assert starts(gate_done) == [("C", 1)] or any(isinstance(a, WakeAt) for a in gate_done.actions)


def test_a_run_whose_first_step_is_an_answered_wait_has_a_condition():
    tasks = [{"name": "Gate", "wait": {"signal": "go"}}, {"name": "C", "handler": "h"}]
    first = go(tasks, spec={"signals": {"go": {}}})
    assert first.status.phase == RunPhase.RUNNING
    assert "Succeeded" in [c.type for c in first.status.conditions]  # formerly: no condition at all


def test_a_retry_evaluates_a_when_that_could_not_be_evaluated_again():
    tasks = [{"name": "A", "handler": "h"}, {"name": "B", "handler": "h", "when": "input.missing > 3"}]
    failed = go(tasks, go(tasks).status, at=1, results=ok("A", output={"n": 1})).status
    assert (failed.phase, failed.conditions[0].reason) == (RunPhase.FAILED, Reason.CONDITION_FAILED)
    retried = go(tasks, failed, at=2, spec={"retry": 1})
    # B's condition still cannot be evaluated: the run fails again; seen: B runs
    assert starts(retried) == [] and retried.status.phase == RunPhase.FAILED


def test_a_retry_after_compensation_decides_the_when_of_steps_on_the_new_data():
    tasks = [
        {"name": "A", "handler": "h", "compensate": {"handler": "h"}},
        {"name": "B", "handler": "h", "when": "input.go"},
        {"name": "C", "handler": "h", "retry": {"maxRetries": 0}},
    ]
    status = go(tasks).status
    status = go(tasks, status, at=1, results=ok("A", output={"go": True})).status
    status = go(tasks, status, at=2, results=ok("B")).status
    status = go(tasks, status, at=3, results=err("C")).status
    status = go(tasks, status, at=4, results=ok("A:compensate")).status
    assert (status.phase, status.conditions[0].reason) == (RunPhase.FAILED, Reason.COMPENSATED)
    status = go(tasks, status, at=5, spec={"retry": 1}).status  # A runs again
    again = go(tasks, status, at=6, spec={"retry": 1}, results=ok("A", 2, {"go": False}))
    # B is skipped now (input.go is false); seen: B runs
    assert ("B", 2) not in starts(again)


def test_a_compensation_run_again_after_a_retry_is_a_new_attempt_with_a_new_job():
    tasks = [
        {"name": "D", "handler": "h", "compensate": {"job": {"image": "undo:1"}}},
        {"name": "C", "handler": "h", "retry": {"maxRetries": 0}},
    ]
    status = go(tasks).status
    status = go(tasks, status, at=1, results=ok("D")).status
    first = go(tasks, status, at=2, results=err("C"))
    (undo,) = [a for a in first.actions if isinstance(a, CreateJob)]
    status = go(tasks, first.status, at=3, results=ok("D:compensate")).status
    status = go(tasks, status, at=4, spec={"retry": 1}).status
    status = go(tasks, status, at=5, spec={"retry": 1}, results=ok("D", 2)).status
    second = go(tasks, status, at=6, spec={"retry": 1}, results=err("C", 2))
    (again,) = [a for a in second.actions if isinstance(a, CreateJob)]
    # formerly: attempt 1 again, with the first compensation's Job name (its finished Job is found)
    assert again.name != undo.name


def test_a_run_started_while_held_has_a_condition():
    started = go([{"name": "A", "handler": "h"}], hold=True)
    assert started.status.phase == RunPhase.RUNNING
    assert "Succeeded" in [c.type for c in started.status.conditions]  # formerly: no condition at all


def test_a_queued_run_cancelled_is_cancelled():
    queued = go([{"name": "A", "handler": "h"}], spec={"cancel": True}, queued=(1, 2))
    assert queued.status.phase == RunPhase.CANCELLED  # formerly: Pending (Queued)


def test_a_fail_fast_group_does_not_create_the_job_of_a_member_it_cancels():
    group = [
        {
            "name": "G",
            "failFast": True,
            "parallel": [
                {"name": "h", "handler": "h", "retry": {"maxRetries": 0}},
                {"name": "j", "job": {"image": "x:1"}},
            ],
        }
    ]
    started = go(group)
    failed = go(group, started.status, at=1, results=err("G/h"))  # G/j's Job not seen (yet)
    assert failed.status.node("G/j").phase == NodePhase.CANCELLED  # type: ignore[union-attr]
    assert not any(isinstance(a, CreateJob) for a in failed.actions)  # formerly: CreateJob, then DeleteJob
