"""End to end: bad input and faults end every run with a true status and a complete history,
seen through kubectl, the API server and the history API only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from kubernetes import client, config

from testenv.operator import OperatorProcess
from tests.e2e.test_history import admin_token, get
from tests.e2e.test_job_tasks import job_task, jobs_of
from tests.support import REPO, Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.mysql]


def finished_and_recorded(runs: Runs, namespace: str, name: str, phase: str) -> dict:
    """The run's status once it is `phase` and its whole history has reached the store."""

    def done() -> dict | None:
        status = runs.get(namespace, name).get("status") or {}
        return status if status.get("phase") == phase and not status.get("pendingHistory") else None

    return wait_for(done, timeout=60, what=f"run {name} to be {phase} with its history written")


def history_of(cluster: Cluster, operator: OperatorProcess, namespace: str, name: str) -> dict:
    code, run = get(operator, f"/api/v1/namespaces/{namespace}/runs/{name}", admin_token(cluster))
    assert code == 200, run
    return run


def kubectl_row(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    """The default `kubectl get workflowrun` columns of one run, by header (cut at the header's
    column starts: empty cells stay empty)."""
    table = cluster.kubectl("get", "workflowrun", name, "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    ends = [*starts[1:], None]
    return {header[a:b].strip(): row[a:b].strip() for a, b in zip(starts, ends, strict=True)}


def reason_is(reason: str):
    return lambda status: bool(status.get("conditions")) and condition(status)["reason"] == reason


def events_of(cluster: Cluster, namespace: str, name: str) -> list[dict]:
    listing = cluster.get_json("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return listing["items"]


@pytest.mark.parametrize(
    ("workflow_name", "tasks", "reason"),
    [
        ("missing", None, "WorkflowNotFound"),
        ("typo", [{"name": "First", "handler": "no.such.handler"}], "HandlerNotFound"),
    ],
)
def test_run_failing_before_its_first_task_has_its_history_written(
    cluster: Cluster,
    runs: Runs,
    namespace: str,
    operator: OperatorProcess,
    workflow_name: str,
    tasks: list | None,
    reason: str,
):
    if tasks is not None:
        cluster.apply(workflow(workflow_name, tasks), namespace=namespace)
    cluster.apply(workflow_run("r1", workflow_name), namespace=namespace)

    finished_and_recorded(runs, namespace, "r1", "Failed")
    history = history_of(cluster, operator, namespace, "r1")
    assert history["phase"] == "Failed" and reason in [
        e["details"].get("reason") for e in history["activity"]
    ]
    assert history["activity"][-1]["event"] == "WORKFLOW_FAILED"
    assert kubectl_row(cluster, namespace, "r1")["REASON"] == reason


def test_an_input_over_the_limit_fails_the_run_with_input_too_large_naming_both_sizes(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    cluster.apply(workflow("big", [{"name": "Only", "handler": "test.step"}]), namespace=namespace)
    size = 17 * 1024 * 1024  # a reference to a value over SEQFLOW_MAX_VALUE_BYTES (16 MiB)
    manifest = workflow_run("over", "big", {})
    manifest["spec"] = {
        "workflowRef": {"name": "big"},
        "inputRef": {"ref": "sha256:" + "0" * 64, "size": size},
    }
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    status = finished_and_recorded(runs, namespace, "over", "Failed")
    cond = condition(status)
    assert cond["reason"] == "InputTooLarge", cond
    assert (
        f"The input is {size} bytes of JSON, more than the {16 * 1024 * 1024} a run takes" in cond["message"]
    )
    assert "pinnedTasks" not in status  # it never started
    row = kubectl_row(cluster, namespace, "over")
    assert (row["PHASE"], row["REASON"]) == ("Failed", "InputTooLarge")
    assert history_of(cluster, operator, namespace, "over")["phase"] == "Failed"


def test_run_too_large_to_take_a_status_says_so_in_an_event(cluster: Cluster, runs: Runs, namespace: str):
    # A run just below the size etcd stores (1.5 MiB): found by creating smaller ones until one
    # is taken (dry runs stop before etcd, so they cannot tell).
    api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    size = 1_572_864
    while True:
        try:
            manifest = workflow_run("huge", "no-such-workflow", {"blob": "x" * size})
            api.create_namespaced_custom_object("seqflow.io", "v1alpha1", namespace, "workflowruns", manifest)
            break
        except client.ApiException as error:
            assert "too large" in str(error.body), error.body[:500]
            size -= 100

    def told() -> list[dict]:
        return [e for e in events_of(cluster, namespace, "huge") if e["reason"] == "RunTooLarge"]

    (event,) = wait_for(told, timeout=30, what="an Event saying the run is too large")
    assert event["type"] == "Warning" and "too large" in event["message"]
    assert not runs.get(namespace, "huge").get("status")  # nothing could be written


def test_run_deleted_while_running_ends_cancelled_in_the_history(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess, database_url: str
):
    steps = [{"name": "Slow", "handler": "test.step"}, {"name": "Next", "handler": "test.step"}]
    cluster.apply(workflow("slow", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "slow", {"sleep": 5}), namespace=namespace)
    runs.watch(namespace, "r1", until=lambda s: s.get("current") == ["Slow"], timeout=30)
    # (An in-process attempt in flight finishes first; its result is dropped.)
    cluster.kubectl("delete", "workflowrun", "r1", "-n", namespace, "--timeout=60s")

    run = history_of(cluster, operator, namespace, "r1")
    assert run["phase"] == "Cancelled" and run["finishedAt"]
    assert [(a["task"], a["phase"]) for a in run["attempts"]] == [("Slow", "Cancelled")]
    assert [e["event"] for e in run["activity"]][-2:] == ["TASK_CANCELLED", "WORKFLOW_CANCELLED"]
    listed = subprocess.run(
        [sys.executable, "-m", "seqflow", "history", "list", "--namespace", namespace, "--phase", "Running"],
        env={"SEQFLOW_DATABASE_URL": database_url, "PYTHONPATH": str(REPO / "operator")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "r1" not in listed.stdout


@pytest.mark.usefixtures("operator")
def test_orphaned_job_of_an_earlier_run_blocks_visibly_until_removed(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.require_kwok()
    long_job = job_task("Crunch", annotations={"test.seqflow.io/duration": "600s"})
    cluster.apply(workflow("crunch", [long_job]), namespace=namespace)
    cluster.apply(workflow_run("r1", "crunch"), namespace=namespace)
    wait_for(lambda: jobs_of(cluster, namespace, "r1"), timeout=30, what="the first run's Job")
    cluster.kubectl("delete", "workflowrun", "r1", "-n", namespace, "--cascade=orphan", "--timeout=30s")
    (orphan,) = cluster.get_json("jobs", "-n", namespace)["items"]

    cluster.apply(workflow_run("r1", "crunch"), namespace=namespace)
    status = runs.watch(namespace, "r1", until=reason_is("AttemptBlocked"), timeout=30)[-1]
    name = orphan["metadata"]["name"]
    assert f"a Job named {name} already exists" in condition(status)["message"]
    assert f"kubectl delete job -n {namespace} {name}" in condition(status)["message"]
    assert kubectl_row(cluster, namespace, "r1")["REASON"] == "AttemptBlocked"
    blocked = [e for e in events_of(cluster, namespace, "r1") if e["reason"] == "AttemptBlocked"]
    assert len(blocked) == 1 and blocked[0]["type"] == "Warning"

    cluster.kubectl("delete", "job", name, "-n", namespace, "--cascade=background")
    runs.watch(namespace, "r1", until=reason_is("TaskStarted"), timeout=60)
    new_jobs = wait_for(lambda: jobs_of(cluster, namespace, "r1"), timeout=30, what="the new run's Job")
    assert new_jobs[0]["metadata"]["uid"] != orphan["metadata"]["uid"]


@pytest.mark.usefixtures("operator")
def test_small_truths_events_field_manager_and_permanent_output_errors(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.apply(workflow("one", [{"name": "Only", "handler": "test.step"}]), namespace=namespace)
    cluster.apply(workflow_run("r1", "one"), namespace=namespace)
    finished_and_recorded(runs, namespace, "r1", "Succeeded")
    messages = {e["reason"]: e["message"] for e in events_of(cluster, namespace, "r1")}
    assert "1 task)" in messages["Started"] and messages["Succeeded"] == "The task succeeded"
    body = cluster.get_json("workflowrun", "r1", "-n", namespace, "--show-managed-fields")
    managers = {(f["manager"], f.get("subresource", "")) for f in body["metadata"]["managedFields"]}
    assert ("seqflow", "status") in managers and ("seqflow", "") in managers
    assert not [m for m, _ in managers if m == "Python"]

    retry = {"maxRetries": 3, "backoffSeconds": 0.2}
    too_big = {"name": "Huge", "handler": "test.huge_output", "retry": retry}
    cluster.apply(workflow("huge", [too_big]), namespace=namespace)
    cluster.apply(workflow_run("r2", "huge"), namespace=namespace)
    status = finished_and_recorded(runs, namespace, "r2", "Failed")
    assert status["nodes"][0]["attempts"] == 1
    message = condition(status)["message"]
    assert "permanent error" in message and f"more than the {16 * 1024 * 1024} a step may return" in message
    assert condition(status)["reason"] == "OutputTooLarge"


@pytest.mark.usefixtures("operator")
def test_onboarding_without_an_email_fails_at_once_saying_so(cluster: Cluster, runs: Runs, namespace: str):
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "workflows" / "user-onboarding.yaml"))
    manifest = workflow_run("no-email", "user-onboarding", {"name": "Bob"})
    cluster.apply(manifest, namespace=namespace)
    status = finished_and_recorded(runs, namespace, "no-email", "Failed")
    assert status["nodes"][0]["attempts"] == 1
    assert "email is required" in condition(status)["message"]
