"""Active-active replicas: three operators split the runs through bucket Leases; every attempt
is executed by one replica only; a replica that joins gets its share without cutting short the
work under way; a replica killed loses its buckets to the others once its Leases expire, and none of what it
executed is executed again. The replicas hold the chart's roles for buckets > 0, no more."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from testenv.operator import OperatorProcess
from tests.e2e.operators import bind_chart_rbac, start_operator
from tests.support import REPLICAS_USER, Cluster, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster]
BUCKETS, LEASE_SECONDS = 16, 6.0


def executions(path: Path) -> dict[tuple[str, str, str], set[str]]:
    """(run, task, attempt) -> the operator processes that executed it."""
    by_attempt: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    lines = path.read_text().splitlines() if path.exists() else []
    for pid, run, task, attempt in (line.split() for line in lines):
        by_attempt[(run, task, attempt)].add(pid)
    return by_attempt


def bucket_holders(cluster: Cluster, namespace: str) -> dict[str, str | None]:
    leases = cluster.get_json("leases", "-n", namespace, "-l", "seqflow.io/lease=bucket")["items"]
    return {lease["metadata"]["name"]: lease["spec"].get("holderIdentity") for lease in leases}


def finished(cluster: Cluster, namespace: str, names: list[str]) -> bool:
    listed = cluster.get_json("workflowruns", "-n", namespace)["items"]
    phases = {run["metadata"]["name"]: (run.get("status") or {}).get("phase") for run in listed}
    return all(phases.get(name) == "Succeeded" for name in names)


def apply_all(cluster: Cluster, manifests: list[dict], namespace: str) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "List", "items": manifests}, namespace=namespace)


def test_three_replicas_share_the_runs_and_take_over_from_one_killed(
    cluster: Cluster, crds: None, database_url: str, tmp_path: Path
):
    namespace = f"replicas-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    kubeconfig = cluster.kubeconfig
    if cluster.control_plane is not None:  # the chart's roles, its bucket Leases in `namespace`
        values = f"buckets={BUCKETS},database.url=mysql+pymysql://seqflow@history/seqflow"
        bind_chart_rbac(
            cluster, REPLICAS_USER, release="seqflow-replicas", values=values, namespace=namespace
        )
        kubeconfig = cluster.kubeconfig_for(REPLICAS_USER)
    log = tmp_path / "executions.log"
    replicas: dict[str, OperatorProcess] = {}

    def replica_settings(name: str) -> dict[str, str]:
        return {
            "SEQFLOW_BUCKETS": str(BUCKETS),
            "SEQFLOW_REPLICA_NAME": name,
            "SEQFLOW_LEASE_NAMESPACE": namespace,
            "SEQFLOW_LEASE_SECONDS": str(LEASE_SECONDS),
            "SEQFLOW_LOG_LEVEL": "INFO",
            "SEQFLOW_WRITE_DELAY_SECONDS": "0.5",  # fast steps share writes: their hand-over too
        }

    for name in ("replica-0", "replica-1", "replica-2"):
        replicas[name] = start_operator(
            kubeconfig, tmp_path / f"{name}.log", namespace, database_url, **replica_settings(name)
        )
    try:
        wait_for(
            lambda: sorted(Counter(bucket_holders(cluster, namespace).values()).values()) == [5, 5, 6],
            timeout=30,
            interval=0.5,
            what="the buckets to be shared out evenly",
        )
        steps = [{"name": f"S{i}", "handler": "test.count"} for i in range(3)]
        cluster.apply(workflow("counted", steps), namespace=namespace)
        names = [f"r{i:03d}" for i in range(300)]
        apply_all(cluster, [workflow_run(n, "counted", {"executions": str(log)}) for n in names], namespace)
        wait_for(
            lambda: finished(cluster, namespace, names), timeout=240, interval=1, what="300 runs to succeed"
        )
        executed = executions(log)
        assert len(executed) == 300 * 3  # every step of every run, once, on its first attempt
        assert all(len(pids) == 1 for pids in executed.values())
        workers = {pid for pids in executed.values() for pid in pids}
        assert workers == {str(replica.pid) for replica in replicas.values()}  # all three worked

        # A replica joins with runs in flight: the others hand it its share, the work under way on
        # it ending first, so no attempt is cut short (retried) or executed twice.
        joining = [f"j{i:03d}" for i in range(60)]
        slow_input = {"executions": str(log), "sleep": 0.3}
        apply_all(cluster, [workflow_run(n, "counted", slow_input) for n in joining], namespace)
        time.sleep(1)
        replicas["replica-3"] = start_operator(
            kubeconfig,
            tmp_path / "replica-3.log",
            namespace,
            database_url,
            **replica_settings("replica-3"),
        )
        wait_for(
            lambda: sorted(Counter(bucket_holders(cluster, namespace).values()).values()) == [4, 4, 4, 4],
            timeout=30,
            interval=0.5,
            what="the buckets to be shared out among four",
        )
        wait_for(
            lambda: finished(cluster, namespace, joining), timeout=120, interval=1, what="the runs to succeed"
        )
        handed = {k: pids for k, pids in executions(log).items() if k[0] in joining}
        assert len(handed) == len(joining) * 3 and all(len(pids) == 1 for pids in handed.values())
        assert {attempt for _, _, attempt in handed} == {"1"}

        # A replica dies with runs in flight: the others take its buckets once its Leases expire.
        slow = [f"k{i:03d}" for i in range(60)]
        apply_all(cluster, [workflow_run(n, "counted", slow_input) for n in slow], namespace)
        time.sleep(1)
        victim = replicas.pop("replica-0")
        victim.kill()
        wait_for(  # (bench/throughput.py --replicas 3 measures how soon)
            lambda: set(bucket_holders(cluster, namespace).values()) == set(replicas),
            timeout=3 * LEASE_SECONDS,
            what="the killed replica's buckets to move",
        )
        wait_for(
            lambda: finished(cluster, namespace, slow), timeout=120, interval=1, what="the runs to succeed"
        )
        # What the killed replica was executing is interrupted and retried as a new attempt: the
        # journal tells the new owners which attempts it had started before its status said so.
        assert all(len(pids) == 1 for pids in executions(log).values())
    finally:
        for replica in replicas.values():
            replica.stop()
