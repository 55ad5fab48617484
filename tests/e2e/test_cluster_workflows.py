"""End to end: a ClusterWorkflow run from two namespaces on the real API server, its Job step and
its sub-workflow's child run in each run's own namespace, and the cluster's RBAC deciding who may
run it where (creating the WorkflowRun is the right to run it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.test_job_tasks import job_task, jobs_of, wait_phase
from tests.e2e.test_plugin import plugin
from tests.support import Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def cluster_workflow(name: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {**workflow(name, tasks), "kind": "ClusterWorkflow"}


def run_of_cluster_workflow(name: str, workflow_name: str) -> dict[str, Any]:
    run = workflow_run(name, workflow_name)
    run["spec"]["workflowRef"]["kind"] = "ClusterWorkflow"
    return run


def ready_of(cluster: Cluster, name: str) -> dict[str, Any]:
    conditions = cluster.get_json("clusterworkflow", name).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


@pytest.fixture
def shared(cluster: Cluster) -> Iterator[str]:
    """A ClusterWorkflow (a handler, a Job, a ClusterWorkflow as a sub-workflow), removed after."""
    name = f"shared-{uuid.uuid4().hex[:6]}"
    child = cluster_workflow(f"{name}-child", [{"name": "Inner", "handler": "test.step"}])
    steps = [
        job_task("Export"),  # its output: {"job": POD, "input": ...} (testenv/kwok-stages.yaml)
        {"name": "A", "handler": "test.step"},
        {"name": "Child", "workflowRef": {"kind": "ClusterWorkflow", "name": f"{name}-child"}},
    ]
    for manifest in (child, cluster_workflow(name, steps)):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    yield name
    cluster.kubectl("delete", "clusterworkflow", name, f"{name}-child", "--wait=false")


def test_a_cluster_workflow_runs_in_each_namespace_it_is_run_from(
    cluster: Cluster, runs: Runs, namespace: str, shared: str
):
    cluster.require_kwok()
    other = f"{namespace[:50]}-b"
    cluster.kubectl("create", "namespace", other)
    wait_for(lambda: ready_of(cluster, shared).get("status") == "True", timeout=30, what="it Ready")
    for where in (namespace, other):
        cluster.apply(run_of_cluster_workflow("r", shared), namespace=where)
    for where in (namespace, other):
        wait_phase(cluster, where, "r", "Succeeded", timeout=90)
        run = runs.get(where, "r")
        assert run["status"]["output"]["trail"] == ["A", "Inner"]
        assert run["status"]["output"]["job"].startswith("r-export-")  # the Job's pod, in its namespace
        (job,) = jobs_of(cluster, where, "r")  # in the run's own namespace
        assert job["metadata"]["namespace"] == where
        child = run["status"]["nodes"][-1]["child"]
        assert runs.get(where, child)["spec"]["workflowRef"] == {
            "kind": "ClusterWorkflow",
            "name": f"{shared}-child",
        }

    listed = cluster.kubectl("get", "clusterworkflows", shared).stdout
    assert "True" in listed.splitlines()[1] and "Valid" in listed.splitlines()[1]


def test_creating_the_run_is_the_right_to_run_a_cluster_workflow(
    cluster: Cluster, namespace: str, shared: str
):
    other = f"{namespace[:50]}-c"
    cluster.kubectl("create", "namespace", other)
    cluster.kubectl(
        "create",
        "role",
        "run-workflows",
        "-n",
        namespace,
        "--verb=create,get",
        "--resource=workflowruns.seqflow.io",
    )
    cluster.kubectl(
        "create", "rolebinding", "bob-runs", "-n", namespace, "--role=run-workflows", "--user=bob"
    )
    allowed = cluster.kubectl(
        "create",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(run_of_cluster_workflow("bobs", shared)),
        user="bob",
    )
    assert allowed.returncode == 0, allowed.stderr
    refused = cluster.kubectl(
        "create",
        "-n",
        other,
        "-f",
        "-",
        input=json.dumps(run_of_cluster_workflow("bobs", shared)),
        user="bob",
        check=False,
    )
    assert refused.returncode != 0
    forbidden = 'User "bob" cannot create resource "workflowruns" in API group "seqflow.io" in the namespace'
    assert f'{forbidden} "{other}"' in refused.stderr
    # the plugin starts one too
    started = plugin(cluster, "-n", namespace, "start", shared, "--cluster", "--wait", "--timeout", "60")
    assert started.returncode == 0, started.stderr


def test_a_cluster_workflow_may_not_run_a_namespaces_workflow(cluster: Cluster, namespace: str):
    name = f"bad-{uuid.uuid4().hex[:6]}"
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(cluster_workflow(name, [{"name": "Local", "workflowRef": {"name": "x"}}])),
    )
    try:
        ready = wait_for(lambda: ready_of(cluster, name), timeout=30, what="its Ready condition")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidWorkflow")
        assert (
            ready["message"] == 'task Local: a ClusterWorkflow runs ClusterWorkflows only, not Workflow "x"'
        )
        cluster.apply(run_of_cluster_workflow("r", name), namespace=namespace)
        wait_phase(cluster, namespace, "r", "Failed", timeout=60)
        refused = cluster.apply(
            {
                **run_of_cluster_workflow("pinned", name),
                "spec": {"workflowRef": {"kind": "ClusterWorkflow", "name": name, "revision": 1}},
            },
            namespace=namespace,
            check=False,
        )
        assert "revision is for Workflows: a ClusterWorkflow runs its current spec" in refused.stderr
    finally:
        cluster.kubectl("delete", "clusterworkflow", name, "--wait=false")
