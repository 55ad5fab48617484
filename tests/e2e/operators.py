"""Starting the seqflow operator for e2e tests, with the test handlers loaded."""

from __future__ import annotations

from pathlib import Path

from tests.support import Cluster
from testenv._proc import free_port
from testenv.operator import OperatorProcess

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "SEQFLOW_HANDLER_MODULES": "seqflow.examples,seqflow_test_handlers",
    "SEQFLOW_WORKFLOW_WAIT_SECONDS": "3",
    "SEQFLOW_LOG_LEVEL": "DEBUG",
    "SEQFLOW_JOB_TTL_SECONDS": "none",  # keep finished Jobs, so tests can inspect them
}


def start_operator(
    cluster: Cluster, log: Path, namespaces: str, database_url: str, **settings: str
) -> OperatorProcess:
    """An operator serving `namespaces`, its HTTP endpoints on a free port (`http_url(...)`)."""
    settings = {
        **SETTINGS,
        "SEQFLOW_NAMESPACES": namespaces,
        "SEQFLOW_DATABASE_URL": database_url,
        "SEQFLOW_HTTP_PORT": str(free_port()),
        **settings,
    }
    return OperatorProcess(
        kubeconfig=cluster.kubeconfig, settings=settings, log=log, python_path=(HERE,)
    ).start()


def http_url(operator: OperatorProcess) -> str:
    return f"http://127.0.0.1:{operator.settings['SEQFLOW_HTTP_PORT']}"
