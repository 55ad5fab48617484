"""Table tests of cached steps: the first attempt waits for the lookup of its key (the step's
definition and its key's value, hashed); an output kept under it makes the step Cached at once
and the next step starts with it; none runs the step and keeps its output under the key."""

from __future__ import annotations

from typing import Any

from seqflow.api.models import NodePhase, RunPhase
from seqflow.engine import RunHandler
from tests.unit.test_plan import go, ok, workflow


def cached(ttl: int = 60, key: str = "input.day", handler: str = "a") -> Any:
    export = {"name": "Export", "handler": handler, "cache": {"key": key, "ttlSeconds": ttl}}
    return workflow([export, {"name": "Mail", "handler": "b"}])


WF = cached()


def looked_up(spec: dict[str, Any] | None = None, wf: Any = WF) -> Any:
    return go(wf=wf, spec={"input": {"day": "mon"}, **(spec or {})})


def test_the_first_attempt_waits_for_the_lookup_of_its_key():
    decision = looked_up()
    export = decision.status.node("Export")
    assert export is not None and export.phase == NodePhase.PENDING and export.cache_key
    assert [type(a).__name__ for a in decision.actions] == ["PostEvent", "WakeAt"]  # (Started, the recheck)


def test_the_key_is_the_steps_definition_and_its_keys_value():
    key = looked_up().status.node("Export").cache_key  # type: ignore[union-attr]
    assert looked_up().status.node("Export").cache_key == key  # type: ignore[union-attr]
    assert looked_up({"input": {"day": "tue"}}).status.node("Export").cache_key != key  # type: ignore[union-attr]
    assert looked_up(wf=cached(handler="c")).status.node("Export").cache_key != key  # type: ignore[union-attr]


def test_an_output_kept_under_the_key_makes_the_step_cached_and_the_next_one_starts_with_it():
    waiting = looked_up().status
    decision = go(waiting, at=1, wf=WF, spec={"input": {"day": "mon"}}, cached={"Export": {"rows": 7}})
    export = decision.status.node("Export")
    assert export is not None and export.phase == NodePhase.CACHED and export.attempts == 0
    assert [(a.node, a.input) for a in decision.actions if isinstance(a, RunHandler)] == [
        ("Mail", {"rows": 7})
    ]
    assert [r.type for r in decision.status.pending_history][-2:] == ["TASK_CACHED", "TASK_STARTED"]
    done = go(decision.status, at=2, wf=WF, spec={"input": {"day": "mon"}}, results=(ok("Mail", 1),))
    assert done.status.phase == RunPhase.SUCCEEDED and done.status.progress == "2/2"


def test_with_nothing_kept_the_step_runs_and_its_output_is_kept_under_the_key():
    waiting = looked_up().status
    running = go(waiting, at=1, wf=WF, spec={"input": {"day": "mon"}}, cached={"Export": None})
    assert [a.node for a in running.actions if isinstance(a, RunHandler)] == ["Export"]
    done = go(
        running.status, at=2, wf=WF, spec={"input": {"day": "mon"}}, results=(ok("Export", 1, {"rows": 7}),)
    )
    (completed,) = [r for r in done.status.pending_history if r.type == "TASK_COMPLETED"]
    key = waiting.node("Export").cache_key  # type: ignore[union-attr]
    assert completed.details["cache"] == {"key": key, "ttlSeconds": 60}


def test_a_key_that_cannot_be_evaluated_fails_the_step_for_good():
    decision = looked_up(wf=cached(key="input.nope"))
    assert decision.status.phase == RunPhase.FAILED
    (condition,) = [c for c in decision.status.conditions if c.type == "Succeeded"]
    assert condition.reason == "ConditionFailed" and "cache.key" in condition.message
