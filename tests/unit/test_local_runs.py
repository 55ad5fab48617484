"""The local driver (seqflow.local): runs driven through `plan()` on this machine, a row per
kind of step and outcome (retries and backoffs in virtual time, failures for good, signals,
deadlines, sub-workflows, Jobs stubbed and run as local processes), and what a result holds
(transitions, the activity log, stored values read back, folded nodes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from seqflow.api.models import HistoryEvent, JsonObject, NodePhase, RunPhase, WorkflowSpec
from seqflow.executors.inprocess import HandlerRegistry, PermanentError, TaskContext, task
from seqflow.local import LocalOptions, LocalResult, Workflows, run_local
from seqflow.local.options import JobMode
from seqflow.local.signals import GivenSignals

HANDLERS = HandlerRegistry()
START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
READ_INPUT_FILE = (
    'printf \'{"tag": "%s", "task": "%s", "input": %s}\' '
    '"$TAG" "$SEQFLOW_TASK" "$(cat "$SEQFLOW_INPUT_PATH")" > "$SEQFLOW_OUTPUT_PATH"'
)
WRITE_INPUT = 'printf \'{"got": %s}\' "$SEQFLOW_INPUT" > "$SEQFLOW_OUTPUT_PATH"'


@task("echo", into=HANDLERS)
def echo(input: JsonObject, context: TaskContext) -> JsonObject:
    return {**input, "echoed": context.task}


@task("flaky", into=HANDLERS)
def flaky(input: JsonObject, context: TaskContext) -> JsonObject:
    if context.attempt < 3:
        raise ConnectionError(f"attempt {context.attempt} failed")
    return {"attempt": context.attempt}


@task("refuse", into=HANDLERS)
async def refuse(input: JsonObject, context: TaskContext) -> JsonObject:
    raise PermanentError("refused")


@task("large", into=HANDLERS)
def large(input: JsonObject, context: TaskContext) -> JsonObject:
    return {"blob": "x" * 10_000}


def sh(script: str, **more: Any) -> JsonObject:
    return {"job": {"image": "busybox", "command": ["sh", "-c", script]}, **more}


@dataclass(frozen=True)
class Row:
    id: str
    tasks: list[JsonObject]
    phase: RunPhase
    reason: str
    steps: dict[str, tuple[NodePhase, int]]  # id: (phase, attempts)
    output: JsonObject | None = None  # None: not looked at
    input: JsonObject = field(default_factory=lambda: {"n": 1})
    workflow: JsonObject = field(default_factory=dict)  # more of the Workflow's spec
    others: dict[str, list[JsonObject]] = field(default_factory=dict)  # sub-workflows' tasks
    stubs: dict[str, JsonObject] = field(default_factory=dict)
    signals: dict[str, JsonObject] = field(default_factory=dict)
    on_wait: dict[str, JsonObject] = field(default_factory=dict)
    jobs: JobMode = "stub"
    virtual: tuple[float, float] = (0, 1)  # the run's virtual seconds lie in [low, high)
    error: tuple[str, str] | None = None  # (step, the start of its error)


ROWS = [
    Row(
        "retried handler, its backoff in virtual time",
        [
            {
                "name": "Flaky",
                "handler": "flaky",
                "retry": {"maxRetries": 3, "backoffSeconds": 600, "maxBackoffSeconds": 3600},
            }
        ],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Flaky": (NodePhase.SUCCEEDED, 3)},
        output={"attempt": 3},
        virtual=(1800, 1801),
    ),
    Row(
        "retries run out",
        [{"name": "Flaky", "handler": "flaky", "retry": {"maxRetries": 1, "backoffSeconds": 5}}],
        RunPhase.FAILED,
        "TaskFailed",
        {"Flaky": (NodePhase.FAILED, 2)},
        virtual=(5, 6),
        error=("Flaky", "ConnectionError: attempt 2 failed"),
    ),
    Row(
        "permanent failure, not retried",
        [{"name": "Refuse", "handler": "refuse"}, {"name": "After", "handler": "echo"}],
        RunPhase.FAILED,
        "TaskFailed",
        {"Refuse": (NodePhase.FAILED, 1)},
        error=("Refuse", "refused"),
    ),
    Row(
        "wait answered by a signal once it waits",
        [
            {"name": "Gate", "wait": {"signal": "go", "timeoutSeconds": 3600}},
            {"name": "Echo", "handler": "echo"},
        ],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Gate": (NodePhase.SUCCEEDED, 1), "Echo": (NodePhase.SUCCEEDED, 1)},
        output={"n": 1, "ok": True, "echoed": "Echo"},
        on_wait={"go": {"ok": True}},
    ),
    Row(
        "wait answered by a signal given ahead",
        [{"name": "Gate", "wait": {"signal": "go"}}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Gate": (NodePhase.SUCCEEDED, 1)},
        output={"n": 1, "ok": 2},
        signals={"go": {"ok": 2}},
    ),
    Row(
        "wait timing out, then going on",
        [{"name": "Gate", "wait": {"signal": "go", "timeoutSeconds": 3600, "onTimeout": "continue"}}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Gate": (NodePhase.SUCCEEDED, 1)},
        output={"n": 1},
        virtual=(3600, 3601),
    ),
    Row(
        "wait timing out, failing",
        [{"name": "Gate", "wait": {"signal": "go", "timeoutSeconds": 60}, "retry": {"maxRetries": 0}}],
        RunPhase.FAILED,
        "TaskFailed",
        {"Gate": (NodePhase.FAILED, 1)},
        virtual=(60, 61),
        error=("Gate", "no signal go within 60 s"),
    ),
    Row(
        "a one-hour sleep",
        [{"name": "Nap", "sleep": {"seconds": 3600}}, {"name": "Echo", "handler": "echo"}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Nap": (NodePhase.SUCCEEDED, 1)},
        output={"n": 1, "echoed": "Echo"},
        virtual=(3600, 3601),
    ),
    Row(
        "the run's deadline during a sleep",
        [{"name": "Nap", "sleep": {"seconds": 3600}}],
        RunPhase.FAILED,
        "DeadlineExceeded",
        {"Nap": (NodePhase.CANCELLED, 1)},
        workflow={"timeoutSeconds": 60},
        virtual=(60, 61),
    ),
    Row(
        "sub-workflow run as a child run",
        [{"name": "Child", "workflowRef": {"name": "inner"}}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Child": (NodePhase.SUCCEEDED, 1)},
        output={"n": 1, "echoed": "Inner"},
        others={"inner": [{"name": "Inner", "handler": "echo"}]},
    ),
    Row(
        "sub-workflow failing fails its step",
        [{"name": "Child", "workflowRef": {"name": "inner"}, "retry": {"maxRetries": 0}}],
        RunPhase.FAILED,
        "TaskFailed",
        {"Child": (NodePhase.FAILED, 1)},
        others={"inner": [{"name": "Inner", "handler": "refuse"}]},
    ),
    Row(
        "sub-workflow stubbed",
        [{"name": "Child", "workflowRef": {"name": "inner"}}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Child": (NodePhase.SUCCEEDED, 1)},
        output={"stubbed": True},
        others={"inner": [{"name": "Inner", "handler": "refuse"}]},
        stubs={"Child": {"stubbed": True}},
    ),
    Row(
        "stubbed Job: its input as its output",
        [{"name": "Build", "job": {"image": "builder:1"}}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Build": (NodePhase.SUCCEEDED, 1)},
        output={"n": 1},
    ),
    Row(
        "stubbed Job: the stub's output",
        [{"name": "Build", **sh("exit 1")}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Build": (NodePhase.SUCCEEDED, 1)},
        output={"image": "built"},
        jobs="local",
        stubs={"Build": {"image": "built"}},
    ),
    Row(
        "stubbed handler of no registered handler",
        [{"name": "Pay", "handler": "payments.charge"}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Pay": (NodePhase.SUCCEEDED, 1)},
        output={"paid": 1},
        stubs={"Pay": {"paid": 1}},
    ),
    Row(
        "local Job writing its output to SEQFLOW_OUTPUT_PATH",
        [{"name": "Build", **sh(WRITE_INPUT)}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Build": (NodePhase.SUCCEEDED, 1)},
        output={"got": {"n": 1}},
        jobs="local",
    ),
    Row(
        "local Job reading its input file, with its own variables",
        [
            {
                "name": "Build",
                "job": {
                    "image": "busybox",
                    "command": ["sh", "-c"],
                    "args": [READ_INPUT_FILE],
                    "env": [{"name": "TAG", "value": "v1"}],
                },
            }
        ],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Build": (NodePhase.SUCCEEDED, 1)},
        output={"tag": "v1", "task": "Build", "input": {"n": 1}},
        jobs="local",
    ),
    Row(
        "local Job forEach items",
        [
            {
                "name": "Each",
                "forEach": {
                    "items": "input.items",
                    "as": "item",
                    "step": sh('printf \'{"i": %s}\' "$SEQFLOW_INPUT" > "$SEQFLOW_OUTPUT_PATH"'),
                },
            }
        ],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Each": (NodePhase.SUCCEEDED, 1), "Each/1": (NodePhase.SUCCEEDED, 1)},
        input={"items": [1, 2]},
        jobs="local",
    ),
    Row(
        "local Job exit code 65: failed for good",
        [
            {
                "name": "Build",
                **sh('echo "bad input" > "$SEQFLOW_OUTPUT_PATH"; exit 65', retry={"maxRetries": 3}),
            }
        ],
        RunPhase.FAILED,
        "TaskFailed",
        {"Build": (NodePhase.FAILED, 1)},
        jobs="local",
        error=("Build", "exit code 65: bad input"),
    ),
    Row(
        "local Job exit code 1: retried",
        [{"name": "Build", **sh("echo broken >&2; exit 1", retry={"maxRetries": 2, "backoffSeconds": 30})}],
        RunPhase.FAILED,
        "TaskFailed",
        {"Build": (NodePhase.FAILED, 3)},
        jobs="local",
        virtual=(90, 91),
        error=("Build", "exit code 1: broken"),
    ),
    Row(
        "local Job writing no JSON",
        [{"name": "Build", **sh('echo hello > "$SEQFLOW_OUTPUT_PATH"', retry={"maxRetries": 0})}],
        RunPhase.FAILED,
        "TaskFailed",
        {"Build": (NodePhase.FAILED, 1)},
        jobs="local",
        error=("Build", "the output is not valid JSON"),
    ),
    Row(
        "local Job of an image alone: no command to run",
        [{"name": "Build", "job": {"image": "builder:1"}}],
        RunPhase.FAILED,
        "TaskFailed",
        {"Build": (NodePhase.FAILED, 1)},
        jobs="local",
        error=("Build", "a local Job runs the step's command"),
    ),
    Row(
        "local Job past its timeout",
        [{"name": "Build", **sh("sleep 10", timeoutSeconds=1, retry={"maxRetries": 0})}],
        RunPhase.FAILED,
        "DeadlineExceeded",
        {"Build": (NodePhase.FAILED, 1)},
        jobs="local",
        virtual=(1, 3),
        error=("Build", "DeadlineExceeded"),
    ),
    Row(
        "parallel members, their outputs merged",
        [{"name": "Both", "parallel": [{"name": "A", "handler": "echo"}, {"name": "B", "handler": "echo"}]}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Both/A": (NodePhase.SUCCEEDED, 1), "Both/B": (NodePhase.SUCCEEDED, 1)},
    ),
    Row(
        "a large output, stored by reference and read back",
        [{"name": "Large", "handler": "large"}, {"name": "Echo", "handler": "echo"}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Large": (NodePhase.SUCCEEDED, 1)},
        output={"blob": "x" * 10_000, "echoed": "Echo"},
    ),
]


def workflows(row: Row) -> Workflows:
    specs = {"main": WorkflowSpec.model_validate({"tasks": row.tasks, **row.workflow})}
    specs |= {name: WorkflowSpec.model_validate({"tasks": tasks}) for name, tasks in row.others.items()}
    return Workflows(main="main", specs=specs)


def run(row: Row, **more: Any) -> LocalResult:
    options = LocalOptions(
        workflows=workflows(row),
        input=row.input,
        stubs=row.stubs,
        signals=row.signals,
        jobs=row.jobs,
        job_environment={"PATH": "/usr/bin:/bin"},
        handlers=HANDLERS,
        start=START,
        **more,
    )
    return asyncio.run(run_local(options, signals=GivenSignals(row.on_wait)))


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_local_run(row: Row):
    result = run(row)
    assert (result.phase, result.reason) == (row.phase, row.reason), result.summary()
    assert {id: (result.steps[id].phase, result.steps[id].attempts) for id in row.steps} == row.steps
    if row.output is not None:
        assert result.output == row.output
    low, high = row.virtual
    assert low <= result.virtual_seconds < high
    assert result.wall_seconds < 5  # virtual time: the waits are not waited out
    if row.error is not None:
        step, start = row.error
        assert (result.steps[step].error or "").startswith(start), result.steps[step].error


def test_a_one_hour_sleep_takes_no_hour():
    result = run(ROWS[7])
    print(f"a {result.virtual_seconds:.0f} s sleep in {result.wall_seconds:.3f} s of wall time")
    assert result.virtual_seconds >= 3600 and result.wall_seconds < 5


def test_real_time_waits_out_a_sleep():
    row = Row(
        "a short sleep", [{"name": "Nap", "sleep": {"seconds": 1}}], RunPhase.SUCCEEDED, "Succeeded", {}
    )
    result = run(row, real_time=True)
    assert result.succeeded and result.wall_seconds >= 1


def test_a_wait_no_signal_answers_stops_the_run_saying_why():
    row = Row("a wait", [{"name": "Gate", "wait": {"signal": "go"}}], RunPhase.RUNNING, "", {})
    result = run(row)
    assert result.phase == RunPhase.RUNNING
    assert result.steps["Gate"].phase == NodePhase.WAITING
    assert result.stuck == "step Gate waits for signal go and none was given"


def test_a_child_runs_wait_is_answered_in_the_child():
    row = Row(
        "a child's wait",
        [{"name": "Child", "workflowRef": {"name": "inner"}}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {},
        others={"inner": [{"name": "Gate", "wait": {"signal": "go"}}]},
        on_wait={"go": {"ok": True}},
    )
    result = run(row)
    assert result.succeeded, result.summary()
    assert result.step("Child > Gate").phase == NodePhase.SUCCEEDED
    assert result.output == {"n": 1, "ok": True}


def test_transitions_tell_each_step_change_in_virtual_time():
    result = run(ROWS[0])
    assert [(t.offset, t.path, t.phase, t.attempt) for t in result.transitions] == [
        (pytest.approx(0, abs=0.5), ("Flaky",), NodePhase.RUNNING, 1),
        (pytest.approx(0, abs=0.5), ("Flaky",), NodePhase.RETRYING, 1),
        (pytest.approx(600, abs=0.5), ("Flaky",), NodePhase.RUNNING, 2),
        (pytest.approx(600, abs=0.5), ("Flaky",), NodePhase.RETRYING, 2),
        (pytest.approx(1800, abs=0.5), ("Flaky",), NodePhase.RUNNING, 3),
        (pytest.approx(1800, abs=0.5), ("Flaky",), NodePhase.SUCCEEDED, 3),
    ]
    assert result.transitions[1].error == "ConnectionError: attempt 1 failed"
    assert "Retrying    attempt 1  ConnectionError: attempt 1 failed" in result.transitions[1].line()


def test_child_runs_transitions_are_under_their_step():
    result = run(ROWS[9])
    lines = [t.line() for t in result.transitions]
    assert any(line.endswith("    Child > Inner              Succeeded   attempt 1") for line in lines), lines


def test_the_history_is_the_activity_log_whole():
    result = run(ROWS[0])
    assert [r.type for r in result.history] == [
        HistoryEvent.WORKFLOW_STARTED,
        *[HistoryEvent.TASK_STARTED, HistoryEvent.TASK_RETRY] * 2,
        HistoryEvent.TASK_STARTED,
        HistoryEvent.TASK_COMPLETED,
        HistoryEvent.WORKFLOW_COMPLETED,
    ]
    assert [r.seq for r in result.history] == list(range(1, 9))
    assert [e.reason for e in result.events][-1] == "Succeeded"


def test_many_items_folded_into_the_store_are_all_in_the_result():
    row = Row(
        "150 items",
        [{"name": "Each", "forEach": {"items": "input.items", "as": "item", "step": {"handler": "echo"}}}],
        RunPhase.SUCCEEDED,
        "Succeeded",
        {"Each": (NodePhase.SUCCEEDED, 1)},
        input={"items": list(range(150))},
    )
    result = run(row)
    assert result.succeeded, result.summary()
    assert result.steps["Each/0"].output == {
        "item": 0,
        "index": 0,
        "input": {"items": list(range(150))},
        "echoed": "Each/0",
    }
    assert len([id for id in result.steps if id.startswith("Each/")]) == 150
    assert result.output is not None and len(result.output["results"]) == 150


def test_a_status_that_never_settles_stops_the_run_saying_so(monkeypatch: pytest.MonkeyPatch):
    import seqflow.local.driver as driver
    from seqflow.engine import plan

    def unsettled(**given: Any):  # the engine's decision, with a status that differs every time
        decision = plan(**given)
        status = decision.status.model_copy(update={"retries": given["run"].status.retries + 1})
        return replace(decision, status=status)

    monkeypatch.setattr(driver, "plan", unsettled)
    monkeypatch.setattr(driver, "MAX_PLANS_IN_A_ROW", 50)
    row = Row("a wait", [{"name": "Gate", "wait": {"signal": "go"}}], RunPhase.RUNNING, "", {})
    assert run(row).stuck == "its status did not settle after 50 plans in a row (a seqflow bug)"
