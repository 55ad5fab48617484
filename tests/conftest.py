"""Session fixtures for the real parts: a Kubernetes API server and a MySQL-compatible server.

By default both are started locally (see testenv/); SEQFLOW_TEST_KUBECONFIG and
SEQFLOW_TEST_DATABASE_URL point the same tests at an existing cluster and database instead.
Unit tests under tests/unit use neither and run in seconds.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv import ControlPlane, MariaDB, ensure_binaries
from tests.support import (
    MANAGED_JOBS_USER,
    OPERATOR_USER,
    POD_STEPS_USER,
    REPLICAS_USER,
    REPO,
    Cluster,
    wait_for,
)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    existing = os.environ.get("SEQFLOW_TEST_KUBECONFIG")
    if existing:
        yield Cluster(Path(existing), shutil.which("kubectl") or "kubectl", None)
        return
    with ControlPlane(
        with_jobs=True,
        users=("alice", "bob", OPERATOR_USER, POD_STEPS_USER, MANAGED_JOBS_USER, REPLICAS_USER),
    ) as control_plane:
        print(f"\nlocal control plane ready in {control_plane.start_seconds:.2f} s")
        yield Cluster(control_plane.kubeconfig, str(ensure_binaries().kubectl), control_plane)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    existing = os.environ.get("SEQFLOW_TEST_DATABASE_URL")
    if existing:
        yield existing
        return
    with MariaDB() as server:
        yield server.url


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/workflows.seqflow.io",
        "crd/clusterworkflows.seqflow.io",
        "crd/workflowruns.seqflow.io",
        "crd/workflowschedules.seqflow.io",
    )
    # Kopf discovers resources through /apis once at start: let discovery catch up first.
    wait_for(
        lambda: (
            {"workflowschedules", "clusterworkflows"}
            <= set(
                cluster.kubectl("get", "--raw", "/apis/seqflow.io/v1alpha1", check=False).stdout.split('"')
            )
            and "seqflow.io" in cluster.kubectl("get", "--raw", "/apis", check=False).stdout
        ),
        timeout=30,
        what="the seqflow.io API in discovery",
    )


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test (prefixed `e2e-`, served by the session operator)."""
    stem = request.node.name.removeprefix("test_").replace("_", "-")[:40].strip("-").lower()
    name = f"e2e-{stem}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    return name
