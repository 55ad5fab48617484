"""End to end: the history of runs in MySQL, read through the operator's HTTP API and the CLI,
with access following the cluster's RBAC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from testenv.operator import OperatorProcess
from tests.e2e.operators import http_url
from tests.support import REPO, Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.mysql]


def get(operator: OperatorProcess, path: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(http_url(operator) + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def admin_token(cluster: Cluster) -> str:
    if cluster.control_plane is None:
        pytest.skip("needs the local control plane's token users")
    return cluster.control_plane.token_for("admin")


def history_written(runs: Runs, namespace: str, names: list[str]) -> None:
    def done() -> bool:
        statuses = [runs.get(namespace, n).get("status") or {} for n in names]
        return all(
            s.get("phase") in ("Succeeded", "Failed") and not s.get("pendingHistory") for s in statuses
        )

    wait_for(done, timeout=90, what="runs to finish and their history to be written")


def test_examples_history_is_complete_and_in_order(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, database_url: str
):
    for example in ("order-process", "refund-process", "user-onboarding"):
        cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "workflows" / f"{example}.yaml"))
    names = ["order-001", "refund-001", "refund-002-late", "onboarding-alice"]
    history_written(runs, namespace, names)
    token = admin_token(cluster)

    code, order = get(operator, f"/api/v1/namespaces/{namespace}/runs/order-001", token)
    assert code == 200, order
    assert order["phase"] == "Succeeded" and order["workflow"] == "order-process"
    assert order["input"] == {"order_id": "ORD-001", "amount": 1500, "flaky_gateway": True}
    assert order["output"]["email"] == "receipt for ORD-001 sent"
    attempts = [(a["task"], a["attempt"], a["phase"]) for a in order["attempts"]]
    assert attempts == [
        ("ValidateOrder", 1, "Succeeded"),
        ("DeductMoney", 1, "Failed"),
        ("DeductMoney", 2, "Succeeded"),
        ("SendEmail", 1, "Succeeded"),
    ]
    assert order["attempts"][1]["error"] == "ConnectionError: payment gateway timeout"
    assert order["attempts"][2]["input"] == order["attempts"][0]["output"]  # data flow, recorded
    activity = [(e["seq"], e["event"], e["task"], e["attempt"]) for e in order["activity"]]
    assert activity == [
        (1, "WORKFLOW_STARTED", None, None),
        (2, "TASK_STARTED", "ValidateOrder", 1),
        (3, "TASK_COMPLETED", "ValidateOrder", 1),
        (4, "TASK_STARTED", "DeductMoney", 1),
        (5, "TASK_RETRY", "DeductMoney", 1),
        (6, "TASK_STARTED", "DeductMoney", 2),
        (7, "TASK_COMPLETED", "DeductMoney", 2),
        (8, "TASK_STARTED", "SendEmail", 1),
        (9, "TASK_COMPLETED", "SendEmail", 1),
        (10, "WORKFLOW_COMPLETED", None, None),
    ]
    retry = order["activity"][4]["details"]
    assert retry["retry_count"] == 1 and retry["backoff_seconds"] == 2 and retry["max_retries"] == 5

    code, late = get(operator, f"/api/v1/namespaces/{namespace}/runs/refund-002-late", token)
    assert [e["event"] for e in late["activity"]] == [
        "WORKFLOW_STARTED",
        "TASK_STARTED",
        "TASK_FAILED",
        "WORKFLOW_FAILED",
    ]
    assert late["phase"] == "Failed" and "within 30 days" in late["error"]

    code, page = get(operator, f"/api/v1/runs?namespace={namespace}&limit=3", token)
    assert code == 200 and len(page["items"]) == 3 and page["next"]
    code, rest = get(operator, f"/api/v1/runs?namespace={namespace}&limit=3&cursor={page['next']}", token)
    listed = [r["name"] for r in page["items"] + rest["items"]]
    assert sorted(listed) == sorted(names) and rest["next"] is None
    code, failed = get(operator, f"/api/v1/runs?namespace={namespace}&phase=Failed", token)
    assert [r["name"] for r in failed["items"]] == ["refund-002-late"]

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqflow",
            "history",
            "list",
            "--namespace",
            namespace,
            "--workflow",
            "refund-process",
        ],
        env={**os.environ, "SEQFLOW_DATABASE_URL": database_url, "PYTHONPATH": str(REPO / "operator")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{namespace}/refund-001  refund-process  Succeeded" in cli.stdout
    assert f"{namespace}/refund-002-late  refund-process  Failed" in cli.stdout


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=abc", "limit must be an integer from 1 to 500, got 'abc'"),
        ("limit=0", "limit must be an integer from 1 to 500, got 0"),
        ("limit=501", "limit must be an integer from 1 to 500, got 501"),
        (
            "phase=Done",
            "phase must be one of Pending, Running, Suspended, Compensating, Succeeded, Failed, Cancelled",
        ),
        ("cursor=bm9wZQ", "cursor is not one this API returned"),
        (
            "namespaces=a",
            "unknown parameter(s) namespaces; "
            "use cursor, limit, namespace, phase, revision, since, until, workflow",
        ),
    ],
)
def test_bad_parameters_get_400(cluster: Cluster, operator: OperatorProcess, query: str, message: str):
    code, body = get(operator, f"/api/v1/runs?namespace=default&{query}", admin_token(cluster))
    assert code == 400 and body == {"error": message}


def test_missing_or_invalid_token_gets_401(cluster: Cluster, operator: OperatorProcess):
    code, body = get(operator, "/api/v1/runs?namespace=default")
    assert code == 401 and "bearer token" in body["error"]
    code, body = get(operator, "/api/v1/runs?namespace=default", token="not-a-token")
    assert code == 401 and body["error"] == "the bearer token is not valid for this cluster"


def test_user_bound_to_one_namespace_sees_only_that_one(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    admin_token(cluster)
    cluster.apply(
        {
            "apiVersion": "seqflow.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "w"},
            "spec": {"tasks": [{"name": "A", "handler": "test.step"}]},
        },
        namespace=namespace,
    )
    cluster.apply(
        {
            "apiVersion": "seqflow.io/v1alpha1",
            "kind": "WorkflowRun",
            "metadata": {"name": "mine"},
            "spec": {"workflowRef": {"name": "w"}},
        },
        namespace=namespace,
    )
    history_written(runs, namespace, ["mine"])
    cluster.kubectl(
        "create",
        "role",
        "run-reader",
        "-n",
        namespace,
        "--verb=get,list",
        "--resource=workflowruns.seqflow.io",
    )
    cluster.kubectl("create", "rolebinding", "bob-reads", "-n", namespace, "--role=run-reader", "--user=bob")
    bob = cluster.control_plane.token_for("bob")

    code, body = get(operator, f"/api/v1/runs?namespace={namespace}", bob)
    assert code == 200 and [r["name"] for r in body["items"]] == ["mine"]
    code, body = get(operator, f"/api/v1/namespaces/{namespace}/runs/mine", bob)
    assert code == 200 and body["phase"] == "Succeeded"
    code, body = get(operator, "/api/v1/runs?namespace=default", bob)
    assert code == 403 and body["error"] == 'user "bob" may not list workflowruns in namespace "default"'
    code, body = get(operator, "/api/v1/namespaces/default/runs/mine", bob)
    assert code == 403
    code, body = get(operator, "/api/v1/runs", bob)
    assert code == 403 and "in all namespaces (pass ?namespace=)" in body["error"]
    code, body = get(operator, f"/api/v1/namespaces/{namespace}/runs/nope", bob)
    assert code == 404


def test_probes(operator: OperatorProcess):
    assert get(operator, "/healthz") == (200, {"status": "ok"})
    assert get(operator, "/readyz") == (200, {"status": "ok"})


def get_text(operator: OperatorProcess, path: str, token: str) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(http_url(operator) + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def test_a_handlers_log_lines_are_kept_with_its_attempt(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    """The logging records a handler emits, per attempt, from the history API under the run's
    RBAC; a handler that logs nothing keeps no log."""
    token = admin_token(cluster)
    steps = [{"name": "Charge", "handler": "test.traced"}, {"name": "Quiet", "handler": "test.step"}]
    cluster.apply(workflow("chatty", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "chatty", {"lines": 4}), namespace=namespace)
    history_written(runs, namespace, ["r1"])

    logs = f"/api/v1/namespaces/{namespace}/runs/r1/logs"
    code, body = wait_for(
        lambda: (found := get(operator, logs, token))[1].get("items") and found,
        timeout=30,
        what="the kept log to be listed",
    )
    assert code == 200
    (kept,) = body["items"]
    assert (kept["task"], kept["attempt"], kept["truncated"]) == ("Charge", 1, False)
    code, text, headers = get_text(operator, f"{logs}/Charge/1", token)
    assert code == 200 and headers["X-Seqflow-Log-Size"] == str(kept["size"]) == str(len(text.encode()))
    lines = [line for line in text.splitlines() if "shop.payments" in line]
    assert [line.split(": ", 1)[1] for line in lines] == [f"charging, line {i} of Charge" for i in range(4)]
    assert all(" INFO shop.payments: " in line for line in lines)

    code, _, _ = get_text(operator, f"{logs}/Quiet/1", token)
    assert code == 404
    code, _, _ = get_text(operator, f"{logs}/Charge/1", cluster.control_plane.token_for("bob"))
    assert code == 403  # bob may not get workflowruns here
