"""End to end: sub-workflows (child runs) and compensation, and the examples that use every step
kind, applied with kubectl and steered with the plugin as a user would."""

from __future__ import annotations

import pytest

from testenv.operator import OperatorProcess
from tests.e2e.test_history import admin_token, get
from tests.e2e.test_plugin import plugin
from tests.support import REPO, Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]

FINISHED = ("Succeeded", "Failed", "Cancelled")


def finished(runs: Runs, namespace: str, name: str, timeout: float = 60) -> dict:
    wait_for(
        lambda: (runs.get(namespace, name).get("status") or {}).get("phase") in FINISHED,
        timeout=timeout,
        what=f"run {name} to finish",
    )
    return runs.get(namespace, name)["status"]


def nodes(status: dict) -> dict[str, str]:
    return {n["id"]: n["phase"] for n in status["nodes"]}


def child_of(runs: Runs, namespace: str, status: dict, step: str) -> dict:
    (node,) = [n for n in status["nodes"] if n["id"] == step]
    return runs.get(namespace, node["child"])


def test_round_2_examples(cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess):
    for name in ("shipping", "order-fulfilment", "expense-approval", "money-transfer"):
        cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "workflows" / f"{name}.yaml"))

    # The approval gate waits, saying for what, until the plugin signals it.
    wait_for(
        lambda: (runs.get(namespace, "expense-042").get("status") or {}).get("current") == ["Approval"],
        timeout=30,
        what="the expense to wait for its approval",
    )
    waiting = runs.get(namespace, "expense-042")["status"]
    assert waiting["phase"] == "Running" and condition(waiting)["reason"] == "Waiting"
    assert condition(waiting)["message"].startswith("Task Approval waits for signal approved until ")
    signalled = plugin(
        cluster,
        "signal",
        "expense-042",
        "approved",
        "--data",
        '{"approved_by": "alice"}',
        "-n",
        namespace,
        "--wait",
    )
    assert signalled.returncode == 0, signalled.stderr
    expense = runs.get(namespace, "expense-042")["status"]
    assert expense["output"]["approved_by"] == "alice" and expense["output"]["paid"] == 120

    # The order: fraud check only above 1000, shipping as a child run, notifications in parallel.
    big, small = (finished(runs, namespace, n) for n in ("fulfil-big", "fulfil-small"))
    assert (big["phase"], small["phase"]) == ("Succeeded", "Succeeded")
    assert nodes(big)["FraudCheck"] == "Succeeded" and nodes(small)["FraudCheck"] == "Skipped"
    child = child_of(runs, namespace, big, "Ship")
    assert child["spec"]["workflowRef"]["name"] == "shipping"
    assert child["spec"]["input"]["order_id"] == "ORD-100"  # the step's input
    assert child["metadata"]["labels"]["seqflow.io/depth"] == "1"
    (owner,) = child["metadata"]["ownerReferences"]
    parent = runs.get(namespace, "fulfil-big")
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "WorkflowRun",
        parent["metadata"]["uid"],
        True,
    )
    tracking = child["status"]["output"]["tracking"]
    assert big["output"]["tracking"] == tracking  # the child's output is the step's output
    assert big["output"]["email"] == "confirmation for ORD-100 sent to ann@example.com"
    assert big["output"]["sms"] == f"ORD-100 is on its way ({tracking})"
    tree = plugin(cluster, "tree", "fulfil-big", "-n", namespace)
    assert f"workflowrun/{child['metadata']['name']}" in tree.stdout and "    Dispatch" in tree.stdout
    ready = cluster.get_json("workflow", "order-fulfilment", "-n", namespace)["status"]
    assert condition(ready, "Ready")["status"] == "True"

    # The saga: the credit fails for good, the debit is refunded, and the history has it all.
    closed = finished(runs, namespace, "transfer-002-closed")
    assert closed["phase"] == "Failed" and condition(closed)["reason"] == "Compensated"
    assert condition(closed)["message"] == (
        "Task Credit failed (permanent error): account ACC-CLOSED is closed; compensated Debit"
    )
    assert nodes(closed) == {"Debit": "Compensated", "Credit": "Failed", "Debit:compensate": "Succeeded"}
    assert finished(runs, namespace, "transfer-001")["phase"] == "Succeeded"
    wait_for(
        lambda: not runs.get(namespace, "transfer-002-closed")["status"].get("pendingHistory"),
        timeout=30,
        what="the saga's history to be written",
    )
    code, history = get(
        operator, f"/api/v1/namespaces/{namespace}/runs/transfer-002-closed", admin_token(cluster)
    )
    assert code == 200, history
    events = [(e["event"], e["task"]) for e in history["activity"]]
    assert events[-5:] == [
        ("TASK_FAILED", "Credit"),
        ("COMPENSATION_STARTED", None),
        ("TASK_STARTED", "Debit:compensate"),
        ("TASK_COMPLETED", "Debit:compensate"),
        ("WORKFLOW_FAILED", None),
    ]
    refund = next(a for a in history["attempts"] if a["task"] == "Debit:compensate")
    debit = next(a for a in history["attempts"] if a["task"] == "Debit")
    assert refund["input"] == debit["output"] and refund["output"]["refunded"] == 90


def gate(name: str, signal: str) -> dict:
    return {"name": name, "wait": {"signal": signal}}


def test_suspend_and_cancel_reach_the_child_and_compensations_run(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.apply(workflow("inner", [{"name": "Hold", "wait": {"signal": "go"}}]), namespace=namespace)
    steps = [
        {"name": "Book", "handler": "test.step", "compensate": {"handler": "test.step"}},
        {"name": "Inner", "workflowRef": {"name": "inner"}},
    ]
    cluster.apply(workflow("outer", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "outer"), namespace=namespace)
    wait_for(
        lambda: any(n.get("child") for n in (runs.get(namespace, "r1").get("status") or {}).get("nodes", [])),
        timeout=30,
        what="the child run",
    )
    name = child_of(runs, namespace, runs.get(namespace, "r1")["status"], "Inner")["metadata"]["name"]
    wait_for(
        lambda: (runs.get(namespace, name).get("status") or {}).get("current") == ["Hold"],
        timeout=30,
        what="the child to wait",
    )

    for verb, suspended in (("suspend", True), ("resume", False)):
        assert plugin(cluster, verb, "r1", "-n", namespace).returncode == 0
        wait_for(
            lambda suspended=suspended: bool(runs.get(namespace, name)["spec"].get("suspend")) is suspended,
            timeout=30,
            what=f"the child to be {verb}d",
        )
    wait_for(lambda: runs.get(namespace, name)["status"]["phase"] == "Running", timeout=30, what="resumed")

    cancelled = plugin(cluster, "cancel", "r1", "-n", namespace, "--wait")
    assert cancelled.returncode == 1  # finished, not Succeeded
    status = runs.get(namespace, "r1")["status"]
    assert status["phase"] == "Cancelled" and condition(status)["reason"] == "Compensated"
    assert nodes(status) == {"Book": "Compensated", "Inner": "Cancelled", "Book:compensate": "Succeeded"}
    compensation = next(n for n in status["nodes"] if n["id"] == "Book:compensate")
    assert compensation["startedAt"] >= next(n for n in status["nodes"] if n["id"] == "Inner")["finishedAt"]
    assert finished(runs, namespace, name)["phase"] == "Cancelled"  # the child, too

    cluster.kubectl("delete", "workflowrun", "r1", "-n", namespace)
    wait_for(
        lambda: (
            cluster.kubectl("get", "workflowrun", name, "-n", namespace, "--ignore-not-found").stdout == ""
        ),
        timeout=60,
        what="the child to be deleted with its parent",
    )


def test_sub_workflows_in_a_loop_are_refused_with_the_loop_named(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.apply(
        workflow("ping", [{"name": "ToPong", "workflowRef": {"name": "pong"}}]), namespace=namespace
    )
    wait_for(lambda: "status" in cluster.get_json("workflow", "ping", "-n", namespace), timeout=30)
    missing = condition(cluster.get_json("workflow", "ping", "-n", namespace)["status"], "Ready")
    assert (missing["status"], missing["message"]) == ("False", 'task ToPong: sub-workflow "pong" not found')

    cluster.apply(
        workflow("pong", [{"name": "ToPing", "workflowRef": {"name": "ping"}}]), namespace=namespace
    )

    def loop_named() -> bool:
        ready = condition(cluster.get_json("workflow", "ping", "-n", namespace)["status"], "Ready")
        return (
            ready["message"] == "task ToPong: sub-workflows call each other in a loop: ping -> pong -> ping"
        )

    wait_for(loop_named, timeout=30, what="the loop to be named")
    table = cluster.kubectl("get", "workflows", "-n", namespace).stdout
    assert "InvalidWorkflow" in table
    cluster.apply(workflow_run("r1", "ping"), namespace=namespace)
    failed = finished(runs, namespace, "r1")
    assert failed["phase"] == "Failed" and condition(failed)["reason"] == "InvalidWorkflow"
    assert "ping -> pong -> ping" in condition(failed)["message"]
