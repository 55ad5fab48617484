"""End to end: finally tasks and run deadlines on the real API server. A finally task runs after
a success, a permanent failure, a cancel during a Job step and a deadline, each time given the
outcome, and leaves the run's phase and reason as they were; a deadline fires on time across an
operator restart; retry conditions; a retry from a step with a patched input."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from testenv.operator import OperatorProcess
from tests.e2e.operators import start_operator
from tests.e2e.test_faults import history_of
from tests.e2e.test_job_tasks import job_task, wait_phase
from tests.e2e.test_plugin import plugin
from tests.support import Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = pytest.mark.cluster
REPORT = {"name": "Report", "handler": "test.outcome"}
KILLED = {"test.seqflow.io/message": "out of memory"}


def noted(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def finished(cluster: Cluster, runs: Runs, namespace: str, name: str, phase: str) -> tuple[str, str]:
    wait_phase(cluster, namespace, name, phase, timeout=90)
    summary = condition(runs.get(namespace, name)["status"], "Succeeded")
    return summary["reason"], summary["message"]


@pytest.mark.usefixtures("operator")
def test_finally_runs_after_a_success_and_after_a_permanent_failure(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path
):
    log = tmp_path / "outcomes.log"
    ok = workflow("ok", [{"name": "A", "handler": "test.step"}], **{"finally": [REPORT]})
    bad = workflow(
        "bad", [{"name": "A", "handler": "test.step"}, {"name": "Pay", "handler": "test.permanent"}]
    )
    bad["spec"]["finally"] = [REPORT]
    cluster.apply(ok, namespace=namespace)
    cluster.apply(bad, namespace=namespace)
    cluster.apply(workflow_run("r-ok", "ok", {"log": str(log)}), namespace=namespace)
    assert finished(cluster, runs, namespace, "r-ok", "Succeeded") == ("Succeeded", "The task succeeded")
    assert runs.get(namespace, "r-ok")["status"]["output"]["trail"] == ["A"]  # not the finally task's
    cluster.apply(workflow_run("r-bad", "bad", {"log": str(log)}), namespace=namespace)
    reason, message = finished(cluster, runs, namespace, "r-bad", "Failed")
    assert (reason, message) == (
        "TaskFailed",
        "Task Pay failed (permanent error): order ORD-9 does not exist",
    )
    first, second = noted(log)
    assert first["outcome"] == {
        "phase": "Succeeded",
        "reason": "Succeeded",
        "message": "The task succeeded",
        "failedStep": None,
    }
    assert second["outcome"] == {"phase": "Failed", "reason": reason, "message": message, "failedStep": "Pay"}


@pytest.mark.usefixtures("operator")
def test_finally_runs_after_a_cancel_during_a_job_step(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path
):
    cluster.require_kwok()
    log = tmp_path / "outcomes.log"
    slow = job_task("Export", annotations={"test.seqflow.io/duration": "600s"})
    cluster.apply(workflow("export", [slow], **{"finally": [REPORT]}), namespace=namespace)
    cluster.apply(workflow_run("r", "export", {"log": str(log)}), namespace=namespace)
    wait_for(lambda: runs.get(namespace, "r").get("status", {}).get("current") == ["Export"], timeout=30)
    cluster.kubectl(
        "patch", "workflowrun", "r", "-n", namespace, "--type=merge", "-p", '{"spec":{"cancel":true}}'
    )
    assert finished(cluster, runs, namespace, "r", "Cancelled")[0] == "Cancelled"
    (entry,) = noted(log)
    assert entry["outcome"]["phase"] == "Cancelled"
    assert cluster.get_json("jobs", "-n", namespace, "-l", "seqflow.io/run=r")["items"] == []  # deleted


@pytest.mark.usefixtures("operator")
def test_a_deadline_cancels_the_running_step_and_runs_finally(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path
):
    log = tmp_path / "outcomes.log"
    steps = [{"name": "Nap", "sleep": {"seconds": 600}}]
    cluster.apply(workflow("napper", steps, timeoutSeconds=600, **{"finally": [REPORT]}), namespace=namespace)
    run = workflow_run("r", "napper", {"log": str(log)})
    run["spec"]["timeoutSeconds"] = 2  # the run's wins over its Workflow's
    cluster.apply(run, namespace=namespace)
    assert finished(cluster, runs, namespace, "r", "Failed") == (
        "DeadlineExceeded",
        "The run passed its deadline (2 s)",
    )
    (entry,) = noted(log)
    assert entry["outcome"]["reason"] == "DeadlineExceeded"
    status = runs.get(namespace, "r")["status"]
    assert [(n["id"], n["phase"]) for n in status["nodes"]] == [("Nap", "Cancelled"), ("Report", "Succeeded")]


def test_a_deadline_fires_on_time_across_an_operator_restart(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, operator_kubeconfig, tmp_path
):
    namespace = f"deadline-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    log = tmp_path / "outcomes.log"
    first = start_operator(operator_kubeconfig, tmp_path / "first.log", namespace, database_url)
    cluster.apply(
        workflow(
            "napper", [{"name": "Nap", "sleep": {"seconds": 600}}], timeoutSeconds=8, **{"finally": [REPORT]}
        ),
        namespace=namespace,
    )
    cluster.apply(workflow_run("r", "napper", {"log": str(log)}), namespace=namespace)
    wait_for(lambda: runs.get(namespace, "r").get("status", {}).get("deadline"), timeout=30)
    deadline = runs.get(namespace, "r")["status"]["deadline"]
    first.kill()
    time.sleep(2)
    second = start_operator(operator_kubeconfig, tmp_path / "second.log", namespace, database_url)
    try:
        wait_for(lambda: noted(log), timeout=30)
    finally:
        second.stop()
    late = noted(log)[0]["at"] - datetime.fromisoformat(deadline).timestamp()
    assert 0 <= late < 1.0, late  # on time, though the operator that set it was killed
    assert noted(log)[0]["outcome"]["reason"] == "DeadlineExceeded"


@pytest.mark.usefixtures("operator")
def test_retry_on_oom_killed_retries_it_and_does_not_retry_exit_code_2(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.require_kwok()
    retry = {"maxRetries": 1, "backoffSeconds": 0.2, "on": ["OOMKilled"]}
    oom = job_task(
        "Load",
        annotations={"test.seqflow.io/exit-code": "137", "test.seqflow.io/reason": "OOMKilled", **KILLED},
    )
    bad = job_task(
        "Load", annotations={"test.seqflow.io/exit-code": "2", "test.seqflow.io/message": "bad input"}
    )
    cluster.apply(workflow("oom", [{**oom, "retry": retry}]), namespace=namespace)
    cluster.apply(workflow("bad-input", [{**bad, "retry": retry}]), namespace=namespace)
    cluster.apply(workflow_run("r-oom", "oom", {}), namespace=namespace)
    cluster.apply(workflow_run("r-bad", "bad-input", {}), namespace=namespace)
    assert finished(cluster, runs, namespace, "r-oom", "Failed")[1] == (
        "Task Load failed (2 attempts): OOMKilled, exit code 137: out of memory"
    )
    assert runs.get(namespace, "r-oom")["status"]["nodes"][0]["attempts"] == 2
    message = finished(cluster, runs, namespace, "r-bad", "Failed")[1]
    assert message == (
        "Task Load failed (not retried: type Error, exit code 2 is not among its retry conditions): "
        "exit code 2: bad input"
    )
    assert runs.get(namespace, "r-bad")["status"]["nodes"][0]["attempts"] == 1


@pytest.mark.usefixtures("operator")
def test_retry_from_step_3_of_5_with_a_patched_input_runs_only_steps_3_on(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path, operator: OperatorProcess
):
    log, blocker = tmp_path / "executions.log", tmp_path / "blocker"
    blocker.write_text("x")
    count = {"handler": "test.count", "retry": {"maxRetries": 0}}
    steps = [
        {"name": "S1", **count},
        {"name": "S2", **count},
        {"name": "S3", "handler": "test.fails_while_file_exists"},
    ]
    steps += [{"name": "S4", **count}, {"name": "S5", **count}]
    cluster.apply(workflow("five", steps), namespace=namespace)
    cluster.apply(
        workflow_run("r", "five", {"executions": str(log), "blocker": str(blocker)}), namespace=namespace
    )
    assert finished(cluster, runs, namespace, "r", "Failed")[0] == "TaskFailed"
    before = runs.get(namespace, "r")["status"]

    patch = json.dumps({"blocker": str(tmp_path / "gone")})
    retried = plugin(cluster, "retry", "r", "--from", "S3", "--patch", patch, "--wait", "-n", namespace)
    assert retried.returncode == 0, retried.stderr
    first_line = retried.stdout.splitlines()[0]
    assert first_line.endswith("created (a retry of r from S3)"), retried.stdout
    new = first_line.split()[0].removeprefix("workflowrun/")
    status = runs.get(namespace, new)["status"]
    assert status["phase"] == "Succeeded" and status["output"]["blocker"] == str(tmp_path / "gone")
    executed = [line.split()[1:3] for line in log.read_text().splitlines()]
    assert executed == [["r", "S1"], ["r", "S2"], [new, "S4"], [new, "S5"]]  # S1 and S2 not again
    assert [n["id"] for n in status["nodes"]] == ["S1", "S2", "S3", "S4", "S5"]
    assert runs.get(namespace, "r")["status"]["nodes"] == before["nodes"]  # the original untouched
    wait_for(lambda: not runs.get(namespace, new)["status"].get("pendingHistory"), timeout=30)
    started = history_of(cluster, operator, namespace, new)["activity"][0]
    assert (started["event"], started["details"]["retryOf"], started["details"]["from"]) == (
        "WORKFLOW_STARTED",
        "r",
        "S3",
    )
    assert f"retried as {new} from S3" in plugin(cluster, "tree", "r", "-n", namespace).stdout
    assert "retry of r from S3" in plugin(cluster, "tree", new, "-n", namespace).stdout


@pytest.mark.usefixtures("operator")
def test_retry_from_a_step_that_is_not_there_fails_saying_why(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow("one", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    cluster.apply(workflow_run("r", "one", {}), namespace=namespace)
    finished(cluster, runs, namespace, "r", "Succeeded")
    again = workflow_run("again", "one")
    del again["spec"]["input"]
    again["spec"]["retryFrom"] = {"run": "r", "step": "B"}
    cluster.apply(again, namespace=namespace)
    assert finished(cluster, runs, namespace, "again", "Failed") == (
        "RetrySourceInvalid",
        "Cannot retry run r from task B: it has no such task (A)",
    )


@pytest.mark.usefixtures("operator")
def test_a_cached_step_is_skipped_on_the_second_run_and_runs_again_after_its_ttl(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path, operator: OperatorProcess
):
    log = tmp_path / "executions.log"
    export = {"name": "Export", "handler": "test.count", "cache": {"key": "input.day", "ttlSeconds": 4}}
    cluster.apply(
        workflow("exports", [export, {"name": "Mail", "handler": "test.step"}]), namespace=namespace
    )
    given = {"executions": str(log), "day": "mon"}

    def run(name: str) -> dict[str, Any]:
        cluster.apply(workflow_run(name, "exports", given), namespace=namespace)
        finished(cluster, runs, namespace, name, "Succeeded")
        wait_for(lambda: not runs.get(namespace, name)["status"].get("pendingHistory"), timeout=30)
        return runs.get(namespace, name)["status"]

    first = run("r1")
    second = run("r2")
    assert [line.split()[1:3] for line in log.read_text().splitlines()] == [["r1", "Export"]]
    assert [(n["id"], n["phase"]) for n in second["nodes"]] == [("Export", "Cached"), ("Mail", "Succeeded")]
    assert second["output"]["executions"] == first["output"]["executions"]  # the kept output passed on
    cached = [
        e for e in history_of(cluster, operator, namespace, "r2")["activity"] if e["event"] == "TASK_CACHED"
    ]
    assert [e["task"] for e in cached] == ["Export"]
    time.sleep(4)
    run("r3")
    assert [line.split()[1:3] for line in log.read_text().splitlines()] == [
        ["r1", "Export"],
        ["r3", "Export"],
    ]
