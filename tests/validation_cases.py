"""Bad manifests and the messages the API server refuses them with (the CRD schemas and their CEL
rules), shared by tests/e2e/test_validation.py (a real API server) and tests/unit/test_lint.py
(`seqflow lint`): each message is a part of what the API server prints."""

from __future__ import annotations

from typing import Any

from tests.support import workflow, workflow_run

HANDLER_TASK = {"name": "A", "handler": "x"}

# By test id: a bad Workflow and a part of the API server's message refusing it.
BAD_WORKFLOWS: dict[str, tuple[dict[str, Any], str]] = {
    "no-tasks": (
        workflow("w", []),
        "spec.tasks: Invalid value: 0: spec.tasks in body should have at least 1 items",
    ),
    "tasks-missing": (
        {"apiVersion": "seqflow.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"}, "spec": {}},
        "spec.tasks: Required value",
    ),
    "duplicate-names": (
        workflow("w", [HANDLER_TASK, {"name": "A", "handler": "y"}]),
        "task names must be unique",
    ),
    "handler-and-job": (
        workflow("w", [{"name": "A", "handler": "x", "job": {"image": "busybox"}}]),
        "a task needs exactly one of handler, job, http, sleep, wait, parallel, forEach or workflowRef",
    ),
    "neither": (
        workflow("w", [{"name": "A"}]),
        "a task needs exactly one of handler, job, http, sleep, wait, parallel, forEach or workflowRef",
    ),
    "handler-and-sleep": (
        workflow("w", [{"name": "A", "handler": "x", "sleep": {"seconds": 5}}]),
        "a task needs exactly one of handler, job, http, sleep, wait, parallel, forEach or workflowRef",
    ),
    "sleep-seconds-and-until": (
        workflow("w", [{"name": "A", "sleep": {"seconds": 5, "until": "2026-01-01T00:00:00Z"}}]),
        "sleep needs exactly one of seconds or until",
    ),
    "duplicate-members": (
        workflow(
            "w",
            [{"name": "G", "parallel": [{"name": "M", "handler": "x"}, {"name": "M", "handler": "y"}]}],
        ),
        "member names must be unique",
    ),
    "member-handler-and-job": (
        workflow("w", [{"name": "G", "parallel": [{"name": "M", "handler": "x", "job": {"image": "i"}}]}]),
        "a member needs exactly one of handler, job or http",
    ),
    "for-each-step-neither": (
        workflow("w", [{"name": "F", "forEach": {"items": "input.xs", "step": {}}}]),
        "a forEach step needs exactly one of handler, job, http or workflowRef",
    ),
    "for-each-as-input": (
        workflow(
            "w",
            [{"name": "F", "forEach": {"items": "input.xs", "as": "input", "step": {"handler": "x"}}}],
        ),
        "as may not be input, index, run or steps",
    ),
    "http-url-not-http": (
        workflow("w", [{"name": "H", "http": {"url": "ftp://files.svc/x"}}]),
        "spec.tasks[0].http.url in body should match '^(https?://|\\{\\{)'",
    ),
    "http-header-value-and-secret": (
        workflow(
            "w",
            [
                {
                    "name": "H",
                    "http": {
                        "url": "http://a.svc/",
                        "headers": [{"name": "X", "value": "v", "secretKeyRef": {"name": "s", "key": "k"}}],
                    },
                }
            ],
        ),
        "a header needs exactly one of value or secretKeyRef",
    ),
    "timeout-on-an-http-task": (
        workflow("w", [{"name": "H", "http": {"url": "http://a.svc/"}, "timeoutSeconds": 5}]),
        "timeoutSeconds applies to a handler or job task only (a wait and an http step have their own",
    ),
    "artifacts-on-an-http-member": (
        workflow(
            "w",
            [
                {
                    "name": "G",
                    "parallel": [{"name": "M", "http": {"url": "http://a.svc/"}, "artifacts": {}}],
                }
            ],
        ),
        "artifacts are passed to handler and job steps only",
    ),
    "tolerated-failures-not-a-percentage": (
        workflow(
            "w",
            [
                {
                    "name": "F",
                    "forEach": {
                        "items": "input.xs",
                        "toleratedFailures": "some",
                        "step": {"handler": "x"},
                    },
                }
            ],
        ),
        "toleratedFailures in body should match '^[0-9]{1,3}%$'",
    ),
    "max-parallel-items-over-200": (
        workflow(
            "w",
            [
                {
                    "name": "F",
                    "forEach": {"items": "input.xs", "maxParallel": 201, "step": {"handler": "x"}},
                }
            ],
        ),
        "spec.tasks[0].forEach.maxParallel in body should be less than or equal to 200",
    ),
    "negative-retries": (
        workflow("w", [{"name": "A", "handler": "x", "retry": {"maxRetries": -1}}]),
        "spec.tasks[0].retry.maxRetries: Invalid value: -1: "
        "spec.tasks[0].retry.maxRetries in body should be greater than or equal to 0",
    ),
    "zero-backoff": (
        workflow("w", [HANDLER_TASK], defaults={"retry": {"backoffSeconds": 0}}),
        "spec.defaults.retry.backoffSeconds in body should be greater than 0",
    ),
    "bad-task-name": (
        workflow("w", [{"name": "bad name!", "handler": "x"}]),
        "spec.tasks[0].name in body should match",
    ),
    "job-without-image": (
        workflow("w", [{"name": "A", "job": {"command": ["x"]}}]),
        "a job needs exactly one of image or podTemplate",
    ),
    "job-image-and-template": (
        workflow("w", [{"name": "A", "job": {"image": "x", "podTemplate": {"spec": {}}}}]),
        "a job needs exactly one of image or podTemplate",
    ),
    "max-parallel-on-a-handler": (
        workflow("w", [{"name": "A", "handler": "x", "maxParallel": 2}]),
        "maxParallel and failFast apply to a parallel group only",
    ),
    "fail-fast-on-a-handler": (
        workflow("w", [{"name": "A", "handler": "x", "failFast": True}]),
        "maxParallel and failFast apply to a parallel group only",
    ),
    "timeout-on-a-sleep": (
        workflow("w", [{"name": "A", "sleep": {"seconds": 5}, "timeoutSeconds": 10}]),
        "timeoutSeconds applies to a handler or job task only",
    ),
    "timeout-on-a-sub-workflow": (
        workflow("w", [{"name": "A", "workflowRef": {"name": "other"}, "timeoutSeconds": 10}]),
        "timeoutSeconds applies to a handler or job task only",
    ),
}

# A WorkflowRun's input and its signals' payloads must be objects; its workflowRef is required.
INPUT_NOT_AN_OBJECT = 'spec.input: Invalid value: "string": spec.input in body must be of type object'
SIGNAL_PAYLOADS = {"string": "yes", "list": [1, 2], "number": 5}  # by test id: not objects
SIGNAL_NOT_AN_OBJECT = (
    "spec.signals.approved: Invalid value: ",
    "spec.signals.approved in body must be of type object",
)
NO_WORKFLOW_REF = "spec.workflowRef: Required value"


def run_with_string_input() -> dict[str, Any]:
    run = workflow_run("r", "w")
    run["spec"]["input"] = "ORD-1"
    return run


def run_with_signal(payload: object) -> dict[str, Any]:
    run = workflow_run("r", "w")
    run["spec"]["signals"] = {"approved": payload}
    return run


def run_without_workflow_ref() -> dict[str, Any]:
    run = workflow_run("r", "w")
    del run["spec"]["workflowRef"]
    return run
