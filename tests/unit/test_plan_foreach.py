"""Table tests of forEach steps: items admitted in order up to maxParallel, each with its item,
index and the step's input; the fan-in in item order; tolerated failures, failFast, retry,
cancel; items that cannot be had; a 10,000-item fan-out whose status stays small."""

from __future__ import annotations

import json
from typing import Any

import pytest

from seqflow.api.models import NodePhase, RunPhase, WorkflowRunStatus
from seqflow.engine import (
    CancelHandler,
    ChildRun,
    CreateChildRun,
    CreateJob,
    Decision,
    EngineOptions,
    RunHandler,
)
from seqflow.engine.compaction import expanded
from tests.unit.test_plan import OPTIONS, Row, check, err, go, ok, workflow


def fan_out(**for_each: Any) -> Any:
    spec = {"items": "input.lines", "maxParallel": 2, "step": {"handler": "b", "retry": {"maxRetries": 0}}}
    return workflow(
        [
            {"name": "Order", "handler": "a"},
            {"name": "Ship", "forEach": {**spec, **for_each}},
            {"name": "Done", "handler": "c"},
        ]
    )


LINES = {"lines": ["x", "y", "z"]}


def ordered(wf: Any, output: dict[str, Any] | None = None) -> Decision:
    """The plan that takes in the order's output (`LINES` unless given) and starts the forEach."""
    return go(go(wf=wf).status, at=1, wf=wf, results=(ok("Order", 1, LINES if output is None else output),))


FAN = fan_out()
TOLERANT = fan_out(toleratedFailures=1)
ORDER_RUNNING = go(wf=FAN).status
SHIP_RUNNING = go(ORDER_RUNNING, at=1, wf=FAN, results=(ok("Order", 1, LINES),)).status
TWO_DONE = go(
    SHIP_RUNNING, at=2, wf=FAN, results=(ok("Ship/0", 1, {"box": 0}), ok("Ship/1", 1, {"box": 1}))
).status
ONE_FAILED = go(
    SHIP_RUNNING,
    at=2,
    wf=FAN,
    results=(err("Ship/0", 1, "no stock"),),
    handlers_running=frozenset({("Ship/1", 1)}),
).status
T_SHIP = ordered(TOLERANT).status


def starts(decision: Decision) -> list[tuple[str, Any]]:
    return [(a.node, a.input) for a in decision.actions if isinstance(a, RunHandler | CreateJob)]


ROWS = {
    "a forEach starts its first items, up to maxParallel": Row(
        ORDER_RUNNING, {"results": (ok("Order", 1, LINES),)}, at=1, wf=FAN, phase=RunPhase.RUNNING,
        nodes={"Ship": (NodePhase.RUNNING, 1), "Ship/0": (NodePhase.RUNNING, 1), "Ship/1": (NodePhase.RUNNING, 1)},
        actions=["RunHandler", "RunHandler"], entries=["TASK_COMPLETED", "TASK_STARTED", "TASK_STARTED", "TASK_STARTED"],
        reason="TaskStarted",
    ),
    "an item that ends admits the next": Row(
        SHIP_RUNNING, {"results": (ok("Ship/0", 1),), "handlers_running": frozenset({("Ship/1", 1)})}, wf=FAN,
        phase=RunPhase.RUNNING, nodes={"Ship/0": (NodePhase.SUCCEEDED, 1), "Ship/2": (NodePhase.RUNNING, 1)},
        actions=["RunHandler"], entries=["TASK_COMPLETED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "the last item ends the forEach and starts the next step": Row(
        TWO_DONE, {"results": (ok("Ship/2", 1, {"box": 2}),)}, wf=FAN, phase=RunPhase.RUNNING,
        nodes={"Ship": (NodePhase.SUCCEEDED, 1), "Done": (NodePhase.RUNNING, 1)}, actions=["RunHandler"],
        entries=["TASK_COMPLETED", "TASK_COMPLETED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "an item over its budget is failed, the others end first": Row(
        SHIP_RUNNING, {"results": (err("Ship/0", 1, "no stock"),), "handlers_running": frozenset({("Ship/1", 1)})},
        wf=FAN, phase=RunPhase.RUNNING, nodes={"Ship/0": (NodePhase.FAILED, 1), "Ship/1": (NodePhase.RUNNING, 1)},
        entries=["TASK_FAILED"], reason="TaskStarted",
    ),
    "more failures than tolerated fail the run once none runs": Row(
        ONE_FAILED, {"results": (ok("Ship/1", 1),)}, wf=FAN, phase=RunPhase.FAILED,
        nodes={"Ship": (NodePhase.FAILED, 1), "Ship/1": (NodePhase.SUCCEEDED, 1)}, actions=["PostEvent"],
        entries=["TASK_COMPLETED", "TASK_FAILED", "WORKFLOW_FAILED"], reason="TaskFailed",
    ),
    "a tolerated failure goes on with the next item": Row(
        T_SHIP, {"results": (err("Ship/0", 1, "no stock"),), "handlers_running": frozenset({("Ship/1", 1)})},
        wf=TOLERANT, phase=RunPhase.RUNNING, nodes={"Ship/0": (NodePhase.FAILED, 1), "Ship/2": (NodePhase.RUNNING, 1)},
        actions=["RunHandler"], entries=["TASK_FAILED", "TASK_STARTED"], reason="TaskStarted",
    ),
    "cancel stops every running item": Row(
        SHIP_RUNNING, {"handlers_running": frozenset({("Ship/0", 1), ("Ship/1", 1)})}, spec={"cancel": True},
        wf=FAN, phase=RunPhase.CANCELLED,
        nodes={"Ship": (NodePhase.CANCELLED, 1), "Ship/0": (NodePhase.CANCELLED, 1), "Ship/1": (NodePhase.CANCELLED, 1)},
        actions=["CancelHandler", "CancelHandler", "PostEvent"],
        entries=["TASK_CANCELLED", "TASK_CANCELLED", "TASK_CANCELLED", "WORKFLOW_CANCELLED"], reason="Cancelled",
    ),
    "suspend lets the items run and admits no more": Row(
        SHIP_RUNNING, {"results": (ok("Ship/0", 1),), "handlers_running": frozenset({("Ship/1", 1)})}, wf=FAN,
        spec={"suspend": True}, phase=RunPhase.SUSPENDED, nodes={"Ship/1": (NodePhase.RUNNING, 1)},
        actions=["PostEvent"], entries=["TASK_COMPLETED", "RUN_SUSPENDED"], reason="Suspended",
    ),
}  # fmt: skip


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_for_each(row: Row):
    check(
        row, current=lambda status: [n.id for n in status.nodes if "/" not in n.id and n.phase == "Running"]
    )


def test_each_item_gets_its_item_index_and_the_steps_input():
    decision = go(ORDER_RUNNING, at=1, wf=FAN, results=(ok("Order", 1, LINES),))
    assert starts(decision) == [
        ("Ship/0", {"item": "x", "index": 0, "input": LINES}),
        ("Ship/1", {"item": "y", "index": 1, "input": LINES}),
    ]
    ship = decision.status.node("Ship")
    assert ship is not None and ship.type == "forEach" and ship.fan_out is not None
    assert (ship.fan_out.total, ship.fan_out.admitted, ship.fan_out.running) == (3, 2, 2)
    assert decision.status.current == ["Ship"] and decision.status.progress == "1/3, Ship 0/3"


def test_the_fan_in_is_the_input_with_the_outputs_in_item_order():
    done = go(TWO_DONE, at=3, wf=FAN, results=(ok("Ship/2", 1, {"box": 2}),))
    (next_step,) = starts(done)
    assert next_step == ("Done", {**LINES, "results": [{"box": 0}, {"box": 1}, {"box": 2}]})
    out_of_order = go(
        SHIP_RUNNING,
        at=2,
        wf=FAN,
        results=(ok("Ship/1", 1, {"box": 1}),),
        handlers_running=frozenset({("Ship/0", 1)}),
    )
    last = go(
        out_of_order.status, at=3, wf=FAN, results=(ok("Ship/0", 1, {"box": 0}), ok("Ship/2", 1, {"box": 2}))
    )
    assert starts(last)[0][1]["results"] == [{"box": 0}, {"box": 1}, {"box": 2}]


def test_a_tolerated_failure_is_null_in_the_results_and_listed():
    status = go(
        T_SHIP, at=2, wf=TOLERANT, results=(err("Ship/0", 1, "no stock"), ok("Ship/1", 1, {"box": 1}))
    ).status
    done = go(status, at=3, wf=TOLERANT, results=(ok("Ship/2", 1, {"box": 2}),))
    assert starts(done)[0][1]["results"] == [None, {"box": 1}, {"box": 2}]
    ship = done.status.node("Ship")
    assert ship is not None and ship.phase == NodePhase.SUCCEEDED and ship.fan_out is not None
    assert (ship.fan_out.failed, ship.fan_out.failed_items) == (1, ["Ship/0"])
    assert done.status.cause is None  # (the item failed for good only if not tolerated)


@pytest.mark.parametrize(
    ("tolerated", "phase"), [("50%", RunPhase.RUNNING), ("10%", RunPhase.FAILED), (0, RunPhase.FAILED)]
)
def test_tolerated_failures_are_a_count_or_a_percentage_of_the_items(tolerated, phase):
    wf = fan_out(toleratedFailures=tolerated, maxParallel=3)
    status = ordered(wf).status
    decision = go(status, at=2, wf=wf, results=(err("Ship/0", 1), ok("Ship/1", 1), ok("Ship/2", 1)))
    assert decision.status.phase == phase


def test_fail_fast_cancels_the_running_items_and_says_why():
    wf = fan_out(failFast=True)
    status = ordered(wf).status
    decision = go(
        status,
        at=2,
        wf=wf,
        results=(err("Ship/0", 1, "no stock"),),
        handlers_running=frozenset({("Ship/1", 1)}),
    )
    assert decision.status.phase == RunPhase.FAILED
    assert [a.node for a in decision.actions if isinstance(a, CancelHandler)] == ["Ship/1"]
    summary = next(c for c in decision.status.conditions if c.type == "Succeeded")
    assert (
        summary.message
        == "Task Ship failed: 1 of 3 items failed, more than the 0 tolerated; Ship/0: no stock"
    )


def test_a_retried_run_runs_only_the_failed_items_again():
    failed = go(ONE_FAILED, at=3, wf=FAN, results=(ok("Ship/1", 1, {"box": 1}),)).status
    assert failed.phase == RunPhase.FAILED
    retried = go(failed, at=4, wf=FAN, spec={"retry": 1})
    assert [node for node, _ in starts(retried)] == ["Ship/0", "Ship/2"]  # the failed one, then the next
    done = go(
        retried.status,
        at=5,
        wf=FAN,
        spec={"retry": 1},
        results=(ok("Ship/0", 2, {"box": 0}), ok("Ship/2", 1, {"box": 2})),
    )
    assert starts(done)[0][1]["results"] == [{"box": 0}, {"box": 1}, {"box": 2}]


def test_job_items_get_a_job_each_and_their_input_whole():
    wf = fan_out(step={"job": {"image": "shipper:1"}})
    decision = ordered(wf)
    jobs = [a for a in decision.actions if isinstance(a, CreateJob)]
    assert [(j.node, j.input) for j in jobs] == [
        ("Ship/0", {"item": "x", "index": 0, "input": LINES}),
        ("Ship/1", {"item": "y", "index": 1, "input": LINES}),
    ]
    assert len({j.name for j in jobs}) == 2 and jobs[0].name.startswith("r-ship-0-1-")


def test_an_empty_list_succeeds_at_once_and_the_next_step_starts():
    decision = go(ORDER_RUNNING, at=1, wf=FAN, results=(ok("Order", 1, {"lines": []}),))
    assert starts(decision) == [("Done", {"lines": [], "results": []})]


@pytest.mark.parametrize(
    ("items", "output", "problem"),
    [
        ("input.lines", {"lines": "x"}, "gave str, not a list"),
        ("input.rows", LINES, "no field 'rows'"),
        ("input.lines.map(x, b'x')", LINES, "not JSON"),
        ("[0].map(x, input.lines[5])", LINES, "failed"),
    ],
)
def test_items_that_cannot_be_had_fail_the_step_for_good(items, output, problem):
    wf = fan_out(items=items)
    decision = ordered(wf, output)
    assert decision.status.phase == RunPhase.FAILED
    summary = next(c for c in decision.status.conditions if c.type == "Succeeded")
    assert summary.reason == "ItemsInvalid" and problem in summary.message, summary.message


def test_items_that_do_not_compile_make_the_workflow_invalid():
    decision = go(wf=fan_out(items="input.lines["))
    summary = next(c for c in decision.status.conditions if c.type == "Succeeded")
    assert (
        summary.reason == "InvalidWorkflow"
        and "forEach items 'input.lines[' does not compile" in summary.message
    )


def test_10000_items_keep_the_status_small_and_gather_in_order():
    """Every item ends in the plan after it started, the activity log is written between plans:
    the run takes turns of starting and ending 200 items (the log's backlog bound holds the
    starts), its status never near 256 KiB."""
    wf = fan_out(maxParallel=200, items="input.lines")
    options = EngineOptions(**{**OPTIONS.__dict__, "max_value_bytes": 16 * 1024 * 1024})
    known: dict[str, Any] = {}

    def step(status: WorkflowRunStatus, at: int, **observed: Any) -> Decision:
        decision = go(status, at=at, wf=wf, options=options, values=dict(known), **observed)
        known.update({d: e.value for d, e in decision.values.items()})
        return decision

    decision = step(go(wf=wf).status, 1, results=(ok("Order", 1, {"lines": list(range(10_000))}),))
    largest, plans = 0, 0
    while not (done := [a for a in decision.actions if isinstance(a, RunHandler) and a.node == "Done"]):
        running = [a for a in decision.actions if isinstance(a, RunHandler)]
        status = decision.status.model_copy(update={"pending_history": []})  # (written meanwhile)
        decision = step(
            status, 2 + plans, results=tuple(ok(a.node, 1, {"i": a.input["item"]}) for a in running)
        )
        largest, plans = max(largest, len(json.dumps(decision.status.to_wire()))), plans + 1
        assert plans <= 200, decision.status.conditions
    assert largest < 128 * 1024, largest
    assert done[0].input["results"] == [{"i": i} for i in range(10_000)]
    ship = expanded(decision.status, known=known)[0].node("Ship")  # (folded, once it ended)
    assert ship is not None and ship.fan_out is not None and ship.fan_out.succeeded == 10_000
    print(f"10,000 items: {plans} plans, the status at most {largest} bytes")


SUBS = fan_out(step={"workflowRef": {"name": "pick-line"}, "retry": {"maxRetries": 0}})


def test_workflow_items_are_child_runs_each_given_its_item_and_ending_with_it():
    decision = ordered(SUBS)
    creates = [a for a in decision.actions if isinstance(a, CreateChildRun)]
    assert [(c.node, c.workflow.name, c.input) for c in creates] == [
        ("Ship/0", "pick-line", {"item": "x", "index": 0, "input": LINES}),
        ("Ship/1", "pick-line", {"item": "y", "index": 1, "input": LINES}),
    ]
    assert creates[0].name != creates[1].name and decision.status.descendants == 2
    children = {
        "Ship/0": ChildRun(phase=RunPhase.SUCCEEDED, suspended=False, output={"box": 0}),
        "Ship/1": ChildRun(phase=RunPhase.RUNNING, suspended=False),
    }
    after = go(decision.status, at=2, wf=SUBS, children=children)
    assert after.status.node("Ship/0").phase == NodePhase.SUCCEEDED  # type: ignore[union-attr]
    assert [a.node for a in after.actions if isinstance(a, CreateChildRun)] == ["Ship/2"]


UNDO = workflow(
    [
        {"name": "Order", "handler": "a"},
        {
            "name": "Ship",
            "forEach": {"items": "input.lines", "maxParallel": 3, "step": {"handler": "b"}},
            "compensate": {"handler": "c"},
        },
        {"name": "Done", "handler": "c", "retry": {"maxRetries": 0}},
    ]
)


def test_a_failure_after_a_fan_out_undoes_its_items_one_by_one_the_last_first():
    shipping = ordered(UNDO).status
    boxes = tuple(ok(f"Ship/{i}", 1, {"box": i}) for i in range(3))
    done_running = go(shipping, at=2, wf=UNDO, results=boxes).status
    undoing = go(done_running, at=3, wf=UNDO, results=(err("Done", 1, "no van", permanent=True),))
    assert undoing.status.phase == RunPhase.COMPENSATING
    inputs = []
    for at, index in enumerate([2, 1, 0], start=4):
        (start,) = [a for a in undoing.actions if isinstance(a, RunHandler)]
        assert start.node == f"Ship/{index}:compensate"
        inputs.append(start.input)
        undoing = go(undoing.status, at=at, wf=UNDO, results=(ok(start.node, 1),))
    assert inputs == [{"box": 2}, {"box": 1}, {"box": 0}]
    assert undoing.status.phase == RunPhase.FAILED
    (condition,) = [c for c in undoing.status.conditions if c.type == "Succeeded"]
    assert (condition.reason, condition.message) == (
        "Compensated",
        "Task Done failed (permanent error): no van; compensated Ship (3 items)",
    )


def test_only_the_items_that_succeeded_are_undone():
    each = {"items": "input.lines", "maxParallel": 3, "toleratedFailures": 1, "step": {"handler": "b"}}
    tolerant = workflow(
        [{"name": "Order", "handler": "a"}, {"name": "Ship", "forEach": each, "compensate": {"handler": "c"}}]
    )
    shipping = ordered(tolerant).status
    two_ended = go(
        shipping, at=2, wf=tolerant,
        results=(ok("Ship/0", 1, {"box": 0}), err("Ship/1", 1, "no stock", permanent=True)),
        handlers_running=frozenset({("Ship/2", 1)}),
    ).status  # fmt: skip
    ended = go(
        two_ended, at=3, wf=tolerant, spec={"cancel": True}, handlers_running=frozenset({("Ship/2", 1)})
    )
    starts = [a.node for a in ended.actions if isinstance(a, RunHandler)]
    assert ended.status.phase == RunPhase.COMPENSATING and starts == ["Ship/0:compensate"]
