"""`seqflow lint`: the example workflows pass; every bad manifest the API server refuses
(tests/validation_cases.py) fails with the API server's message; the operator's checks of a
Workflow (handlers, expressions, sub-workflow loops across files, input schemas); the file, line
and field of each problem; exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from seqflow.cli import crd_checks, lint
from seqflow.cli import main as cli
from tests.support import REPO, workflow
from tests.validation_cases import (
    BAD_WORKFLOWS,
    INPUT_NOT_AN_OBJECT,
    NO_WORKFLOW_REF,
    SIGNAL_NOT_AN_OBJECT,
    SIGNAL_PAYLOADS,
    run_with_signal,
    run_with_string_input,
    run_without_workflow_ref,
)

EXAMPLE_HANDLERS = ["seqflow.examples"]  # its __init__ imports every example module
# Each example file, with the files of the sub-workflows it runs.
EXAMPLES = [
    ["expense-approval.yaml"],
    ["money-transfer.yaml"],
    ["order-fulfilment.yaml", "shipping.yaml"],
    ["order-picking.yaml"],
    ["order-process.yaml"],
    ["refund-process.yaml"],
    ["report-exports.yaml"],
    ["shipping.yaml"],
    ["stock-check.yaml"],
    ["user-onboarding.yaml"],
]


def write(directory: Path, name: str, *documents: dict[str, Any]) -> str:
    path = directory / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return str(path)


def linted(capsys: pytest.CaptureFixture[str], *files: str, handlers: list[str] | None = None):
    code = lint.main(files, handlers)
    return code, capsys.readouterr().out.splitlines()


def test_every_example_is_listed():
    assert {f for row in EXAMPLES for f in row} == {p.name for p in (REPO / "workflows").glob("*.yaml")}


@pytest.mark.parametrize("files", EXAMPLES, ids=[row[0] for row in EXAMPLES])
def test_the_examples_pass(capsys, files: list[str]):
    code, out = linted(capsys, *(str(REPO / "workflows" / f) for f in files), handlers=EXAMPLE_HANDLERS)
    assert out[-1].startswith("0 errors, 0 warnings in "), out
    assert code == 0


@pytest.mark.parametrize(("manifest", "message"), BAD_WORKFLOWS.values(), ids=BAD_WORKFLOWS.keys())
def test_a_bad_workflow_fails_with_the_api_servers_message(tmp_path, capsys, manifest, message: str):
    code, out = linted(capsys, write(tmp_path, "w.yaml", manifest))
    assert code == 1
    assert any(message in line for line in out), out


@pytest.mark.parametrize(
    ("run", "messages"),
    [
        (run_with_string_input(), [INPUT_NOT_AN_OBJECT]),
        (run_without_workflow_ref(), [NO_WORKFLOW_REF]),
        *((run_with_signal(payload), SIGNAL_NOT_AN_OBJECT) for payload in SIGNAL_PAYLOADS.values()),
    ],
    ids=["input-not-an-object", "no-workflow-ref", *(f"signal-{id}" for id in SIGNAL_PAYLOADS)],
)
def test_a_bad_run_fails_with_the_api_servers_message(tmp_path, capsys, run, messages):
    code, out = linted(capsys, write(tmp_path, "r.yaml", run))
    assert code == 1
    for message in messages:
        assert any(message in line for line in out), out


def handler_task(name: str = "A", handler: str = "order.validate", **more: Any) -> dict[str, Any]:
    return {"name": name, "handler": handler, **more}


# id, the Workflow, the field and a part of the message of one of its problems: the operator's
# checks, then some of the API server's beyond tests/validation_cases.py
PROBLEMS = [
    (
        "unknown-handler",
        workflow("w", [handler_task(), handler_task("B", "no.such")]),
        "spec.tasks[1]",
        'task B: no handler registered as "no.such"',
    ),
    (
        "when-does-not-compile",
        workflow("w", [handler_task(when="input.total >")]),
        "spec.tasks[0]",
        "task A: when 'input.total >' does not compile",
    ),
    (
        "when-reads-a-later-step",
        workflow("w", [handler_task(when="steps.B.phase == 'Succeeded'"), handler_task("B")]),
        "spec.tasks[0]",
        "reads steps.B, a later step",
    ),
    (
        "template-does-not-compile",
        workflow("w", [{"name": "H", "http": {"url": "http://a.svc/{{ input. }}"}}]),
        "spec.tasks[0]",
        "does not compile",
    ),
    (
        "bad-input-schema",
        workflow("w", [handler_task()], inputSchema={"type": "no-such-type"}),
        "spec.inputSchema",
        "inputSchema is not a valid JSON Schema",
    ),
    (
        "cluster-workflow-runs-a-workflow",
        {**workflow("w", [{"name": "Local", "workflowRef": {"name": "x"}}]), "kind": "ClusterWorkflow"},
        "spec.tasks[0]",
        'task Local: a ClusterWorkflow runs ClusterWorkflows only, not Workflow "x"',
    ),
    (
        "bad-output-schema",
        workflow(
            "w", [handler_task(), {"name": "B", "handler": "x", "when": "true"}], outputSchema={"type": 5}
        ),
        "spec.outputSchema",
        "outputSchema is not a valid JSON Schema",
    ),
    (
        "default-retry-when",
        workflow("w", [handler_task()], defaults={"retry": {"when": "error ==="}}),
        "spec.defaults",
        "defaults: retry.when 'error ===' does not compile",
    ),
    (
        "unknown-field",
        workflow("w", [handler_task(retries=3)]),
        "spec.tasks[0].retries",
        'unknown field "spec.tasks[0].retries"',
    ),
    (
        "bad-name",
        workflow("Order_Process", [handler_task()]),
        "metadata.name",
        'Invalid value: "Order_Process": a lowercase RFC 1123 subdomain must consist of',
    ),
    (
        "bad-date-time",
        workflow("w", [{"name": "S", "sleep": {"until": "tomorrow"}}]),
        "spec.tasks[0].sleep.until",
        'spec.tasks[0].sleep.until in body must be of type date-time: "tomorrow"',
    ),
    (
        "date-without-time",
        workflow("w", [{"name": "S", "sleep": {"until": "2026-01-01"}}]),
        "spec.tasks[0].sleep.until",
        'Invalid value: "2026-01-01": spec.tasks[0].sleep.until in body must be of type date-time',
    ),
]


@pytest.mark.parametrize(
    ("manifest", "path", "message"),
    [row[1:] for row in PROBLEMS],
    ids=[row[0] for row in PROBLEMS],
)
def test_a_problem_is_reported_with_its_place(tmp_path, capsys, manifest, path: str, message: str):
    file = write(tmp_path, "w.yaml", manifest)
    code, out = linted(capsys, file, handlers=EXAMPLE_HANDLERS)
    title = f"{manifest['kind']}/{manifest['metadata']['name']}"
    assert any(line.startswith(f"{file}:1: {title}: {path}: ") and message in line for line in out), out
    assert code == 1


def test_a_handler_problem_hides_no_other(tmp_path, capsys):
    manifest = workflow("w", [handler_task(handler="no.such", when="input.x >")])
    code, out = linted(capsys, write(tmp_path, "w.yaml", manifest), handlers=EXAMPLE_HANDLERS)
    assert [line for line in out if "no handler registered" in line]
    assert [line for line in out if "does not compile" in line]
    assert out[-1].startswith("2 errors, 0 warnings")
    assert code == 1


def test_without_handlers_they_are_not_checked_and_it_says_so_once(tmp_path, capsys):
    first = write(tmp_path, "a.yaml", workflow("a", [handler_task(handler="no.such")]))
    second = write(tmp_path, "b.yaml", workflow("b", [handler_task(handler="no.such")]))
    code, out = linted(capsys, first, second)
    assert out == [
        "note: handlers not checked (no --handlers MODULE given)",
        "0 errors, 0 warnings in 2 seqflow documents of 2 files",
    ]
    assert code == 0


def calling(name: str, other: str) -> dict[str, Any]:
    return workflow(name, [handler_task(), {"name": "Sub", "workflowRef": {"name": other}}])


def test_a_sub_workflow_loop_across_two_files(tmp_path, capsys):
    first = write(tmp_path, "a.yaml", calling("a", "b"))
    second = write(tmp_path, "b.yaml", calling("b", "a"))
    code, out = linted(capsys, first, second, handlers=EXAMPLE_HANDLERS)
    loop = "spec.tasks[1]: task Sub: sub-workflows call each other in a loop"
    assert out[:2] == [
        f"{first}:1: Workflow/a: {loop}: a -> b -> a",
        f"{second}:1: Workflow/b: {loop}: b -> a -> b",
    ]
    assert code == 1


def test_a_sub_workflow_in_no_file_is_a_warning(tmp_path, capsys):
    file = write(tmp_path, "a.yaml", calling("a", "elsewhere"))
    code, out = linted(capsys, file, handlers=EXAMPLE_HANDLERS)
    assert out == [
        f'{file}:1: Workflow/a: spec.tasks[1].workflowRef: warning: Workflow "elsewhere" is not in the files '
        "linted: not checked (nor loops through it)",
        "0 errors, 1 warning in 1 seqflow document of 1 file",
    ]
    assert code == 0


def test_sub_workflows_of_another_namespace_are_not_found(tmp_path, capsys):
    called = workflow("b", [handler_task()])
    called["metadata"]["namespace"] = "other"
    code, out = linted(
        capsys, write(tmp_path, "a.yaml", calling("a", "b"), called), handlers=EXAMPLE_HANDLERS
    )
    assert 'warning: Workflow "b" is not in the files linted' in out[0]
    assert code == 0


def test_the_line_of_each_document_and_other_documents_skipped(tmp_path, capsys):
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    file = tmp_path / "several.yaml"
    file.write_text(
        "# the examples\n"
        + yaml.safe_dump(config_map)
        + "---\n"
        + yaml.safe_dump(workflow("good", [handler_task()]))
        + "---\n"
        + yaml.safe_dump(workflow("bad", []))
        + "---\n- a list\n"
    )
    code, out = linted(capsys, str(file), handlers=EXAMPLE_HANDLERS)
    text = file.read_text().splitlines()
    bad_line, list_line = text.index("apiVersion: seqflow.io/v1alpha1", 8) + 1, text.index("- a list") + 1
    assert out == [
        f"{file}:2: ConfigMap/c: skipped: not a seqflow manifest (apiVersion v1)",
        f"{file}:{list_line}: ?/?: skipped: not a Kubernetes object (a YAML mapping)",
        f"{file}:{bad_line}: Workflow/bad: spec.tasks: Invalid value: 0: spec.tasks in body should have at "
        "least 1 items",
        "1 error, 0 warnings in 2 seqflow documents of 1 file",
    ]
    assert code == 1


def test_transition_rules_are_left_out_and_a_rule_this_cel_lacks_is_reported_unchecked():
    schema = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.url == oldSelf.url", "message": "url is immutable"},
            {"rule": "isURL(self.url)", "message": "url must be a URL"},
            {"rule": "self.url.startsWith('https://')", "message": "url must be https"},
        ],
    }
    problems = crd_checks.rule_problems({"url": "http://a.svc/"}, schema, path="spec")
    assert problems == [
        crd_checks.Problem(
            path="spec",
            message="rule not checked offline: isURL(self.url): Undefined variable or function: "
            "'isURL'. Check that the variable is defined in the context or that the function name is "
            "spelled correctly.",
            warning=True,
        ),
        crd_checks.Problem(path="spec", message='Invalid value: "object": url must be https'),
    ]


def test_schema_errors_that_block_the_api_servers_rules_say_so(tmp_path, capsys):
    manifest = workflow("w", [handler_task(), handler_task()], inputSchema="not an object")
    code, out = linted(capsys, write(tmp_path, "w.yaml", manifest), handlers=EXAMPLE_HANDLERS)
    assert any("spec.inputSchema in body must be of type object" in line for line in out)
    assert any(
        "some validation rules were not checked because the object was invalid" in line for line in out
    )
    assert not any("task names must be unique" in line for line in out)
    assert code == 1


@pytest.mark.parametrize(
    ("content", "handlers", "error"),
    [
        (None, None, "cannot read it"),
        ("spec: [unclosed\n", None, "not YAML"),
        (yaml.safe_dump(workflow("w", [handler_task()])), ["no_such_module_here"], "cannot import"),
    ],
    ids=["missing-file", "not-yaml", "handler-module-does-not-import"],
)
def test_usage_errors_exit_2(tmp_path, capsys, content, handlers, error: str):
    file = tmp_path / "w.yaml"
    if content is not None:
        file.write_text(content)
    assert lint.main([str(file)], handlers) == 2
    assert error in capsys.readouterr().err


def test_no_files_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["lint"])
    assert exited.value.code == 2


def test_the_command_line_checks_handlers_in_a_process_of_its_own():
    """A fresh process, where only the modules named register handlers."""
    done = subprocess.run(
        [sys.executable, "-m", "seqflow", "lint", "workflows/order-process.yaml", "--handlers", "json"],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "operator")},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stderr
    assert 'spec.tasks[0]: task ValidateOrder: no handler registered as "order.validate"' in done.stdout
    assert done.stdout.splitlines()[-1].startswith("3 errors, 0 warnings in 2 seqflow documents")
