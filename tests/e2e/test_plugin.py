"""End to end: `kubectl seqflow` run as kubectl runs it (a `kubectl-seqflow` program found on
PATH), against the local control plane, with the user's kubeconfig, namespace and context."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import Cluster, Runs, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def plugin(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl seqflow ARGS`, the plugin found next to this Python on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [cluster.kubectl_path, "seqflow", *args],
        env={**os.environ, "PATH": path, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_suspend_resume_tree_and_logs(cluster: Cluster, runs: Runs, namespace: str):
    steps = [{"name": n, "handler": "test.step"} for n in ("A", "B")]
    cluster.apply(workflow("two", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "two", {"sleep": 4}), namespace=namespace)  # the plugin starts in ~1 s
    runs.watch(namespace, "r1", until=lambda s: s.get("current") == ["A"], timeout=30)

    suspended = plugin(cluster, "suspend", "r1", "-n", namespace)
    assert suspended.returncode == 0 and suspended.stdout.strip() == "workflowrun/r1 suspended", (
        suspended.stderr
    )
    runs.watch(
        namespace,
        "r1",
        until=lambda s: s.get("phase") == "Suspended" and s.get("progress") == "1/2",
        timeout=30,
    )
    shown = plugin(cluster, "tree", "r1", "-n", namespace)
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("r1  Suspended  1/2")
    assert lines[1].split()[:4] == ["STEP", "PHASE", "ATTEMPTS", "DURATION"]
    assert lines[2].split()[:3] == ["A", "Succeeded", "1"] and lines[3].split()[:3] == ["B", "Pending", "0"]

    resumed = plugin(
        cluster, "--context", "admin", "resume", "r1", "-n", namespace, "--wait", "--timeout", "60"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines() == ["workflowrun/r1 resumed", "workflowrun/r1 Succeeded"]
    story = plugin(cluster, "logs", "r1", "-n", namespace).stdout
    for reason in ("Started", "Suspended", "Resumed", "Succeeded"):
        assert f" {reason} " in story, story


def test_cancel_retry_and_rerun_with_exit_codes(cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.touch()
    steps = [
        {"name": "Reserve", "handler": "test.step"},
        {"name": "Charge", "handler": "test.fails_while_file_exists"},
    ]
    cluster.apply(workflow("shop", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "shop", {"blocker": str(blocker)}), namespace=namespace)
    runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Failed", timeout=30)

    blocker.unlink()
    retried = plugin(cluster, "retry", "r1", "-n", namespace, "--wait")
    assert retried.returncode == 0 and retried.stdout.splitlines()[-1] == "workflowrun/r1 Succeeded", retried
    assert runs.get(namespace, "r1")["spec"]["retry"] == 1

    again = plugin(cluster, "rerun", "r1", "-n", namespace, "--wait")
    assert again.returncode == 0, again.stderr
    created = again.stdout.splitlines()[0].split()[0].removeprefix("workflowrun/")
    rerun = runs.get(namespace, created)
    assert rerun["metadata"]["labels"]["seqflow.io/rerun-of"] == "r1"
    assert rerun["spec"]["input"] == {"blocker": str(blocker)} and rerun["status"]["phase"] == "Succeeded"

    cluster.apply(workflow("slow", [{"name": "Wait", "handler": "test.step"}]), namespace=namespace)
    cluster.apply(workflow_run("r2", "slow", {"sleep": 300}), namespace=namespace)
    runs.watch(namespace, "r2", until=lambda s: s.get("current") == ["Wait"], timeout=30)
    cancelled = plugin(cluster, "cancel", "r2", "-n", namespace, "--wait", "--timeout", "30")
    assert cancelled.returncode == 1 and cancelled.stdout.splitlines()[-1] == "workflowrun/r2 Cancelled"


def test_unknown_run_is_one_line_and_exit_code_2(cluster: Cluster, namespace: str):
    missing = plugin(cluster, "tree", "nope", "-n", namespace)
    assert missing.returncode == 2
    assert missing.stderr.strip() == 'kubectl seqflow: workflowruns.seqflow.io "nope" not found (404)'
    bad_context = plugin(cluster, "--context", "nowhere", "tree", "nope")
    assert bad_context.returncode == 2 and 'no context "nowhere"' in bad_context.stderr


def test_a_wait_goes_on_with_the_signal_and_its_payload(cluster: Cluster, runs: Runs, namespace: str):
    steps = [
        {"name": "Prepare", "handler": "test.step"},
        {"name": "Approval", "wait": {"signal": "approved", "timeoutSeconds": 120}},
        {"name": "Ship", "handler": "test.step"},
    ]
    cluster.apply(workflow("gate", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "gate"), namespace=namespace)
    waiting = runs.watch(namespace, "r1", until=lambda s: s.get("current") == ["Approval"], timeout=30)[-1]
    assert waiting["phase"] == "Running" and waiting["nodes"][1]["phase"] == "Waiting"
    row = cluster.kubectl("get", "workflowrun", "r1", "-n", namespace, "--no-headers").stdout.split()
    assert row[2:4] == ["Running", "Approval"] and "Waiting" in row

    signalled = plugin(
        cluster, "signal", "r1", "approved", "--data", '{"by": "alice"}', "-n", namespace, "--wait"
    )
    assert signalled.returncode == 0, signalled
    assert signalled.stdout.splitlines() == ["workflowrun/r1 signalled approved", "workflowrun/r1 Succeeded"]
    output = runs.get(namespace, "r1")["status"]["output"]
    assert output["by"] == "alice" and output["trail"] == ["Prepare", "Ship"]


def test_a_wait_that_times_out_may_go_on(cluster: Cluster, runs: Runs, namespace: str):
    steps = [
        {"name": "Approval", "wait": {"signal": "approved", "timeoutSeconds": 1, "onTimeout": "continue"}}
    ]
    cluster.apply(workflow("lenient", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "lenient", {"order": 7}), namespace=namespace)
    done = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=30)[-1]
    assert done["output"] == {"order": 7}
