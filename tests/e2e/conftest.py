"""The e2e operator: `python -m seqflow run` as a child process serving the `e2e-*` namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Cluster, Runs
from testenv.operator import OperatorProcess

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "SEQFLOW_HANDLER_MODULES": "seqflow.examples,seqflow_test_handlers",
    "SEQFLOW_WORKFLOW_WAIT_SECONDS": "3",
    "SEQFLOW_LOG_LEVEL": "DEBUG",
}


def start_operator(cluster: Cluster, log: Path, namespaces: str) -> OperatorProcess:
    settings = {**SETTINGS, "SEQFLOW_NAMESPACES": namespaces}
    return OperatorProcess(
        kubeconfig=cluster.kubeconfig, settings=settings, log=log, python_path=(HERE,)
    ).start()


@pytest.fixture(scope="session")
def operator(cluster: Cluster, crds: None, tmp_path_factory) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = start_operator(cluster, log, "e2e-*")
    yield process
    process.stop()
    print(f"\noperator log: {log}\n{process.tail(40)}")


@pytest.fixture(scope="session")
def runs(cluster: Cluster) -> Runs:
    return Runs(cluster.kubeconfig)
