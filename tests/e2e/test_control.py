"""End to end: run control through the WorkflowRun's spec (kubectl patch), the way a user, a
GitOps commit or the plugin does it: suspend and resume, cancel, retry; immutable fields; and a
run written by seqflow 0.1 finishing after an upgrade."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.operators import start_operator
from tests.e2e.test_history import get
from tests.e2e.test_job_tasks import job_task, jobs_of
from tests.support import Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]
ROUND_1 = Path(__file__).resolve().parent.parent / "unit" / "data" / "round1-status.json"


def patch_spec(cluster: Cluster, namespace: str, name: str, spec: dict, *, check: bool = True):
    return cluster.kubectl(
        "patch",
        "workflowrun",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": spec}),
        check=check,
    )


def activity(cluster: Cluster, operator, namespace: str, name: str) -> list[str]:
    token = cluster.control_plane.token_for("admin") if cluster.control_plane else pytest.skip("token users")
    code, run = get(operator, f"/api/v1/namespaces/{namespace}/runs/{name}", token)
    assert code == 200, run
    return [e["event"] for e in run["activity"]]


def test_suspend_holds_the_next_step_and_resume_goes_on(
    cluster: Cluster, runs: Runs, namespace: str, operator
):
    steps = [{"name": n, "handler": "test.step"} for n in ("A", "B", "C")]
    cluster.apply(workflow("three", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "three", {"sleep": 1.5}), namespace=namespace)
    runs.watch(namespace, "r1", until=lambda s: s.get("current") == ["A"], timeout=30)
    patch_spec(cluster, namespace, "r1", {"suspend": True})

    suspended = runs.watch(
        namespace,
        "r1",
        until=lambda s: s.get("phase") == "Suspended" and s.get("progress") == "1/3",
        timeout=30,
    )[-1]
    assert condition(suspended)["reason"] == "Suspended" and suspended["current"] == []
    time.sleep(3)  # B would have started and finished by now
    held = runs.get(namespace, "r1")["status"]
    assert held["phase"] == "Suspended" and [n["id"] for n in held["nodes"]] == ["A"]
    row = cluster.kubectl("get", "workflowrun", "r1", "-n", namespace, "--no-headers").stdout.split()
    assert row[2] == "Suspended"

    patch_spec(cluster, namespace, "r1", {"suspend": False})
    cluster.kubectl("wait", "-n", namespace, "workflowrun/r1", "--for=condition=Succeeded", "--timeout=60s")
    assert runs.get(namespace, "r1")["status"]["output"]["trail"] == ["A", "B", "C"]
    wait_for(
        lambda: "RUN_RESUMED" in activity(cluster, operator, namespace, "r1"), timeout=30, what="history"
    )
    events = activity(cluster, operator, namespace, "r1")
    assert events.index("RUN_SUSPENDED") < events.index("RUN_RESUMED") < events.index("WORKFLOW_COMPLETED")


def test_cancel_deletes_the_running_job_and_ends_the_run(
    cluster: Cluster, runs: Runs, namespace: str, operator
):
    cluster.require_kwok()
    long_job = job_task("Crunch", annotations={"test.seqflow.io/duration": "600s"})
    cluster.apply(
        workflow("crunch", [{"name": "Prepare", "handler": "test.step"}, long_job]), namespace=namespace
    )
    cluster.apply(workflow_run("r1", "crunch"), namespace=namespace)
    wait_for(lambda: jobs_of(cluster, namespace, "r1"), timeout=30, what="the run's Job")

    began = time.monotonic()
    patch_spec(cluster, namespace, "r1", {"cancel": True})
    runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Cancelled", timeout=10)
    took = time.monotonic() - began
    assert took < 2, f"cancelled after {took:.1f} s"
    wait_for(lambda: not jobs_of(cluster, namespace, "r1"), timeout=30, what="the Job to be deleted")
    status = runs.get(namespace, "r1")["status"]
    assert [(n["id"], n["phase"]) for n in status["nodes"]] == [
        ("Prepare", "Succeeded"),
        ("Crunch", "Cancelled"),
    ]
    assert condition(status)["reason"] == "Cancelled"
    refused = patch_spec(cluster, namespace, "r1", {"cancel": False}, check=False)
    assert refused.returncode != 0 and "cancel cannot be undone" in refused.stderr


def test_cancel_stops_an_async_handler_at_once(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow("slow", [{"name": "Wait", "handler": "test.step"}]), namespace=namespace)
    cluster.apply(workflow_run("r1", "slow", {"sleep": 300}), namespace=namespace)
    runs.watch(namespace, "r1", until=lambda s: s.get("current") == ["Wait"], timeout=30)
    began = time.monotonic()
    patch_spec(cluster, namespace, "r1", {"cancel": True})
    runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Cancelled", timeout=10)
    assert time.monotonic() - began < 2


def test_retry_runs_a_failed_run_again_from_its_failed_step(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path, operator
):
    blocker = tmp_path / "blocker"
    blocker.touch()
    steps = [
        {"name": "Reserve", "handler": "test.step"},
        {"name": "Charge", "handler": "test.fails_while_file_exists"},
        {"name": "Ship", "handler": "test.step"},
    ]
    cluster.apply(workflow("shop", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "shop", {"blocker": str(blocker)}), namespace=namespace)
    failed = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Failed", timeout=30)[-1]
    assert "is in the way" in condition(failed)["message"]

    blocker.unlink()  # the cause is gone
    patch_spec(cluster, namespace, "r1", {"retry": 1})
    cluster.kubectl("wait", "-n", namespace, "workflowrun/r1", "--for=condition=Succeeded", "--timeout=60s")
    status = runs.get(namespace, "r1")["status"]
    assert [(n["id"], n["attempts"]) for n in status["nodes"]] == [("Reserve", 1), ("Charge", 2), ("Ship", 1)]
    assert status["output"]["trail"] == ["Reserve", "Charge", "Ship"]  # Reserve's output kept, not redone
    assert status["retried"] == 1
    wait_for(
        lambda: "WORKFLOW_COMPLETED" in activity(cluster, operator, namespace, "r1"),
        timeout=30,
        what="history",
    )
    events = activity(cluster, operator, namespace, "r1")
    assert events.index("WORKFLOW_FAILED") < events.index("RUN_RETRIED") < events.index("WORKFLOW_COMPLETED")
    lowered = patch_spec(cluster, namespace, "r1", {"retry": 0}, check=False)
    assert lowered.returncode != 0 and "retry only goes up" in lowered.stderr


@pytest.mark.usefixtures("crds")
def test_input_and_workflow_ref_cannot_change(cluster: Cluster, namespace: str):
    cluster.apply(workflow_run("r1", "nothing-here", {"order": "ORD-1"}), namespace=namespace)
    changed = patch_spec(cluster, namespace, "r1", {"input": {"order": "ORD-2"}}, check=False)
    assert changed.returncode != 0 and "input is immutable" in changed.stderr, changed.stderr
    moved = patch_spec(cluster, namespace, "r1", {"workflowRef": {"name": "other"}}, check=False)
    assert moved.returncode != 0 and "workflowRef is immutable" in moved.stderr, moved.stderr
    assert patch_spec(cluster, namespace, "r1", {"suspend": True}).returncode == 0  # control fields can


def test_round_1_run_in_flight_finishes_after_an_upgrade(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, operator_kubeconfig, tmp_path: Path
):
    """A run written by seqflow 0.1 with its second task's Job running (named the 0.1 way) is
    converted by today's operator, which finds that Job instead of starting another."""
    cluster.require_kwok()
    namespace = f"upgrade-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    steps = [
        {"name": "Reserve", "handler": "test.step"},
        {"name": "Render", "job": {"image": "registry.example/render:1"}, "retry": {"maxRetries": 2}},
        {"name": "Ship", "handler": "test.step"},
    ]
    cluster.apply(workflow("upgrade", steps), namespace=namespace)
    cluster.apply(workflow_run("up-1", "upgrade", {"order": "ORD-7"}), namespace=namespace)
    run = runs.get(namespace, "up-1")
    old_status = json.loads(ROUND_1.read_text())["status"]
    cluster.kubectl(
        "patch",
        "workflowrun",
        "up-1",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": old_status}),
    )
    old_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "up-1-1-2",
            "labels": {"app.kubernetes.io/managed-by": "seqflow", "seqflow.io/run": "up-1"},
            "ownerReferences": [
                {
                    "apiVersion": "seqflow.io/v1alpha1",
                    "kind": "WorkflowRun",
                    "name": "up-1",
                    "uid": run["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {
                    "annotations": {
                        "test.seqflow.io/duration": "2s",
                        "test.seqflow.io/message": '{"order": "ORD-7", "rendered": true}',
                    }
                },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "task", "image": "registry.example/render:1"}],
                },
            },
        },
    }
    cluster.apply(old_job, namespace=namespace)

    upgraded = start_operator(operator_kubeconfig, tmp_path / "upgraded.log", "upgrade-*", database_url)
    try:
        cluster.kubectl(
            "wait", "-n", namespace, "workflowrun/up-1", "--for=condition=Succeeded", "--timeout=90s"
        )
    finally:
        upgraded.stop()
    status = runs.get(namespace, "up-1")["status"]
    assert [(n["id"], n["attempts"]) for n in status["nodes"]] == [("Reserve", 1), ("Render", 2), ("Ship", 1)]
    assert "tasks" not in status and "currentTask" not in status
    assert status["output"]["rendered"] is True and status["output"]["trail"] == ["Ship"]
    assert [j["metadata"]["name"] for j in cluster.get_json("jobs", "-n", namespace)["items"]] == ["up-1-1-2"]


def test_ttl_deletes_the_finished_run_and_the_history_keeps_it(
    cluster: Cluster, runs: Runs, namespace: str, operator
):
    cluster.apply(workflow("brief", [{"name": "Only", "handler": "test.step"}]), namespace=namespace)
    run = workflow_run("r1", "brief")
    run["spec"]["ttlSecondsAfterFinished"] = 2
    cluster.apply(run, namespace=namespace)
    runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=30)
    began = time.monotonic()
    wait_for(
        lambda: cluster.kubectl("get", "workflowrun", "r1", "-n", namespace, check=False).returncode != 0,
        timeout=30,
        what="the run to be deleted",
    )
    assert 1.5 < time.monotonic() - began < 15
    assert activity(cluster, operator, namespace, "r1")[-1] == "WORKFLOW_COMPLETED"


def test_concurrency_limit_queues_runs_in_creation_order(cluster: Cluster, runs: Runs, namespace: str):
    limited = workflow("limited", [{"name": "Work", "handler": "test.step"}], concurrency={"limit": 2})
    cluster.apply(limited, namespace=namespace)
    for i in range(5):
        cluster.apply(workflow_run(f"r{i}", "limited", {"sleep": 4}), namespace=namespace)
        time.sleep(1.1)  # creation timestamps have whole seconds: make the order unambiguous

    seen_running: set[str] = set()
    most = 0
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        items = cluster.get_json("workflowruns", "-n", namespace)["items"]
        phases = {r["metadata"]["name"]: (r.get("status") or {}) for r in items}
        running = {n for n, s in phases.items() if s.get("phase") == "Running"}
        most = max(most, len(running))
        seen_running |= running
        queued = [s for s in phases.values() if s.get("phase") == "Pending" and s.get("conditions")]
        for status in queued:
            assert (
                condition(status)["reason"] == "Queued"
                and "runs at most 2 at once" in condition(status)["message"]
            )
        if all(s.get("phase") == "Succeeded" for s in phases.values()):
            break
        time.sleep(0.2)
    assert most <= 2, most
    statuses = [runs.get(namespace, f"r{i}")["status"] for i in range(5)]
    assert all(s["phase"] == "Succeeded" for s in statuses)
    starts = [s["startedAt"] for s in statuses]
    assert starts == sorted(starts)  # started in creation order
