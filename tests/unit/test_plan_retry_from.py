"""Table tests of a run that retries another from one of its tasks (spec.retryFrom): the same
task list, the tasks before that one kept (not run again), that one run with this run's input or
the one it had there patched; a source that cannot be had fails the run saying why."""

from __future__ import annotations

from typing import Any

import pytest

from seqflow.api.models import NodePhase, RunPhase
from seqflow.engine import RetrySource, RunHandler
from seqflow.engine.plan import merged
from tests.unit.test_plan import err, go, ok, workflow

FIVE = workflow(
    [{"name": n, "handler": "a", "retry": {"maxRetries": 0}} for n in ("S1", "S2", "S3", "S4", "S5")]
)


def failed_at_s3() -> Any:
    status = go(wf=FIVE).status
    status = go(status, at=1, wf=FIVE, results=(ok("S1", 1, {"n": 2}),)).status
    status = go(status, at=2, wf=FIVE, results=(ok("S2", 1, {"n": 3, "card": "old"}),)).status
    return go(status, at=3, wf=FIVE, results=(err("S3", 1, "card declined", permanent=True),)).status


ORIGINAL = failed_at_s3()
SOURCE = RetrySource(
    pinned_tasks=ORIGINAL.pinned_tasks or [],
    nodes=ORIGINAL.nodes,
    run_input={"n": 1},
    step_input={"n": 3, "card": "old"},
)


def retry_from(step: str, *, source: RetrySource | None = SOURCE, **spec: Any) -> Any:
    given = {
        "workflowRef": {"name": "wf"},
        "retryFrom": {"run": "r", "step": step, **spec.pop("retry", {})},
        **spec,
    }
    given.setdefault("input", {})
    return go(wf=FIVE, spec=given, retry_source=source)


def test_the_tasks_before_the_step_are_kept_and_the_step_runs_with_its_input_patched():
    decision = retry_from("S3", retry={"patch": {"card": "new"}})
    (start,) = [a for a in decision.actions if isinstance(a, RunHandler)]
    assert (start.node, start.input) == ("S3", {"n": 3, "card": "new"})
    assert [(n.id, n.phase) for n in decision.status.nodes] == [
        ("S1", NodePhase.SUCCEEDED),
        ("S2", NodePhase.SUCCEEDED),
        ("S3", NodePhase.RUNNING),
    ]
    assert decision.status.pinned_tasks == ORIGINAL.pinned_tasks and decision.status.progress == "2/5"
    (started,) = [r for r in decision.status.pending_history if r.type == "WORKFLOW_STARTED"]
    assert (started.details["retryOf"], started.details["from"]) == ("r", "S3")


def test_an_input_of_its_own_replaces_the_one_the_step_had():
    decision = retry_from("S3", input={"n": 30})
    assert [a.input for a in decision.actions if isinstance(a, RunHandler)] == [{"n": 30}]


def test_retrying_from_the_first_task_gives_the_run_the_new_input():
    decision = retry_from(
        "S1", source=RetrySource(**{**SOURCE.__dict__, "step_input": {"n": 1}}), retry={"patch": {"n": 9}}
    )
    assert [(a.node, a.input) for a in decision.actions if isinstance(a, RunHandler)] == [("S1", {"n": 9})]
    assert decision.status.input == {"n": 9} and decision.status.nodes[0].id == "S1"


def test_it_goes_on_to_the_end_from_there():
    status = retry_from("S3").status
    status = go(
        status,
        at=1,
        wf=FIVE,
        spec={"retryFrom": {"run": "r", "step": "S3"}},
        results=(ok("S3", 1, {"n": 4}),),
    ).status
    assert [n.id for n in status.nodes] == ["S1", "S2", "S3", "S4"] and status.phase == RunPhase.RUNNING


@pytest.mark.parametrize(
    ("step", "source", "message"),
    [
        ("S9", SOURCE, "Cannot retry run r from task S9: it has no such task (S1, S2, S3, S4, S5)"),
        ("S4", SOURCE, "Cannot retry run r from task S4: task S3 before it did not succeed there (Failed)"),
        (
            "S3",
            RetrySource(problem="no such run in this namespace"),
            "Cannot retry run r from task S3: no such run in this namespace",
        ),
        (
            "S3",
            RetrySource(**{**SOURCE.__dict__, "step_input": None}),
            "Cannot retry run r from task S3: the input task S3 had is not known (its history is not in the store): give one",
        ),
    ],
)
def test_a_source_that_cannot_be_had_fails_the_run_saying_why(step: str, source: RetrySource, message: str):
    decision = retry_from(step, source=source)
    assert decision.status.phase == RunPhase.FAILED
    (condition,) = [c for c in decision.status.conditions if c.type == "Succeeded"]
    assert (condition.reason, condition.message) == ("RetrySourceInvalid", message)


def test_until_the_source_is_read_the_run_waits():
    decision = retry_from("S3", source=None)
    assert decision.status.phase is None or decision.status.phase == RunPhase.PENDING
    assert [type(a).__name__ for a in decision.actions] == ["WakeAt"]


@pytest.mark.parametrize(
    ("value", "patch", "result"),
    [
        ({"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"c": 9}}, {"a": 1, "b": {"c": 9, "d": 2}}),
        ({"a": 1, "b": 2}, {"b": None}, {"a": 1}),
        ({"a": {"x": 1}}, {"a": [1]}, {"a": [1]}),
    ],
)
def test_a_patch_is_a_json_merge_patch(value: dict, patch: dict, result: dict):
    assert merged(value, patch) == result
