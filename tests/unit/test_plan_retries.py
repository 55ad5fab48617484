"""Table tests of retry conditions: a policy with `on`, `exitCodes` or `when` retries only the
failures they name (any that matches), a failure it does not name fails the step at once saying
why; a pod stopped from outside is retried without counting against the budget."""

from __future__ import annotations

from typing import Any

import pytest

from seqflow.api.models import ErrorType, NodePhase, RunPhase
from seqflow.engine import workflow_problem
from tests.unit.test_plan import HANDLERS, err, go, workflow


def policy_run(retry: dict[str, Any]) -> Any:
    return workflow([{"name": "Load", "job": {"image": "loader:1"}, "retry": {"maxRetries": 2, **retry}}])


@pytest.mark.parametrize(
    ("retry", "failure", "retried"),
    [
        ({}, {"error_type": ErrorType.ERROR, "exit_code": 2}, True),  # no conditions: every failure
        ({"on": ["OOMKilled"]}, {"error_type": ErrorType.OOM_KILLED, "exit_code": 137}, True),
        ({"on": ["OOMKilled"]}, {"error_type": ErrorType.ERROR, "exit_code": 2}, False),
        ({"exitCodes": [1, 3]}, {"error_type": ErrorType.ERROR, "exit_code": 3}, True),
        ({"exitCodes": [1, 3]}, {"error_type": ErrorType.ERROR, "exit_code": 2}, False),
        ({"on": ["DeadlineExceeded"], "exitCodes": [1]}, {"error_type": ErrorType.DEADLINE_EXCEEDED}, True),
        ({"when": "error.exitCode == 75 || error.message.contains('try again')"}, {"exit_code": 75}, True),
        ({"when": "error.exitCode == 75"}, {"exit_code": 2}, False),
        ({"when": "attempt < 2"}, {}, True),
        ({"when": "error.type == 'Timeout'"}, {"error_type": ErrorType.TIMEOUT}, True),
    ],
)
def test_a_policy_with_conditions_retries_only_the_failures_they_name(
    retry: dict[str, Any], failure: dict[str, Any], retried: bool
):
    wf = policy_run(retry)
    decision = go(go(wf=wf).status, at=1, wf=wf, results=(err("Load", 1, "exit code 2: bad", **failure),))
    load = decision.status.node("Load")
    assert load is not None and load.phase == (NodePhase.RETRYING if retried else NodePhase.FAILED)


def test_a_failure_not_retried_says_why():
    wf = policy_run({"on": ["OOMKilled"]})
    decision = go(
        go(wf=wf).status,
        at=1,
        wf=wf,
        results=(err("Load", 1, "exit code 2: bad", error_type=ErrorType.ERROR, exit_code=2),),
    )
    assert decision.status.phase == RunPhase.FAILED
    (condition,) = [c for c in decision.status.conditions if c.type == "Succeeded"]
    assert condition.message == (
        "Task Load failed (not retried: type Error, exit code 2 is not among its retry conditions): exit code 2: bad"
    )


def test_a_when_that_cannot_be_evaluated_does_not_retry_and_says_so():
    wf = policy_run({"when": "error.nope == 1"})
    decision = go(go(wf=wf).status, at=1, wf=wf, results=(err("Load", 1, "boom"),))
    (condition,) = [c for c in decision.status.conditions if c.type == "Succeeded"]
    assert "not retried: retry.when 'error.nope == 1' failed: no field 'nope'" in condition.message


def test_a_disrupted_attempt_is_retried_without_counting():
    wf = workflow([{"name": "Load", "job": {"image": "loader:1"}, "retry": {"maxRetries": 0}}])
    evicted = err("Load", 1, "the pod was evicted: low on memory", reason="TaskInterrupted", disrupted=True)
    decision = go(go(wf=wf).status, at=1, wf=wf, results=(evicted,))
    load = decision.status.node("Load")
    assert load is not None and (load.phase, load.budget_from) == (NodePhase.RETRYING, 1)
    again = go(decision.status, at=5, wf=wf)
    failed = go(again.status, at=6, wf=wf, results=(err("Load", 2, "exit code 1"),))
    assert failed.status.phase == RunPhase.FAILED  # (its own failure counts: maxRetries 0)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (
            {"tasks": [{"name": "A", "handler": "a", "retry": {"when": "error. =="}}]},
            "task A: retry.when 'error. ==' does not compile",
        ),
        (
            {"tasks": [{"name": "A", "handler": "a"}], "defaults": {"retry": {"when": "("}}},
            "defaults: retry.when '(' does not compile",
        ),
    ],
)
def test_a_retry_when_that_does_not_compile_makes_the_workflow_invalid(spec: dict[str, Any], problem: str):
    tasks = spec.pop("tasks")
    found = workflow_problem(workflow(tasks, **spec).spec, name="wf", handlers=HANDLERS, workflows={})
    assert found is not None and found[0] == "InvalidWorkflow" and found[1].startswith(problem), found
