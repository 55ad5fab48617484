"""Table tests of `{{ CEL }}` templates in Job and http steps: rendered per attempt from the
step's input (an item's: its item and index too), the run and earlier steps; a template that
cannot be rendered fails its step for good naming the field and the expression; one that does
not compile makes the Workflow not Ready."""

from __future__ import annotations

from typing import Any

import pytest

from seqflow.api.models import NodePhase, RunPhase
from seqflow.engine import CreateJob, RunHandler, workflow_problem
from seqflow.engine.expressions import ConditionError
from seqflow.engine.templates import render
from tests.unit.test_plan import HANDLERS, T0, err, go, ok, workflow


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("plain", {}, "plain"),
        ("{{ input.date }}", {"input": {"date": "2026-12-07"}}, "2026-12-07"),
        (
            "s3://b/{{ input.day }}/{{ input.n + 1 }}.csv",
            {"input": {"day": "mon", "n": 1}},
            "s3://b/mon/2.csv",
        ),
        ("{{ input }}", {"input": {"a": [1, True]}}, '{"a":[1,true]}'),
        ("--dry-run={{ input.dry }}", {"input": {"dry": False}}, "--dry-run=false"),
        ("{{ {'k': input.n} }}", {"input": {"n": 2}}, '{"k":2}'),
        ("{{input.n}}{{input.n}}", {"input": {"n": 7}}, "77"),
    ],
)
def test_render(text: str, variables: dict[str, Any], expected: str):
    assert render(text, variables, field="job args[0]") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ input.date }}", "job args[0] 'input.date' failed: no field 'date' (test for it with has())"),
        ("{{ }}", "job args[0] '{{ }}' has an empty template {{ }}"),
        ("{{ input.n / 0 }}", "job args[0] 'input.n / 0' failed: "),
    ],
)
def test_a_template_that_cannot_be_rendered_names_its_field_and_expression(text: str, message: str):
    with pytest.raises(ConditionError) as raised:
        render(text, {"input": {"n": 1}}, field="job args[0]")
    assert str(raised.value).startswith(message)


JOBS = workflow(
    [
        {"name": "A", "handler": "a"},
        {
            "name": "Load",
            "job": {
                "image": "loader:{{ input.version }}",
                "command": ["load"],
                "args": [
                    "--date={{ input.date }}",
                    "--run={{ run.name }}",
                    "--rows={{ steps.A.output.rows }}",
                ],
                "env": [{"name": "TABLE", "value": "t_{{ input.rows * 2 }}"}],
            },
        },
    ]
)


def test_a_job_steps_image_command_args_and_env_are_rendered_from_its_input_the_run_and_steps():
    out = {"version": "1.2", "date": "2026-12-07", "rows": 40}
    decision = go(go(wf=JOBS).status, at=1, wf=JOBS, results=(ok("A", 1, out),))
    (create,) = [a for a in decision.actions if isinstance(a, CreateJob)]
    job = create.task.job
    assert job is not None
    assert (job.image, job.command, job.args) == (
        "loader:1.2",
        ["load"],
        ["--date=2026-12-07", "--run=r", "--rows=40"],
    )
    assert [(e.name, e.value) for e in job.env or []] == [("TABLE", "t_80")]
    pinned = next(t for t in decision.status.pinned_tasks or [] if t.name == "Load")
    assert pinned.job is not None and pinned.job.args == JOBS.spec.tasks[1].job.args  # type: ignore[union-attr]
    assert decision.status.node("A").output == out  # type: ignore[union-attr]  # (a template reads it)


def test_a_template_over_a_field_that_is_not_there_fails_the_step_for_good():
    decision = go(go(wf=JOBS).status, at=1, wf=JOBS, results=(ok("A", 1, {"version": "1"}),))
    assert not [a for a in decision.actions if isinstance(a, CreateJob)]
    load = decision.status.node("Load")
    assert load is not None and (load.phase, load.attempts) == (NodePhase.FAILED, 1)
    assert decision.status.phase == RunPhase.FAILED
    (condition,) = [c for c in decision.status.conditions if c.type == "Succeeded"]
    assert condition.reason == "TemplateFailed"
    assert condition.message == (
        "Task Load failed (permanent error): job args[0] 'input.date' failed: no field 'date' (test for it with has())"
    )


EACH = workflow(
    [
        {"name": "A", "handler": "a"},
        {
            "name": "Copy",
            "forEach": {
                "items": "input.keys",
                "as": "key",
                "step": {
                    "job": {
                        "image": "aws",
                        "args": ["s3", "cp", "s3://in/{{ key }}", "s3://{{ input.to }}/{{ index }}"],
                    }
                },
            },
        },
    ]
)


def test_an_items_templates_see_its_item_under_its_name_its_index_and_the_steps_input():
    decision = go(
        go(wf=EACH).status, at=1, wf=EACH, results=(ok("A", 1, {"keys": ["a.csv", "b.csv"], "to": "out"}),)
    )
    args = [a.task.job.args for a in decision.actions if isinstance(a, CreateJob) and a.task.job]
    assert args == [["s3", "cp", "s3://in/a.csv", "s3://out/0"], ["s3", "cp", "s3://in/b.csv", "s3://out/1"]]


CALL = workflow(
    [
        {
            "name": "Notify",
            "http": {
                "method": "POST",
                "url": "http://hooks.tools.svc/runs/{{ run.name }}?n={{ input.n }}",
                "headers": [
                    {"name": "X-Run", "value": "{{ run.namespace }}/{{ run.name }}"},
                    {"name": "Authorization", "secretKeyRef": {"name": "hooks", "key": "token"}},
                ],
                "body": "{{ input }}",
            },
        }
    ]
)


def test_an_http_steps_url_headers_and_body_are_rendered_and_it_runs_in_process():
    (call,) = [a for a in go(wf=CALL).actions if isinstance(a, RunHandler)]
    assert call.task.http is not None
    http = call.task.http
    assert (http.url, http.body) == ("http://hooks.tools.svc/runs/r?n=1", '{"n":1}')
    assert [(h.name, h.value) for h in http.headers or []] == [("X-Run", "/r"), ("Authorization", None)]
    assert call.task.timeout_seconds == 30  # its request's default limit


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        (
            {"job": {"image": "x", "args": ["{{ input. }}"]}},
            "task S: job args[0] 'input.' does not compile: ",
        ),
        (
            {"http": {"url": "http://a.b.svc/{{ steps.Later.output.id }}"}},
            "task S: http url 'steps.Later.output.id' reads steps.Later, a later step (it has not run yet)",
        ),
        (
            {
                "forEach": {
                    "items": "input.xs",
                    "step": {"job": {"image": "x", "env": [{"name": "V", "value": "{{ ) }}"}]}},
                }
            },
            "task S: forEach step job env V ')' does not compile: ",
        ),
    ],
)
def test_a_template_that_does_not_compile_or_reads_a_later_step_makes_the_workflow_invalid(step, problem):
    tasks = [{"name": "S", **step}, {"name": "Later", "handler": "a"}]
    found = workflow_problem(workflow(tasks).spec, name="wf", handlers=HANDLERS, workflows={})
    assert found is not None and found[0] == "InvalidWorkflow"
    assert found[1].startswith(problem), found[1]


def test_a_retry_waits_at_least_as_long_as_the_service_asked():
    failed = go(go(wf=CALL).status, at=1, wf=CALL, results=(err("Notify", 1, "503", retry_after=120.0),))
    notify = failed.status.node("Notify")
    assert notify is not None and notify.phase == NodePhase.RETRYING
    assert notify.next_retry_at is not None and (notify.next_retry_at - T0).total_seconds() == 121
