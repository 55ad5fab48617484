"""End to end: Job steps as Jobs seqflow runs itself (SEQFLOW_JOB_STEPS_AS=ManagedJob, the
chart's role for it), pods played by kwok: each attempt a Job naming seqflow in spec.managedBy,
its pod made by seqflow and owned by the Job, the Job's status written when the pod ends, so
`kubectl wait --for=condition=complete`, `kubectl get jobs` and the TTL controller see ordinary
Jobs; failures, exit code 65, a deleted pod, a cancel and an operator restart as with Jobs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from seqflow.executors.managed import MANAGED_JOBS
from testenv.operator import OperatorProcess
from tests.e2e.operators import bind_chart_rbac, start_operator
from tests.e2e.test_job_tasks import (
    a_deleted_pod_is_made_again_and_a_cancel_removes_it,
    job_task,
    jobs_of,
    pods_of,
    wait_phase,
)
from tests.support import MANAGED_JOBS_USER, Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster]


@pytest.fixture(scope="module")
def managed_namespace(cluster: Cluster) -> Iterator[str]:
    cluster.require_kwok()
    bind_chart_rbac(cluster, MANAGED_JOBS_USER, release="seqflow-managed", values="jobStepsAs=ManagedJob")
    name = f"managed-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


def start(cluster: Cluster, namespace: str, database_url: str, log: Path, **settings: str) -> OperatorProcess:
    kubeconfig = cluster.kubeconfig_for(MANAGED_JOBS_USER)
    return start_operator(
        kubeconfig, log, namespace, database_url, SEQFLOW_JOB_STEPS_AS="ManagedJob", **settings
    )


def condition_types(job: dict) -> list[str]:
    return [c["type"] for c in job.get("status", {}).get("conditions") or [] if c["status"] == "True"]


def test_managed_jobs_run_pass_outputs_fail_and_end_as_jobs(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, managed_namespace: str, tmp_path
):
    namespace = managed_namespace
    operator = start(cluster, namespace, database_url, tmp_path / "first.log", SEQFLOW_JOB_TTL_SECONDS="20")
    try:
        mixed = [{"name": "Prepare", "handler": "test.step"}, job_task("Render"), job_task("Print")]
        failing = {"test.seqflow.io/exit-code": "1", "test.seqflow.io/message": "SMTP refused"}
        mail = job_task("Mail", annotations=failing, retry={"maxRetries": 1, "backoffSeconds": 1})
        refused = {"test.seqflow.io/exit-code": "65", "test.seqflow.io/message": "no such customer"}
        bill = job_task("Bill", annotations=refused, retry={"maxRetries": 3})
        for name, steps in (("mixed", mixed), ("mail", [mail]), ("bill", [bill])):
            cluster.apply(workflow(name, steps), namespace=namespace)
        for run, flow in (("r-ok", "mixed"), ("r-fail", "mail"), ("r-bill", "bill")):
            cluster.apply(workflow_run(run, flow, {"doc": run}), namespace=namespace)

        wait_phase(cluster, namespace, "r-ok", "Succeeded")
        status = runs.get(namespace, "r-ok")["status"]
        render, printed = status["nodes"][1]["job"], status["nodes"][2]["job"]
        assert status["output"]["job"] == printed and status["output"]["input"]["job"] == render
        jobs = {j["metadata"]["name"]: j for j in jobs_of(cluster, namespace, "r-ok")}
        assert set(jobs) == {render, printed}
        for job in jobs.values():
            assert job["spec"]["managedBy"] == MANAGED_JOBS
            assert condition_types(job) == ["SuccessCriteriaMet", "Complete"]
            assert job["status"]["succeeded"] == 1 and job["status"]["completionTime"]
        pods = {p["metadata"]["name"]: p for p in pods_of(cluster, namespace, "r-ok")}
        assert set(pods) == {render, printed}  # a pod each, named as its Job, made by seqflow
        owner = pods[render]["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Job",
            render,
            jobs[render]["metadata"]["uid"],
        )
        waited = cluster.kubectl(
            "wait", "-n", namespace, f"job/{printed}", "--for=condition=complete", "--timeout=10s"
        )
        assert waited.stdout.strip() == f"job.batch/{printed} condition met"
        listed = cluster.kubectl("get", "jobs", "-n", namespace, printed, "--no-headers").stdout.split()
        assert listed[1:3] == ["Complete", "1/1"], listed

        wait_phase(cluster, namespace, "r-fail", "Failed")
        status = runs.get(namespace, "r-fail")["status"]
        assert status["nodes"][0]["attempts"] == 2
        assert status["nodes"][0]["lastError"] == "exit code 1: SMTP refused"
        failed = jobs_of(cluster, namespace, "r-fail")
        assert len(failed) == 2 and all(condition_types(j) == ["FailureTarget", "Failed"] for j in failed)

        wait_phase(cluster, namespace, "r-bill", "Failed")
        assert runs.get(namespace, "r-bill")["status"]["nodes"][0]["attempts"] == 1  # exit code 65: for good

        wait_for(
            lambda: not jobs_of(cluster, namespace, "r-ok"), timeout=60, what="the TTL controller's clean-up"
        )
        wait_for(lambda: not pods_of(cluster, namespace, "r-ok"), timeout=60, what="their pods collected")
    finally:
        operator.stop()


def test_a_deleted_pod_a_cancel_and_a_restart_while_a_pod_runs(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, managed_namespace: str, tmp_path
):
    namespace = managed_namespace
    operator = start(cluster, namespace, database_url, tmp_path / "first.log")
    try:
        slow = job_task("Crunch", annotations={"test.seqflow.io/duration": "60s"}, timeoutSeconds=120)
        cluster.apply(workflow("slow", [slow]), namespace=namespace)
        cluster.apply(workflow_run("r-slow", "slow"), namespace=namespace)
        a_deleted_pod_is_made_again_and_a_cancel_removes_it(cluster, runs, namespace, "r-slow")

        short = job_task("Crunch", annotations={"test.seqflow.io/duration": "5s"})
        cluster.apply(
            workflow("short", [short, {"name": "After", "handler": "test.step"}]), namespace=namespace
        )
        cluster.apply(workflow_run("r-restart", "short"), namespace=namespace)
        wait_for(lambda: pods_of(cluster, namespace, "r-restart"), timeout=30, what="the step's pod")
        operator.kill()
        operator = start(cluster, namespace, database_url, tmp_path / "second.log")
        wait_phase(cluster, namespace, "r-restart", "Succeeded")
        status = runs.get(namespace, "r-restart")["status"]
        assert [n["attempts"] for n in status["nodes"]] == [1, 1]
        (job,) = jobs_of(cluster, namespace, "r-restart")
        assert condition_types(job) == ["SuccessCriteriaMet", "Complete"]
    finally:
        operator.stop()
