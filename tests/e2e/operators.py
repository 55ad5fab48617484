"""Starting the seqflow operator for e2e tests, with the test handlers loaded."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import yaml

from testenv import ensure_binaries
from testenv._proc import free_port
from testenv.operator import OperatorProcess
from tests.support import REPO, Cluster, wait_for

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "SEQFLOW_HANDLER_MODULES": "seqflow.examples,seqflow_test_handlers",
    "SEQFLOW_WORKFLOW_WAIT_SECONDS": "3",
    "SEQFLOW_LOG_LEVEL": "DEBUG",
    "SEQFLOW_JOB_TTL_SECONDS": "none",  # keep finished Jobs, so tests can inspect them
    "SEQFLOW_HTTP_ALLOWED_HOSTS": "127.0.0.1,*.svc",  # the tests' own HTTP servers
}


def start_operator(
    kubeconfig: Path, log: Path, namespaces: str, database_url: str, **settings: str
) -> OperatorProcess:
    """An operator serving `namespaces`, its HTTP endpoints and metrics on free ports."""
    http_port = str(free_port())
    settings = {
        **SETTINGS,
        "SEQFLOW_NAMESPACES": namespaces,
        "SEQFLOW_DATABASE_URL": database_url,
        "SEQFLOW_HTTP_PORT": http_port,
        "SEQFLOW_API_URL": f"http://127.0.0.1:{http_port}",  # where the tests play Job steps' pods
        "SEQFLOW_METRICS_PORT": str(free_port()),
        **settings,
    }
    operator = OperatorProcess(kubeconfig=kubeconfig, settings=settings, log=log, python_path=(HERE,)).start()
    wait_for(
        lambda: _answers(metrics_url(operator)) or not operator.running(),
        timeout=30,
        what="the operator's endpoints",
    )
    assert operator.running(), operator.tail()
    return operator


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def bind_chart_rbac(
    cluster: Cluster, user: str, *, release: str = "seqflow-e2e", values: str = "", namespace: str = "default"
) -> None:
    """Grant `user` exactly the chart's roles (cluster-wide, and those in the release's
    `namespace`), as the chart grants its ServiceAccount (with webhooks enabled: the e2e tests
    deliver some), rendered with `values` (helm --set)."""
    helm = str(ensure_binaries().helm)
    rendered = subprocess.run(
        [
            helm,
            "template",
            release,
            str(REPO / "charts" / "seqflow"),
            "--namespace",
            namespace,
            "--set",
            ",".join(v for v in ("peering.enabled=false", "webhooks.enabled=true", values) if v),
            "--show-only",
            "templates/rbac.yaml",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    cluster.apply(role, namespace=namespace)
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        f"{user}-chart-role",
        f"--clusterrole={role['metadata']['name']}",
        f"--user={user}",
    )
    for role in [d for d in docs if d["kind"] == "Role"]:
        cluster.apply(role, namespace=namespace)
        name = role["metadata"]["name"]
        cluster.kubectl(
            "create", "rolebinding", f"{user}-{name}", f"--role={name}", f"--user={user}", "-n", namespace
        )


def metrics_url(operator: OperatorProcess) -> str:
    return f"http://127.0.0.1:{operator.settings['SEQFLOW_METRICS_PORT']}/metrics"


def http_url(operator: OperatorProcess) -> str:
    return f"http://127.0.0.1:{operator.settings['SEQFLOW_HTTP_PORT']}"
