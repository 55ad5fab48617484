"""Two replicas with Kopf peering: one is active, the other stands by and takes over when the
active one dies."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.operators import start_operator
from tests.support import REPO, Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster]
PEERING = "seqflow-e2e"


def started_by(operator, run: str) -> bool:
    return f"run={run} event=WORKFLOW_STARTED" in operator.log.read_text()


def test_standby_takes_over_when_the_active_replica_dies(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, tmp_path
):
    namespace = f"peer-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("apply", "-f", str(REPO / "charts" / "seqflow" / "crds" / "kopfpeerings.kopf.dev.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev")
    cluster.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}},
        namespace=namespace,
    )
    peered = {
        "SEQFLOW_PEERING": PEERING,
        "SEQFLOW_PRIORITY": "1",
        "SEQFLOW_PEERING_LIFETIME_SECONDS": "5",
        "SEQFLOW_LOG_LEVEL": "INFO",
    }
    replicas = [
        start_operator(cluster.kubeconfig, tmp_path / f"replica-{i}.log", namespace, database_url, **peered)
        for i in range(2)
    ]
    try:
        cluster.apply(workflow("w", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
        cluster.apply(workflow_run("r1", "w"), namespace=namespace)
        wait_for(
            lambda: (runs.get(namespace, "r1").get("status") or {}).get("phase") == "Succeeded",
            timeout=60,
            what="r1 to succeed",
        )
        wait_for(lambda: any(started_by(r, "r1") for r in replicas), timeout=10, what="the log line")
        (active,) = [r for r in replicas if started_by(r, "r1")]  # one replica did the work
        (standby,) = [r for r in replicas if r is not active]

        active.kill()
        cluster.apply(workflow_run("r2", "w"), namespace=namespace)
        wait_for(
            lambda: (runs.get(namespace, "r2").get("status") or {}).get("phase") == "Succeeded",
            timeout=60,
            what="the standby to take over and run r2",
        )
        wait_for(lambda: started_by(standby, "r2"), timeout=10, what="the standby's log line")
    finally:
        for replica in replicas:
            replica.stop()
