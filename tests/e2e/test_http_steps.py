"""End to end: http steps against a real HTTP server on 127.0.0.1. A 503 is retried (after its
Retry-After) and the 200's JSON is the step's output, with a header from a Secret and a body
rendered from the input; a 404 fails the run for good showing the status and the body's start;
a host outside SEQFLOW_HTTP_ALLOWED_HOSTS is refused without a request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tests.e2e.test_job_tasks import wait_phase
from tests.support import Cluster, Runs, condition, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


class Orders(BaseHTTPRequestHandler):
    """Reserves orders: busy (503, Retry-After 1) the first time it is asked for one."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        asked = {
            "path": self.path,
            "auth": self.headers.get("Authorization"),
            "body": body,
            "at": time.monotonic(),
        }
        self.seen.append(asked)
        if self.path.startswith("/reserve/") and sum(s["path"] == self.path for s in self.seen) == 1:
            self._answer(503, b"busy, try again", retry_after="1")
        elif self.path.startswith("/reserve/"):
            reply = {"reserved": self.path.removeprefix("/reserve/"), "lines": len(json.loads(body)["lines"])}
            self._answer(200, json.dumps(reply).encode(), content_type="application/json")
        else:
            self._answer(404, b"no such order: " + self.path.encode() + b" " + b"x" * 400)

    def _answer(
        self, status: int, body: bytes, *, content_type: str = "text/plain", retry_after: str = ""
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if retry_after:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def orders() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Orders)
    Orders.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def call(name: str, url: str, **http: Any) -> dict[str, Any]:
    step = {
        "name": "Reserve",
        "http": {"url": url, **http},
        "retry": {"maxRetries": 2, "backoffSeconds": 0.2},
    }
    return workflow(name, [step])


def test_a_503_is_retried_after_its_retry_after_and_the_200s_json_is_the_output(
    cluster: Cluster, runs: Runs, namespace: str, orders: str
):
    cluster.kubectl(
        "create", "secret", "generic", "orders-api", "-n", namespace, "--from-literal=token=Bearer t0k3n"
    )
    headers = [
        {"name": "Content-Type", "value": "application/json"},
        {"name": "Authorization", "secretKeyRef": {"name": "orders-api", "key": "token"}},
    ]
    reserve = call(
        "reserve", orders + "/reserve/{{ input.order }}", method="POST", headers=headers, body="{{ input }}"
    )
    cluster.apply(reserve, namespace=namespace)
    cluster.apply(workflow_run("r", "reserve", {"order": "ORD-1", "lines": [1, 2, 3]}), namespace=namespace)
    wait_phase(cluster, namespace, "r", "Succeeded", timeout=60)
    status = runs.get(namespace, "r")["status"]
    assert status["output"] == {"reserved": "ORD-1", "lines": 3}
    first, second = Orders.seen
    assert (first["path"], second["path"]) == ("/reserve/ORD-1", "/reserve/ORD-1")
    assert first["auth"] == second["auth"] == "Bearer t0k3n"
    assert json.loads(first["body"]) == {"order": "ORD-1", "lines": [1, 2, 3]}
    assert second["at"] - first["at"] >= 1.0  # its Retry-After, though the policy's backoff is 0.2 s


def test_a_404_fails_the_run_for_good_with_the_status_and_the_bodys_start(
    cluster: Cluster, runs: Runs, namespace: str, orders: str
):
    cluster.apply(
        call("lookup", orders + "/orders/{{ input.order }}", method="POST", body="{}"), namespace=namespace
    )
    cluster.apply(workflow_run("r2", "lookup", {"order": "ORD-9"}), namespace=namespace)
    wait_phase(cluster, namespace, "r2", "Failed", timeout=60)
    summary = condition(runs.get(namespace, "r2")["status"], "Succeeded")
    assert summary["reason"] == "TaskFailed"
    assert summary["message"].startswith(
        f"Task Reserve failed (permanent error): POST {orders}/orders/ORD-9 answered 404 Not Found: "
        "no such order: /orders/ORD-9 xxx"
    ), summary
    assert summary["message"].endswith("x...")
    assert len(Orders.seen) == 1  # not retried


def test_a_host_outside_the_allow_list_is_refused(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(call("outside", "https://example.com/hook"), namespace=namespace)
    cluster.apply(workflow_run("r3", "outside", {}), namespace=namespace)
    wait_phase(cluster, namespace, "r3", "Failed", timeout=60)
    summary = condition(runs.get(namespace, "r3")["status"], "Succeeded")
    assert summary["reason"] == "HostNotAllowed"
    assert (
        "host example.com:443 is not in SEQFLOW_HTTP_ALLOWED_HOSTS (127.0.0.1, *.svc)" in summary["message"]
    )
