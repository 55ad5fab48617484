"""End to end: tasks that run as batch/v1 Jobs (pods played by kwok; their annotations decide
how long they run, their exit code and their termination message; see testenv/kwok-stages.yaml)."""

from __future__ import annotations

import json
import uuid

import pytest

from testenv.operator import OperatorProcess
from tests.e2e.operators import bind_chart_rbac, start_operator
from tests.support import POD_STEPS_USER, Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster]


@pytest.fixture(autouse=True)
def _kwok(cluster: Cluster) -> None:
    cluster.require_kwok()


def job_task(name: str, *, annotations: dict | None = None, **extra) -> dict:
    template = {
        "metadata": {"annotations": annotations or {}},
        "spec": {"containers": [{"name": "task", "image": "registry.example/task:1"}]},
    }
    return {"name": name, "job": {"podTemplate": template}, **extra}


def jobs_of(cluster: Cluster, namespace: str, run: str) -> list[dict]:
    return cluster.get_json("jobs", "-n", namespace, "-l", f"seqflow.io/run={run}")["items"]


def wait_phase(cluster: Cluster, namespace: str, name: str, phase: str, timeout: int = 60) -> None:
    cluster.kubectl(
        "wait",
        "-n",
        namespace,
        f"workflowrun/{name}",
        f"--for=jsonpath={{.status.phase}}={phase}",
        f"--timeout={timeout}s",
    )


@pytest.mark.usefixtures("operator")
def test_mixed_workflow_passes_outputs_through_the_job(cluster: Cluster, runs: Runs, namespace: str):
    tasks = [
        {"name": "Prepare", "handler": "test.step"},
        job_task("Render"),
        {"name": "Publish", "handler": "test.step"},
    ]
    cluster.apply(workflow("mixed", tasks), namespace=namespace)
    cluster.apply(workflow_run("r1", "mixed", {"doc": "D-1"}), namespace=namespace)
    wait_phase(cluster, namespace, "r1", "Succeeded")

    status = runs.get(namespace, "r1")["status"]
    output = status["output"]
    # The Job's pod echoed its input in its termination message; the next task got that.
    assert output["input"] == {"doc": "D-1", "trail": ["Prepare"], "step": 1}
    (job,) = jobs_of(cluster, namespace, "r1")
    name = job["metadata"]["name"]
    assert name.startswith("r1-render-1-") and status["nodes"][1]["job"] == name  # step id, attempt
    assert output["job"].startswith(name + "-")  # the pod of that Job
    assert output["trail"] == ["Publish"] and output["step"] == 1
    assert job["metadata"]["ownerReferences"][0]["kind"] == "WorkflowRun"
    assert job["spec"]["backoffLimit"] == 0
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["SEQFLOW_INPUT"]) == output["input"]
    assert [t["attempts"] for t in status["nodes"]] == [1, 1, 1]


@pytest.mark.usefixtures("operator")
def test_failing_job_is_retried_with_a_new_job_then_fails(cluster: Cluster, runs: Runs, namespace: str):
    failing = {"test.seqflow.io/exit-code": "1", "test.seqflow.io/message": "SMTP refused"}
    task = job_task("Mail", annotations=failing, retry={"maxRetries": 2, "backoffSeconds": 1})
    cluster.apply(workflow("mail", [task]), namespace=namespace)
    cluster.apply(workflow_run("r1", "mail"), namespace=namespace)

    history = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Failed", timeout=90)
    retrying = [s["nodes"][0] for s in history if s.get("nodes") and s["nodes"][0]["phase"] == "Retrying"]
    assert {t["attempts"] for t in retrying} == {1, 2}
    assert retrying[0]["lastError"] == "exit code 1: SMTP refused"
    status = history[-1]
    assert status["nodes"][0]["attempts"] == 3
    assert "SMTP refused" in condition(status)["message"]
    names = sorted(j["metadata"]["name"] for j in jobs_of(cluster, namespace, "r1"))
    assert [n.rsplit("-", 1)[0] for n in names] == ["r1-mail-1", "r1-mail-2", "r1-mail-3"]  # one per attempt


@pytest.mark.usefixtures("operator")
def test_permanent_exit_code_fails_at_once(cluster: Cluster, runs: Runs, namespace: str):
    permanent = {"test.seqflow.io/exit-code": "65", "test.seqflow.io/message": "no such customer"}
    cluster.apply(workflow("perm-job", [job_task("Mail", annotations=permanent)]), namespace=namespace)
    cluster.apply(workflow_run("r1", "perm-job"), namespace=namespace)
    wait_phase(cluster, namespace, "r1", "Failed")
    status = runs.get(namespace, "r1")["status"]
    assert status["nodes"][0]["attempts"] == 1
    assert "permanent error" in condition(status)["message"]


@pytest.mark.usefixtures("operator")
def test_a_step_that_passes_files_without_an_object_store_fails_saying_so(
    cluster: Cluster, runs: Runs, namespace: str
):
    keeps = {
        **job_task("Export"),
        "job": {"image": "registry.example/export:1"},
        "artifacts": {"outputs": [{"name": "out.csv"}]},
    }
    cluster.apply(workflow("files-job", [keeps]), namespace=namespace)
    cluster.apply(workflow_run("r1", "files-job"), namespace=namespace)
    wait_phase(cluster, namespace, "r1", "Failed")
    status = runs.get(namespace, "r1")["status"]
    assert condition(status)["reason"] == "ArtifactsUnavailable"
    assert "no object store" in status["nodes"][0]["lastError"] and status["nodes"][0]["attempts"] == 1
    assert not jobs_of(cluster, namespace, "r1")  # nothing was created that could not keep its files
    printed = cluster.kubectl("get", "workflowrun", "r1", "-n", namespace).stdout
    assert "Failed" in printed

    twice = {"inputs": [{"name": "out.csv", "step": "Export"}], "outputs": [{"name": "out.csv"}]}
    clash = [keeps, {**job_task("Load"), "job": {"image": "registry.example/load:1"}, "artifacts": twice}]
    cluster.apply(workflow("files-clash", clash), namespace=namespace)
    wait_for(
        lambda: any(
            c["type"] == "Ready" and c["status"] == "False" and "must be unique" in c.get("message", "")
            for c in cluster.get_json("workflow", "files-clash", "-n", namespace)
            .get("status", {})
            .get("conditions", [])
        ),
        timeout=30,
        what="the Workflow with a file name used twice to be not Ready",
    )


@pytest.mark.usefixtures("operator")
def test_job_past_its_deadline_fails_with_deadline_exceeded(cluster: Cluster, runs: Runs, namespace: str):
    slow = job_task(
        "Crunch", annotations={"test.seqflow.io/duration": "60s"}, timeoutSeconds=2, retry={"maxRetries": 0}
    )
    cluster.apply(workflow("slow-job", [slow]), namespace=namespace)
    cluster.apply(workflow_run("r1", "slow-job"), namespace=namespace)
    wait_phase(cluster, namespace, "r1", "Failed")
    status = runs.get(namespace, "r1")["status"]
    cond = condition(status)
    assert cond["reason"] == "DeadlineExceeded"
    assert status["nodes"][0]["lastError"] == "DeadlineExceeded: the Job ran longer than its 2 s deadline"
    (job,) = jobs_of(cluster, namespace, "r1")
    assert job["spec"]["activeDeadlineSeconds"] == 2


@pytest.mark.usefixtures("operator")
def test_deleting_a_run_deletes_its_jobs(cluster: Cluster, runs: Runs, namespace: str):
    slow = job_task("Crunch", annotations={"test.seqflow.io/duration": "60s"})
    cluster.apply(workflow("gc", [slow]), namespace=namespace)
    cluster.apply(workflow_run("r1", "gc"), namespace=namespace)
    wait_for(lambda: jobs_of(cluster, namespace, "r1"), timeout=30, what="the run's Job")
    cluster.kubectl("delete", "workflowrun", "r1", "-n", namespace)
    wait_for(lambda: not jobs_of(cluster, namespace, "r1"), timeout=60, what="the Job to be collected")


def test_finished_jobs_expire_after_their_ttl(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, operator_kubeconfig, tmp_path
):
    namespace = f"ttl-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    operator = start_operator(
        operator_kubeconfig, tmp_path / "ttl.log", "ttl-*", database_url, SEQFLOW_JOB_TTL_SECONDS="2"
    )
    try:
        cluster.apply(workflow("ttl", [job_task("Quick")]), namespace=namespace)
        cluster.apply(workflow_run("r1", "ttl"), namespace=namespace)
        wait_phase(cluster, namespace, "r1", "Succeeded")
        (job,) = jobs_of(cluster, namespace, "r1")
        assert job["spec"]["ttlSecondsAfterFinished"] == 2
        wait_for(lambda: not jobs_of(cluster, namespace, "r1"), timeout=60, what="the finished Job to expire")
    finally:
        operator.stop()
    assert runs.get(namespace, "r1")["status"]["phase"] == "Succeeded"


def test_operator_restart_while_a_job_runs_creates_no_second_job(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, operator_kubeconfig, tmp_path
):
    namespace = f"restart-job-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    operator = start_operator(operator_kubeconfig, tmp_path / "first.log", "restart-job-*", database_url)
    tasks = [
        job_task("Crunch", annotations={"test.seqflow.io/duration": "5s"}),
        {"name": "After", "handler": "test.step"},
    ]
    cluster.apply(workflow("long-job", tasks), namespace=namespace)
    cluster.apply(workflow_run("r1", "long-job"), namespace=namespace)
    wait_for(lambda: jobs_of(cluster, namespace, "r1"), timeout=30, what="the run's Job")
    operator.kill()

    restarted = start_operator(operator_kubeconfig, tmp_path / "second.log", "restart-job-*", database_url)
    try:
        wait_phase(cluster, namespace, "r1", "Succeeded")
    finally:
        restarted.stop()
    status = runs.get(namespace, "r1")["status"]
    assert [t["attempts"] for t in status["nodes"]] == [1, 1]
    assert [j["metadata"]["name"] for j in jobs_of(cluster, namespace, "r1")] == [status["nodes"][0]["job"]]


@pytest.mark.usefixtures("operator")
def test_parallel_members_run_together_and_merge_their_outputs(cluster: Cluster, runs: Runs, namespace: str):
    members = [
        {"name": "Email", "handler": "test.step"},
        {"name": "Sms", "job": job_task("Sms", annotations={"test.seqflow.io/duration": "1s"})["job"]},
    ]
    steps = [
        {"name": "Prepare", "handler": "test.step"},
        {"name": "Notify", "parallel": members},
        {"name": "After", "handler": "test.step"},
    ]
    cluster.apply(workflow("fanout", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "fanout", {"sleep": 1}), namespace=namespace)
    history = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=60)
    together = [s for s in history if {"Notify/Email", "Notify/Sms"} <= set(s.get("current") or [])]
    assert together, "the members never ran at the same time"
    status = history[-1]
    assert [(n["id"], n["phase"]) for n in status["nodes"]] == [
        ("Prepare", "Succeeded"),
        ("Notify", "Succeeded"),
        ("Notify/Email", "Succeeded"),
        ("Notify/Sms", "Succeeded"),
        ("After", "Succeeded"),
    ]
    output = status["output"]
    assert output["job"].startswith(status["nodes"][3]["job"])  # the Sms Job's output, merged
    assert output["trail"] == ["Prepare", "Notify/Email", "After"]  # Email's output, merged
    assert status["progress"] == "3/3"


def pods_of(cluster: Cluster, namespace: str, run: str) -> list[dict]:
    return cluster.get_json("pods", "-n", namespace, "-l", f"seqflow.io/run={run}")["items"]


def a_deleted_pod_is_made_again_and_a_cancel_removes_it(
    cluster: Cluster, runs: Runs, namespace: str, run: str
):
    """A running step's pod (seqflow's own: alone, or a managed Job's) deleted is created again for
    the same attempt; a cancel then removes it (and its Job)."""
    wait_for(lambda: pods_of(cluster, namespace, run), timeout=30, what="the step's pod")
    (first,) = pods_of(cluster, namespace, run)
    cluster.kubectl("delete", "pod", first["metadata"]["name"], "-n", namespace, "--wait=false")
    wait_for(
        lambda: (
            [p["metadata"]["uid"] for p in pods_of(cluster, namespace, run)]
            not in ([], [first["metadata"]["uid"]])
        ),
        timeout=30,
        what="the deleted pod created again",
    )
    assert runs.get(namespace, run)["status"]["nodes"][0]["attempts"] == 1  # the same attempt
    cluster.kubectl(
        "patch", "workflowrun", run, "-n", namespace, "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )
    wait_phase(cluster, namespace, run, "Cancelled")
    wait_for(
        lambda: not pods_of(cluster, namespace, run) and not jobs_of(cluster, namespace, run),
        timeout=30,
        what="the cancelled step's pod and Job gone",
    )


def test_steps_as_pods_of_their_own(cluster: Cluster, runs: Runs, crds: None, database_url: str, tmp_path):
    """SEQFLOW_JOB_STEPS_AS=Pod, with the chart's role for jobStepsAs=Pod: each attempt a pod
    owned by the run, no Job; outputs flow, a failure is retried with a new pod, a pod deleted
    while it runs is created again, a cancel deletes it, the run's pods go with the run, and an
    operator restarted while a pod runs finds it."""
    bind_chart_rbac(cluster, POD_STEPS_USER, release="seqflow-pods", values="jobStepsAs=Pod")
    namespace = f"pods-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)

    def start(log: str) -> OperatorProcess:
        kubeconfig = cluster.kubeconfig_for(POD_STEPS_USER)
        return start_operator(kubeconfig, tmp_path / log, "pods-*", database_url, SEQFLOW_JOB_STEPS_AS="Pod")

    operator = start("first.log")
    try:
        mixed = [{"name": "Prepare", "handler": "test.step"}, job_task("Render"), job_task("Print")]
        failing = {"test.seqflow.io/exit-code": "1", "test.seqflow.io/message": "SMTP refused"}
        mail = job_task("Mail", annotations=failing, retry={"maxRetries": 1, "backoffSeconds": 1})
        slow = job_task("Crunch", annotations={"test.seqflow.io/duration": "60s"}, timeoutSeconds=120)
        for name, steps in (("mixed", mixed), ("mail", [mail]), ("slow", [slow])):
            cluster.apply(workflow(name, steps), namespace=namespace)
        for run, flow in (("r-ok", "mixed"), ("r-fail", "mail"), ("r-slow", "slow")):
            cluster.apply(workflow_run(run, flow, {"doc": run}), namespace=namespace)

        wait_phase(cluster, namespace, "r-ok", "Succeeded")
        status = runs.get(namespace, "r-ok")["status"]
        render, printed = status["nodes"][1]["job"], status["nodes"][2]["job"]
        assert status["output"]["job"] == printed  # the pod itself echoed its input
        assert status["output"]["input"]["job"] == render  # Render's output was Print's input
        assert status["output"]["input"]["input"]["doc"] == "r-ok"
        pods = {p["metadata"]["name"]: p for p in pods_of(cluster, namespace, "r-ok")}
        assert set(pods) == {render, printed}
        owner = pods[render]["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("WorkflowRun", "r-ok")
        assert pods[render]["spec"]["activeDeadlineSeconds"] == 300  # the default timeout
        assert cluster.get_json("jobs", "-n", namespace)["items"] == []

        wait_phase(cluster, namespace, "r-fail", "Failed")
        status = runs.get(namespace, "r-fail")["status"]
        assert (
            status["nodes"][0]["attempts"] == 2
            and status["nodes"][0]["lastError"] == "exit code 1: SMTP refused"
        )
        assert len(pods_of(cluster, namespace, "r-fail")) == 2  # one per attempt

        a_deleted_pod_is_made_again_and_a_cancel_removes_it(cluster, runs, namespace, "r-slow")

        cluster.kubectl("delete", "workflowrun", "r-ok", "-n", namespace)
        wait_for(lambda: not pods_of(cluster, namespace, "r-ok"), timeout=60, what="the run's pods collected")

        short = job_task("Crunch", annotations={"test.seqflow.io/duration": "5s"})
        cluster.apply(
            workflow("short", [short, {"name": "After", "handler": "test.step"}]), namespace=namespace
        )
        cluster.apply(workflow_run("r-restart", "short"), namespace=namespace)
        wait_for(lambda: pods_of(cluster, namespace, "r-restart"), timeout=30, what="the step's pod")
        operator.kill()
        operator = start("second.log")
        wait_phase(cluster, namespace, "r-restart", "Succeeded")
        status = runs.get(namespace, "r-restart")["status"]
        assert [n["attempts"] for n in status["nodes"]] == [1, 1]
        assert [p["metadata"]["name"] for p in pods_of(cluster, namespace, "r-restart")] == [
            status["nodes"][0]["job"]
        ]
    finally:
        operator.stop()
