"""The operator killed with SIGKILL in the middle of a run, then started again, finishes the run."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from tests.e2e.operators import start_operator
from tests.support import Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = pytest.mark.cluster


def test_sigkill_mid_task_retries_interrupted_attempt_and_finishes(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, operator_kubeconfig, tmp_path
):
    # A namespace of its own, served by an operator of its own that this test kills.
    namespace = f"restart-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    operator = start_operator(operator_kubeconfig, tmp_path / "first.log", "restart-*", database_url)
    retry = {"backoffSeconds": 0.5}
    tasks = [{"name": n, "handler": "test.step", "retry": retry} for n in ("A", "B", "C")]
    cluster.apply(workflow("slow", tasks), namespace=namespace)
    cluster.apply(workflow_run("r1", "slow", {"sleep": 1.5}), namespace=namespace)

    runs.watch(namespace, "r1", until=lambda s: s.get("current") == ["B"], timeout=30)
    operator.kill()
    assert runs.get(namespace, "r1")["status"]["nodes"][1]["phase"] == "Running"

    restarted = start_operator(operator_kubeconfig, tmp_path / "second.log", "restart-*", database_url)
    try:
        history = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=60)
    finally:
        restarted.stop()

    interrupted = [s for s in history if s["nodes"][1]["phase"] == "Retrying"]
    assert interrupted, history
    assert "interrupted" in interrupted[0]["nodes"][1]["lastError"]
    final = runs.get(namespace, "r1")["status"]
    assert [t["attempts"] for t in final["nodes"]] == [1, 2, 1]
    assert final["retries"] == 1
    assert final["output"]["trail"] == ["A", "B", "C"]  # nothing skipped, nothing out of order
    starts = [datetime.fromisoformat(t["startedAt"]) for t in final["nodes"]]
    finishes = [datetime.fromisoformat(t["finishedAt"]) for t in final["nodes"]]
    assert finishes[0] <= starts[1] and finishes[1] <= starts[2]


def test_sigkill_before_fast_steps_are_written_runs_no_attempt_twice(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, operator_kubeconfig, tmp_path
):
    """Steps that end within the write delay run ahead of the status, each start journaled
    first: an operator killed before the status says anything runs no attempt again."""
    namespace = f"restart-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    log = tmp_path / "executions.log"
    fast = {"SEQFLOW_WRITE_DELAY_SECONDS": "5"}
    operator = start_operator(operator_kubeconfig, tmp_path / "first.log", namespace, database_url, **fast)
    tasks = [{"name": n, "handler": "test.count", "retry": {"backoffSeconds": 0.2}} for n in "ABCD"]
    cluster.apply(workflow("fast", tasks), namespace=namespace)
    cluster.apply(workflow_run("r1", "fast", {"executions": str(log), "sleep": 0.4}), namespace=namespace)
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, timeout=30, interval=0.02)
    operator.kill()
    assert not runs.get(namespace, "r1").get("status", {}).get("nodes")  # nothing of it written

    restarted = start_operator(operator_kubeconfig, tmp_path / "second.log", namespace, database_url, **fast)
    try:
        runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=60)
    finally:
        restarted.stop()
    executed = [tuple(line.split()[2:]) for line in log.read_text().splitlines()]
    assert len(executed) == len(set(executed))  # no attempt executed twice
    assert executed.count(("A", "1")) == 1 and ("A", "2") not in executed  # its end was journaled
    final = runs.get(namespace, "r1")["status"]
    assert sorted(t["attempts"] for t in final["nodes"]) == [1, 1, 1, 2]  # one interrupted, retried
    assert [t["id"] for t in final["nodes"]] == list("ABCD")
