"""Bad manifests are refused by the API server (the CRD schemas) with messages a user can act on."""

from __future__ import annotations

import pytest

from tests.support import Cluster, workflow, workflow_run

pytestmark = pytest.mark.cluster

HANDLER_TASK = {"name": "A", "handler": "x"}


def refused(cluster: Cluster, namespace: str, manifest: dict) -> str:
    done = cluster.apply(manifest, namespace=namespace, check=False)
    assert done.returncode != 0, f"accepted: {manifest}"
    return done.stderr


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (workflow("w", []), "spec.tasks: Invalid value: 0: spec.tasks in body should have at least 1 items"),
        (
            {"apiVersion": "seqflow.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w"}, "spec": {}},
            "spec.tasks: Required value",
        ),
        (workflow("w", [HANDLER_TASK, {"name": "A", "handler": "y"}]), "task names must be unique"),
        (
            workflow("w", [{"name": "A", "handler": "x", "job": {"image": "busybox"}}]),
            "a task needs exactly one of handler, job, http, sleep, wait, parallel, forEach or workflowRef",
        ),
        (
            workflow("w", [{"name": "A"}]),
            "a task needs exactly one of handler, job, http, sleep, wait, parallel, forEach or workflowRef",
        ),
        (
            workflow("w", [{"name": "A", "handler": "x", "sleep": {"seconds": 5}}]),
            "a task needs exactly one of handler, job, http, sleep, wait, parallel, forEach or workflowRef",
        ),
        (
            workflow("w", [{"name": "A", "sleep": {"seconds": 5, "until": "2026-01-01T00:00:00Z"}}]),
            "sleep needs exactly one of seconds or until",
        ),
        (
            workflow(
                "w",
                [{"name": "G", "parallel": [{"name": "M", "handler": "x"}, {"name": "M", "handler": "y"}]}],
            ),
            "member names must be unique",
        ),
        (
            workflow(
                "w", [{"name": "G", "parallel": [{"name": "M", "handler": "x", "job": {"image": "i"}}]}]
            ),
            "a member needs exactly one of handler, job or http",
        ),
        (
            workflow("w", [{"name": "F", "forEach": {"items": "input.xs", "step": {}}}]),
            "a forEach step needs exactly one of handler, job, http or workflowRef",
        ),
        (
            workflow(
                "w",
                [{"name": "F", "forEach": {"items": "input.xs", "as": "input", "step": {"handler": "x"}}}],
            ),
            "as may not be input, index, run or steps",
        ),
        (
            workflow("w", [{"name": "H", "http": {"url": "ftp://files.svc/x"}}]),
            "spec.tasks[0].http.url in body should match '^(https?://|\\{\\{)'",
        ),
        (
            workflow(
                "w",
                [
                    {
                        "name": "H",
                        "http": {
                            "url": "http://a.svc/",
                            "headers": [
                                {"name": "X", "value": "v", "secretKeyRef": {"name": "s", "key": "k"}}
                            ],
                        },
                    }
                ],
            ),
            "a header needs exactly one of value or secretKeyRef",
        ),
        (
            workflow("w", [{"name": "H", "http": {"url": "http://a.svc/"}, "timeoutSeconds": 5}]),
            "timeoutSeconds applies to a handler or job task only (a wait and an http step have their own",
        ),
        (
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
        (
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
        (
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
        (
            workflow("w", [{"name": "A", "handler": "x", "retry": {"maxRetries": -1}}]),
            "spec.tasks[0].retry.maxRetries: Invalid value: -1: "
            "spec.tasks[0].retry.maxRetries in body should be greater than or equal to 0",
        ),
        (
            workflow("w", [HANDLER_TASK], defaults={"retry": {"backoffSeconds": 0}}),
            "spec.defaults.retry.backoffSeconds in body should be greater than 0",
        ),
        (workflow("w", [{"name": "bad name!", "handler": "x"}]), "spec.tasks[0].name in body should match"),
        (
            workflow("w", [{"name": "A", "job": {"command": ["x"]}}]),
            "a job needs exactly one of image or podTemplate",
        ),
        (
            workflow("w", [{"name": "A", "job": {"image": "x", "podTemplate": {"spec": {}}}}]),
            "a job needs exactly one of image or podTemplate",
        ),
        (
            workflow("w", [{"name": "A", "handler": "x", "maxParallel": 2}]),
            "maxParallel and failFast apply to a parallel group only",
        ),
        (
            workflow("w", [{"name": "A", "handler": "x", "failFast": True}]),
            "maxParallel and failFast apply to a parallel group only",
        ),
        (
            workflow("w", [{"name": "A", "sleep": {"seconds": 5}, "timeoutSeconds": 10}]),
            "timeoutSeconds applies to a handler or job task only",
        ),
        (
            workflow("w", [{"name": "A", "workflowRef": {"name": "other"}, "timeoutSeconds": 10}]),
            "timeoutSeconds applies to a handler or job task only",
        ),
    ],
    ids=[
        "no-tasks",
        "tasks-missing",
        "duplicate-names",
        "handler-and-job",
        "neither",
        "handler-and-sleep",
        "sleep-seconds-and-until",
        "duplicate-members",
        "member-handler-and-job",
        "for-each-step-neither",
        "for-each-as-input",
        "http-url-not-http",
        "http-header-value-and-secret",
        "timeout-on-an-http-task",
        "artifacts-on-an-http-member",
        "tolerated-failures-not-a-percentage",
        "max-parallel-items-over-200",
        "negative-retries",
        "zero-backoff",
        "bad-task-name",
        "job-without-image",
        "job-image-and-template",
        "max-parallel-on-a-handler",
        "fail-fast-on-a-handler",
        "timeout-on-a-sleep",
        "timeout-on-a-sub-workflow",
    ],
)
def test_bad_workflow_is_refused(cluster: Cluster, crds: None, manifest: dict, message: str):
    assert message in refused(cluster, "default", manifest)


def test_run_input_must_be_an_object(cluster: Cluster, crds: None):
    run = workflow_run("r", "w")
    run["spec"]["input"] = "ORD-1"
    stderr = refused(cluster, "default", run)
    assert 'spec.input: Invalid value: "string": spec.input in body must be of type object' in stderr


@pytest.mark.parametrize("payload", ["yes", [1, 2], 5], ids=["string", "list", "number"])
def test_a_signal_payload_must_be_an_object(cluster: Cluster, crds: None, payload: object):
    run = workflow_run("r", "w")
    run["spec"]["signals"] = {"approved": payload}
    stderr = refused(cluster, "default", run)
    assert "spec.signals.approved: Invalid value: " in stderr
    assert "spec.signals.approved in body must be of type object" in stderr


def test_run_needs_a_workflow_ref(cluster: Cluster, crds: None):
    run = workflow_run("r", "w")
    del run["spec"]["workflowRef"]
    assert "spec.workflowRef: Required value" in refused(cluster, "default", run)


def test_good_manifests_are_accepted_unchanged(cluster: Cluster, crds: None):
    manifest = workflow(
        "valid",
        [HANDLER_TASK, {"name": "B", "job": {"image": "busybox", "command": ["true"]}}],
        defaults={"retry": {"maxRetries": 0}, "timeoutSeconds": 10},
    )
    cluster.apply(manifest, namespace="default")
    stored = cluster.get_json("workflow", "valid", "-n", "default")
    assert stored["spec"] == manifest["spec"]
