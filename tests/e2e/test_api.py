"""End to end: the HTTP API that acts (starting runs, listing Workflows, run control, signals,
the OpenAPI document) with the API server's RBAC deciding who may, and `kubectl seqflow start`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from seqflow.http.webhooks import signature
from seqflow.tracing import CALLER_ANNOTATION
from testenv.operator import OperatorProcess
from tests.e2e.operators import http_url
from tests.e2e.test_history import admin_token, get
from tests.e2e.test_plugin import plugin
from tests.support import Cluster, Runs, wait_for, workflow

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def post(
    operator: OperatorProcess, path: str, body: Any, token: str | None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(
        http_url(operator) + path, data=json.dumps(body).encode(), method="POST", headers=headers or {}
    )
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def test_start_runs_over_http_once_per_idempotency_key(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    token = admin_token(cluster)
    cluster.apply(workflow("quick", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    path = f"/api/v1/namespaces/{namespace}/workflows/quick/runs"
    key = {"Idempotency-Key": "order-42"}

    code, first, headers = post(operator, path, {"order": 42}, token, key)
    assert code == 201, first
    name = first["name"]
    assert headers["Location"] == f"/api/v1/namespaces/{namespace}/runs/{name}"
    again, second, _ = post(operator, path, {"order": 42}, token, key)
    assert (again, second["name"]) == (200, name)  # the same run, not a second one
    other, refused, _ = post(operator, path, {"order": 43}, token, key)
    assert other == 409 and "Idempotency-Key" in refused["error"]
    fresh, unnamed, _ = post(operator, path, {"order": 44}, token)
    assert fresh == 201 and unnamed["name"].startswith("quick-") and unnamed["name"] != name

    wait_for(lambda: runs.get(namespace, name).get("status", {}).get("phase") == "Succeeded", timeout=30)
    run = runs.get(namespace, name)
    assert run["spec"]["input"] == {"order": 42} and run["status"]["output"]["trail"] == ["A"]
    assert run["metadata"]["annotations"]["seqflow.io/created-by"] == "admin"
    missing, told, _ = post(operator, f"/api/v1/namespaces/{namespace}/workflows/nope/runs", {}, token)
    assert (missing, told["error"]) == (404, f'Workflow "nope" not found in namespace {namespace}')
    names = [r["metadata"]["name"] for r in cluster.get_json("workflowruns", "-n", namespace)["items"]]
    assert sorted(names) == sorted([name, unnamed["name"]])  # and none for the missing Workflow

    assert post(operator, path, ["not", "an", "object"], token)[0] == 400
    assert post(operator, path, {}, None)[0] == 401
    # bob may read the runs of the namespace, not create them
    cluster.kubectl(
        "create", "role", "reader", "--verb=get,list", "--resource=workflowruns.seqflow.io", "-n", namespace
    )
    cluster.kubectl("create", "rolebinding", "reader", "--role=reader", "--user=bob", "-n", namespace)
    bob = cluster.control_plane.token_for("bob")  # type: ignore[union-attr]
    wait_for(lambda: get(operator, f"/api/v1/runs?namespace={namespace}", bob)[0] == 200, timeout=45)
    code, denied, _ = post(operator, path, {}, bob)
    assert (
        code == 403
        and denied["error"] == f'user "bob" may not create workflowruns in namespace "{namespace}"'
    )


def test_list_workflows_and_steer_a_run_over_http(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    token = admin_token(cluster)
    steps = [{"name": "Gate", "wait": {"signal": "approved"}}, {"name": "After", "handler": "test.step"}]
    cluster.apply(workflow("gated", steps, description="waits for approval"), namespace=namespace)
    wait_for(lambda: "status" in cluster.get_json("workflow", "gated", "-n", namespace), timeout=30)
    code, listed = get(operator, f"/api/v1/namespaces/{namespace}/workflows", token)
    assert code == 200
    (gated,) = listed["items"]
    assert (gated["name"], gated["description"], gated["valid"]) == ("gated", "waits for approval", True)
    assert gated["tasks"] == ["Gate", "After"]
    assert gated["steps"] == [
        {"name": "Gate", "type": "wait", "detail": "approved"},
        {"name": "After", "type": "handler", "detail": "test.step"},
    ]
    alice = cluster.control_plane.token_for("alice")  # type: ignore[union-attr]
    assert get(operator, "/api/v1/workflows", alice)[0] == 403

    code, started, _ = post(operator, f"/api/v1/namespaces/{namespace}/workflows/gated/runs", {"n": 1}, token)
    run = f"/api/v1/namespaces/{namespace}/runs/{started['name']}"
    name = started["name"]
    wait_for(lambda: runs.get(namespace, name).get("status", {}).get("current") == ["Gate"], timeout=30)

    code, suspended, _ = post(operator, f"{run}/suspend", {}, token)
    assert code == 200 and suspended["spec"]["suspend"] is True
    wait_for(lambda: runs.get(namespace, name)["status"]["phase"] == "Suspended", timeout=30)
    assert post(operator, f"{run}/resume", {}, token)[1]["spec"]["suspend"] is False
    assert post(operator, f"{run}/explode", {}, token)[0] == 404
    assert post(operator, f"{run}/cancel", {}, alice)[0] == 403

    code, signalled, _ = post(operator, f"{run}/signals/approved", {"by": "carol"}, token)
    assert code == 200 and signalled["spec"]["signals"] == {"approved": {"by": "carol"}}
    wait_for(lambda: runs.get(namespace, name)["status"].get("phase") == "Succeeded", timeout=30)
    assert runs.get(namespace, name)["status"]["output"]["by"] == "carol"

    code, retried, _ = post(operator, f"{run}/retry", {}, token)
    assert code == 200 and retried["spec"]["retry"] == 1  # counted from what the run had
    code, again, headers = post(operator, f"{run}/rerun", {}, token)
    assert code == 201 and again["name"] != name and again["spec"]["input"] == {"n": 1}
    assert headers["Location"].endswith(f"/runs/{again['name']}")
    rerun = runs.get(namespace, again["name"])
    assert rerun["metadata"]["labels"]["seqflow.io/rerun-of"] == name
    bob = cluster.control_plane.token_for("bob")  # type: ignore[union-attr]
    assert post(operator, f"{run}/rerun", {}, bob)[0] == 403

    code, document = get(operator, "/api/v1/openapi.json")
    assert code == 200 and document["openapi"].startswith("3.")
    assert "/api/v1/namespaces/{namespace}/workflows/{workflow}/runs" in document["paths"]
    assert "WorkflowRunSpec" in document["components"]["schemas"]


def test_inputs_are_checked_before_a_run_is_created_and_schedules_are_listed(
    cluster: Cluster, namespace: str, operator: OperatorProcess
):
    token = admin_token(cluster)
    schema = {"type": "object", "required": ["order"], "properties": {"order": {"type": "integer"}}}
    cluster.apply(
        workflow("typed", [{"name": "A", "handler": "test.step"}], inputSchema=schema), namespace=namespace
    )
    path = f"/api/v1/namespaces/{namespace}/workflows/typed/runs"
    code, refused, _ = post(operator, path, {"order": "seven"}, token)
    assert code == 422 and "$.order: 'seven' is not of type 'integer'" in refused["error"]
    assert post(operator, path + "?dryRun=true", {"order": 7}, token)[:2] == (200, {"valid": True})
    assert cluster.get_json("workflowruns", "-n", namespace)["items"] == []  # neither created a run

    cluster.apply(
        {
            "apiVersion": "seqflow.io/v1alpha1",
            "kind": "WorkflowSchedule",
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "runTemplate": {"workflowRef": {"name": "typed"}}},
        },
        namespace=namespace,
    )

    def listed() -> dict[str, Any] | None:
        code, body = get(operator, f"/api/v1/namespaces/{namespace}/schedules", token)
        return (
            body["items"][0]
            if code == 200 and body["items"] and body["items"][0]["nextScheduleTime"]
            else None
        )

    nightly = wait_for(listed, timeout=30, what="the schedule's next time")
    assert (nightly["name"], nightly["workflow"], nightly["schedule"]) == ("nightly", "typed", "0 3 * * *")
    assert nightly["nextScheduleTime"].endswith("T03:00:00Z") and nightly["ready"] is True


def test_plugin_starts_a_run(cluster: Cluster, runs: Runs, namespace: str, tmp_path):
    cluster.apply(workflow("quick", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    data = tmp_path / "input.json"
    data.write_text('{"order": "ORD-9"}')
    done = plugin(cluster, "start", "quick", "--input", f"@{data}", "--wait", "-n", namespace)
    assert done.returncode == 0, done.stderr
    name = done.stdout.split()[0].removeprefix("workflowrun/")
    assert runs.get(namespace, name)["status"]["output"]["order"] == "ORD-9"
    bad = plugin(cluster, "start", "quick", "--input", "[1]", "-n", namespace)
    assert bad.returncode == 2 and bad.stderr.strip() == "kubectl seqflow: --input must be a JSON object"


def test_signed_webhooks_start_runs_and_refuse_anything_else(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    secret = b"s3cret-shared"
    cluster.kubectl(
        "create", "secret", "generic", "hook", f"--from-literal=secret={secret.decode()}", "-n", namespace
    )
    hooked = workflow(
        "hooked", [{"name": "A", "handler": "test.step"}], webhook={"secretRef": {"name": "hook"}}
    )
    cluster.apply(hooked, namespace=namespace)
    cluster.apply(workflow("plain", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    body = json.dumps({"order": 7}).encode()

    def deliver(
        workflow_name: str, *, at: float, key: bytes = secret, payload: bytes = body
    ) -> tuple[int, Any]:
        stamp = str(int(at))
        request = urllib.request.Request(
            f"{http_url(operator)}/hooks/{namespace}/{workflow_name}",
            data=payload,
            method="POST",
            headers={
                "X-Seqflow-Timestamp": stamp,
                "X-Seqflow-Signature": signature(key, timestamp=stamp, body=body),
                "traceparent": CALLER,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    now = time.time()
    code, started = deliver("hooked", at=now)
    assert code == 201, started
    wait_for(
        lambda: runs.get(namespace, started["name"]).get("status", {}).get("phase") == "Succeeded", timeout=30
    )
    assert runs.get(namespace, started["name"])["spec"]["input"] == {"order": 7}
    # the sender's trace goes on in the run's (with tracing on; see test_traces.py)
    assert runs.get(namespace, started["name"])["metadata"]["annotations"][CALLER_ANNOTATION] == CALLER
    refusals = [
        deliver("hooked", at=now),  # the same delivery again (a replay)
        deliver("hooked", at=now - 400),  # outside the 5-minute window
        deliver("hooked", at=now, key=b"wrong"),  # a wrong signature
        deliver("hooked", at=now + 1, payload=b'{"order": 8}'),  # a body other than the one signed
        deliver("plain", at=now),  # a Workflow without a webhook
        deliver("absent", at=now),
    ]
    assert refusals == [(401, {"error": "unauthorized"})] * 6
    hooked_runs = [r for r in cluster.get_json("workflowruns", "-n", namespace)["items"]]
    assert [r["metadata"]["name"] for r in hooked_runs] == [started["name"]]
