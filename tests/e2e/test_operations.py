"""What a platform team relies on: metrics that move with the runs, logs a collector can parse
and that hold no secret, least-privilege credentials, and manifests GitOps tools keep in sync."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from testenv.operator import OperatorProcess
from tests.e2e.operators import metrics_url, start_operator
from tests.support import OPERATOR_USER, REPO, Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = pytest.mark.cluster


def scrape(operator: OperatorProcess) -> str:
    with urllib.request.urlopen(metrics_url(operator), timeout=10) as response:
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample of the exposition with exactly these labels (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for each in family.samples:
            if each.name == name and each.labels == labels:
                return each.value
    return 0.0


def test_metrics_move_as_runs_progress(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    retry = {"maxRetries": 2, "backoffSeconds": 0.5}
    cluster.apply(
        workflow(
            "metered",
            [
                {"name": "Pay", "handler": "test.flaky", "retry": retry},
                {"name": "Ship", "handler": "test.step"},
            ],
        ),
        namespace=namespace,
    )
    before = scrape(operator)
    for i in range(3):
        cluster.apply(workflow_run(f"r{i}", "metered", {"fail_attempts": 1}), namespace=namespace)
    wait_for(
        lambda: all(
            (runs.get(namespace, f"r{i}").get("status") or {}).get("phase") == "Succeeded" for i in range(3)
        ),
        timeout=60,
        what="runs to succeed",
    )
    finished = {"namespace": namespace, "workflow": "metered", "phase": "Succeeded"}

    def counted() -> str | None:
        """The operator counts a transition right after its status write: scrape until it has."""
        text = scrape(operator)
        runs_finished = sample(text, "seqflow_runs_finished_total", **finished)
        return (
            text if runs_finished - sample(before, "seqflow_runs_finished_total", **finished) == 3 else None
        )

    after = wait_for(counted, timeout=10, what="the finished runs to be counted")

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    metered = {"namespace": namespace, "workflow": "metered"}
    assert moved("seqflow_runs_started_total", **metered) == 3
    assert moved("seqflow_runs_finished_total", **finished) == 3
    assert moved("seqflow_run_duration_seconds_count", **finished) == 3
    assert moved("seqflow_run_duration_seconds_sum", **finished) >= 3 * 0.5  # each waited out a backoff
    assert moved("seqflow_task_retries_total", **metered, task="Pay") == 3
    attempts = "seqflow_task_attempt_duration_seconds_count"
    assert moved(attempts, **metered, task="Pay", outcome="failed") == 3
    assert moved(attempts, **metered, task="Ship", outcome="succeeded") == 3
    patches = moved(
        "seqflow_kubernetes_api_request_duration_seconds_count",
        verb="PATCH",
        resource="workflowruns/status",
        code="200",
    )
    # Writes merge (steps that end together share one), but two per run cannot: the retry's wait
    # (nextRetryAt, 0.5 s away) and the end.
    assert patches >= 3 * 2
    assert "seqflow_history_pending_entries" in after

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    check = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_workflows_queue_and_its_stalled_runs_are_gauged(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    """Runs behind a concurrency limit are the Workflow's queue; a run held by a signal is running
    and not stalled (it waits by design)."""
    held = [{"name": "Hold", "wait": {"signal": "go"}}, {"name": "Work", "handler": "test.step"}]
    cluster.apply(workflow("queued", held, concurrency={"limit": 1}), namespace=namespace)
    for i in range(3):
        cluster.apply(workflow_run(f"q{i}", "queued", {}), namespace=namespace)
    gauged = {"namespace": namespace, "workflow": "queued"}

    def queue_seen() -> str | None:
        text = scrape(operator)
        waiting, running = (
            sample(text, "seqflow_runs_waiting", **gauged),
            sample(text, "seqflow_runs_running", **gauged),
        )
        return text if (waiting, running) == (2, 1) else None

    text = wait_for(queue_seen, timeout=30, what="two runs waiting and one running")
    assert sample(text, "seqflow_oldest_waiting_run_age_seconds", **gauged) > 0
    assert sample(text, "seqflow_longest_run_without_progress_seconds", **gauged) == 0

    for i in range(3):
        cluster.kubectl(
            "patch", "workflowrun", f"q{i}", "-n", namespace, "--type=merge", "-p", '{"spec":{"cancel":true}}'
        )

    def emptied() -> bool:
        text = scrape(operator)
        return not sample(text, "seqflow_runs_waiting", **gauged) and not sample(
            text, "seqflow_runs_running", **gauged
        )

    wait_for(emptied, timeout=30, what="the queue to empty")


def test_json_logs_carry_run_fields_and_no_secrets(
    cluster: Cluster, runs: Runs, crds: None, operator_kubeconfig, database_url: str, tmp_path
):
    namespace = "logs-" + tmp_path.name[-6:].lower().replace("_", "-")
    cluster.kubectl("create", "namespace", namespace)
    log = tmp_path / "operator.log"
    operator = start_operator(
        operator_kubeconfig, log, namespace, database_url, SEQFLOW_LOG_FORMAT="json", SEQFLOW_LOG_LEVEL="INFO"
    )
    try:
        cluster.apply(
            workflow("logged", [{"name": "Only", "handler": "test.fail", "retry": {"maxRetries": 0}}]),
            namespace=namespace,
        )
        cluster.apply(workflow_run("r1", "logged"), namespace=namespace)
        wait_for(
            lambda: (runs.get(namespace, "r1").get("status") or {}).get("phase") == "Failed",
            timeout=60,
            what="the run to fail",
        )
        wait_for(lambda: "WORKFLOW_FAILED" in log.read_text(), timeout=10, what="the log line")
    finally:
        operator.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and len(lines) == len([line for line in log.read_text().splitlines() if line.strip()])
    failed = next(line for line in lines if line.get("event") == "TASK_FAILED")
    assert failed["namespace"] == namespace and failed["run"] == "r1"
    assert (
        failed["task"] == "Only"
        and failed["attempt"] == 1
        and failed["error"] == "RuntimeError: card declined"
    )
    assert {"time", "level", "logger", "message"} <= failed.keys()
    text = log.read_text()
    password = database_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[-1]
    assert password and password not in text
    if cluster.control_plane is not None:
        assert cluster.control_plane.token_for(OPERATOR_USER) not in text


def test_operator_credentials_are_refused_outside_the_chart_role(
    cluster: Cluster, crds: None, operator_kubeconfig
):
    if cluster.control_plane is None:
        pytest.skip("the operator user exists only on the local control plane")
    for verb in (
        ["get", "secrets", "-n", "default"],
        ["delete", "workflow", "order-process", "-n", "default"],
        ["create", "deployment", "x", "--image=x", "-n", "default"],
    ):
        denied = cluster.kubectl(*verb, user=OPERATOR_USER, check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), verb


def test_reapplying_examples_shows_no_diff(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    paths = sorted(str(p) for p in (REPO / "workflows").glob("*.yaml"))
    args = [a for p in paths for a in ("-f", p)]
    for _ in range(2):
        cluster.kubectl("apply", "--server-side", "-n", namespace, *args)
    names = ["order-001", "refund-001", "refund-002-late", "onboarding-alice"]
    wait_for(
        lambda: all(
            (runs.get(namespace, n).get("status") or {}).get("phase") in ("Succeeded", "Failed")
            and not runs.get(namespace, n)["status"].get("pendingHistory")
            for n in names
        ),
        timeout=60,
        what="the example runs to finish",
    )
    for mode in (["--server-side"], []):
        diff = cluster.kubectl("diff", *mode, "-n", namespace, *args, check=False)
        assert diff.returncode == 0 and diff.stdout == "", diff.stdout + diff.stderr
    again = cluster.kubectl("apply", "--server-side", "-n", namespace, *args)
    assert "serverside-applied" in again.stdout and "configured" not in again.stdout
