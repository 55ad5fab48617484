"""The e2e operator: `python -m seqflow run` as a child process serving the `e2e-*` namespaces."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv import MariaDB
from testenv.operator import OperatorProcess
from tests.e2e.operators import bind_chart_rbac, start_operator
from tests.support import OPERATOR_USER, Cluster, Runs


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster: Cluster) -> Path:
    """The operators' credentials: a user bound only to the Helm chart's role (least privilege,
    checked by every e2e test); an existing cluster's own kubeconfig otherwise."""
    if cluster.control_plane is None:
        return cluster.kubeconfig
    bind_chart_rbac(cluster, OPERATOR_USER)
    return cluster.kubeconfig_for(OPERATOR_USER)


@pytest.fixture(scope="session")
def operator(
    operator_kubeconfig: Path, crds: None, database_url: str, tmp_path_factory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = start_operator(operator_kubeconfig, log, "e2e-*", database_url)
    yield process
    process.stop()
    print(f"\noperator log: {log}\n{process.tail(40)}")


@pytest.fixture
def mariadb() -> Iterator[MariaDB]:
    """A MariaDB of the test's own, for tests that stop and start the server."""
    if os.environ.get("SEQFLOW_TEST_DATABASE_URL"):
        pytest.skip("stops and starts the database server: needs the local MariaDB")
    with MariaDB() as server:
        yield server


@pytest.fixture(scope="session")
def runs(cluster: Cluster) -> Runs:
    return Runs(cluster.kubeconfig)
