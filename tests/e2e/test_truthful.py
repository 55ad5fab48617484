"""End to end: runs stay truthful under inputs and actions outside the happy path: `when`
expressions over fields that are not there, trees of sub-workflows that would explode, a parent
deleted while its child runs, a run suspended while a Job step ends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.test_flows import finished
from tests.e2e.test_job_tasks import job_task
from tests.support import Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def ready(cluster: Cluster, namespace: str, name: str) -> dict:
    def seen() -> dict | None:
        status = cluster.get_json("workflow", name, "-n", namespace).get("status") or {}
        return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)

    return wait_for(seen, timeout=30, what=f"Workflow {name} to be checked")


def test_a_when_over_a_missing_field_fails_the_run_with_a_reason(
    cluster: Cluster, runs: Runs, namespace: str
):
    tasks = [
        {"name": "First", "handler": "test.step"},
        {"name": "Second", "handler": "test.step", "when": "input.missing > 3"},
    ]
    cluster.apply(workflow("gate", tasks), namespace=namespace)
    cluster.apply(workflow_run("r", "gate", {"n": 1}), namespace=namespace)
    status = finished(runs, namespace, "r", timeout=30)
    summary = condition(status)
    assert (status["phase"], summary["reason"]) == ("Failed", "ConditionFailed")
    assert summary["message"] == (
        "Task Second: when 'input.missing > 3' failed: no field 'missing' (test for it with has())"
    )
    phases = {n["id"]: n["phase"] for n in status["nodes"]}
    assert phases == {"First": "Succeeded", "Second": "Failed"}  # what ran is in the status
    assert ready(cluster, namespace, "gate")["status"] == "True"


def test_a_when_reading_a_step_that_is_not_there_makes_the_workflow_not_ready(
    cluster: Cluster, runs: Runs, namespace: str
):
    tasks = [
        {"name": "First", "handler": "test.step", "when": "steps.Later.phase == 'Succeeded'"},
        {"name": "Later", "handler": "test.step", "when": "steps.Nope.output.x == 1"},
    ]
    cluster.apply(workflow("reads", tasks), namespace=namespace)
    check = ready(cluster, namespace, "reads")
    assert (check["status"], check["reason"]) == ("False", "InvalidWorkflow")
    assert (
        "task First: when \"steps.Later.phase == 'Succeeded'\" reads steps.Later, a later step"
        in (check["message"])
    )
    assert "task Later: when 'steps.Nope.output.x == 1' reads steps.Nope, not a step" in check["message"]
    cluster.apply(workflow_run("r", "reads"), namespace=namespace)
    status = finished(runs, namespace, "r", timeout=30)
    assert (status["phase"], condition(status)["reason"]) == ("Failed", "InvalidWorkflow")


def test_a_chain_of_sub_workflows_too_deep_fails_for_good_at_every_level(
    cluster: Cluster, runs: Runs, namespace: str
):
    for level in range(10):  # chain-0 calls chain-1 ... chain-9: nested 9 deep, one more than allowed
        step = {"name": "Next", "workflowRef": {"name": f"chain-{level + 1}"}}
        tasks = [step if level < 9 else {"name": "Leaf", "handler": "test.step"}]
        cluster.apply(workflow(f"chain-{level}", tasks), namespace=namespace)
    for level in range(10):
        assert ready(cluster, namespace, f"chain-{level}")["status"] == "True"
    started = time.monotonic()
    cluster.apply(workflow_run("top", "chain-0"), namespace=namespace)
    status = finished(runs, namespace, "top", timeout=60)
    took = time.monotonic() - started
    items = cluster.get_json("workflowruns", "-n", namespace)["items"]
    assert len(items) == 10, [i["metadata"]["name"] for i in items]  # the top run and 9 children
    summary = condition(status)
    assert status["phase"] == "Failed" and summary["message"].count("DepthExceeded") == 1, summary
    assert "nested 9 deep" in summary["message"] and summary["message"].count("child run") == 1
    assert status["cause"]["reason"] == "DepthExceeded" and status["nodes"][0]["attempts"] == 1
    assert took < 30, f"the chain took {took:.1f} s to fail"


def test_deleting_a_parent_stops_its_running_child_at_once(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path
):
    executions = tmp_path / "executions"
    cluster.apply(workflow("slow", [{"name": "Count", "handler": "test.count"}]), namespace=namespace)
    cluster.apply(
        workflow("parent", [{"name": "Child", "workflowRef": {"name": "slow"}}]), namespace=namespace
    )
    cluster.apply(
        workflow_run("p", "parent", {"executions": str(executions), "sleep": 4}), namespace=namespace
    )

    def child_running() -> str | None:
        nodes = (runs.get(namespace, "p").get("status") or {}).get("nodes") or []
        name = nodes[0].get("child") if nodes else None
        if name is None:
            return None
        status = runs.get(namespace, name).get("status") or {}
        return name if status.get("current") == ["Count"] else None

    child = wait_for(child_running, timeout=30, what="the child's step to run")
    # Someone else's finalizer holds the child, as a slow garbage collector would.
    hold = '{"metadata":{"finalizers":["test.seqflow.io/hold","seqflow.io/history"]}}'
    cluster.kubectl("patch", "workflowrun", child, "-n", namespace, "--type=merge", "-p", hold)
    cluster.kubectl("delete", "workflowrun", "p", "-n", namespace, "--wait=false")
    time.sleep(5)  # past the end of the handler's sleep, had it gone on
    assert not executions.exists(), f"the handler of {child} ran on: {executions.read_text()}"
    assert runs.get(namespace, child)["status"]["phase"] == "Cancelled"
    release = '{"metadata":{"finalizers":null}}'
    cluster.kubectl("patch", "workflowrun", child, "-n", namespace, "--type=merge", "-p", release)
    wait_for(
        lambda: not cluster.get_json("workflowruns", "-n", namespace)["items"],
        timeout=60,
        what="the parent and its child to go",
    )


def test_a_suspended_run_says_so_after_its_job_step_ended(cluster: Cluster, runs: Runs, namespace: str):
    cluster.require_kwok()
    tasks = [
        job_task("Render", annotations={"test.seqflow.io/duration": "3s"}),
        {"name": "Publish", "handler": "test.step"},
    ]
    cluster.apply(workflow("render", tasks), namespace=namespace)
    cluster.apply(workflow_run("r", "render"), namespace=namespace)
    wait_for(
        lambda: (runs.get(namespace, "r").get("status") or {}).get("current") == ["Render"],
        timeout=30,
        what="the Job step to run",
    )
    cluster.kubectl(
        "patch", "workflowrun", "r", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )

    def render_done() -> dict | None:
        status = runs.get(namespace, "r").get("status") or {}
        nodes = {n["id"]: n["phase"] for n in status.get("nodes", [])}
        return status if nodes.get("Render") == "Succeeded" else None

    status = wait_for(render_done, timeout=60, what="the Job step to end")
    time.sleep(1)  # what the operator writes after
    status = runs.get(namespace, "r")["status"]
    summary = condition(status)
    assert (status["phase"], summary["reason"]) == ("Suspended", "Suspended"), summary
    assert summary["message"].endswith("; on resume, task Publish goes on")
    cluster.kubectl(
        "patch", "workflowrun", "r", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}'
    )
    assert finished(runs, namespace, "r", timeout=30)["phase"] == "Succeeded"
