"""The e2e operator: `python -m seqflow run` as a child process serving the `e2e-*` namespaces."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.operators import start_operator
from tests.support import Cluster, Runs
from testenv.operator import OperatorProcess

@pytest.fixture(scope="session")
def operator(cluster: Cluster, crds: None, database_url: str, tmp_path_factory) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = start_operator(cluster, log, "e2e-*", database_url)
    yield process
    process.stop()
    print(f"\noperator log: {log}\n{process.tail(40)}")


@pytest.fixture(scope="session")
def runs(cluster: Cluster) -> Runs:
    return Runs(cluster.kubeconfig)
