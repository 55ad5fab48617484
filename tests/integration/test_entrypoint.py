"""`python -m seqflow task NAME` as a real subprocess, in the environment a Job gives it."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from seqflow.api.models import JobTemplate, PinnedTask, RetryPolicy
from seqflow.engine import CreateJob
from seqflow.executors.jobs import PERMANENT_EXIT_CODE, AttemptUrls, RunRef, job_manifest
from testenv.jaeger import Jaeger
from tests.support import REPO

HANDLERS = REPO / "tests" / "e2e"


def run_in_job_environment(
    handler: str,
    data: dict,
    tmp_path: Path,
    *,
    input_file: bool = True,
    trace: tuple[tuple[str, str], ...] = (),
):
    """Build the attempt's Job, then run its container's command as the kubelet would."""
    task = PinnedTask(name="Check", job=JobTemplate(image="x"), retry=RetryPolicy(), timeout_seconds=5)
    action = CreateJob(node="Check", name="run-1-check-2", task=task, attempt=2, input=data)
    manifest = job_manifest(
        run=RunRef(namespace="ns", name="run-1", uid="u-1"),
        action=action,
        ttl_seconds=None,
        urls=AttemptUrls(trace=trace),
    )
    pod = manifest["spec"]["template"]
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    # What the downward-API volume and the termination log are in a real pod:
    input_path = tmp_path / "input.json"
    if input_file:
        input_path.write_text(pod["metadata"]["annotations"]["seqflow.io/input"])
    env["SEQFLOW_INPUT_PATH"] = str(input_path)
    env["SEQFLOW_OUTPUT_PATH"] = str(tmp_path / "termination-log")
    env["SEQFLOW_HANDLER_MODULES"] = "seqflow_test_handlers"
    env["PYTHONPATH"] = os.pathsep.join([str(HANDLERS), str(REPO / "operator")])
    done = subprocess.run(
        [sys.executable, "-m", "seqflow", "task", handler],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, (tmp_path / "termination-log").read_text()


def test_output_is_written_as_termination_message(tmp_path):
    done, message = run_in_job_environment("test.step", {"trail": ["A"], "step": 1}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(message) == {"trail": ["A", "Check"], "step": 2}


def test_input_from_the_variable_when_no_file(tmp_path):
    done, message = run_in_job_environment("test.step", {"step": 7}, tmp_path, input_file=False)
    assert done.returncode == 0 and json.loads(message)["step"] == 8


@pytest.mark.parametrize(
    ("handler", "code", "message"),
    [
        ("test.fail", 1, "RuntimeError: card declined"),
        ("test.permanent", PERMANENT_EXIT_CODE, "order ORD-9 does not exist"),
        ("test.not_an_object", PERMANENT_EXIT_CODE, "the handler returned list, not a JSON object (dict)"),
        (
            "test.big_output",
            PERMANENT_EXIT_CODE,
            "more than the 4096 Kubernetes keeps of a termination message",
        ),
        ("no.such", PERMANENT_EXIT_CODE, 'no handler registered as "no.such"'),
    ],
)
def test_failures_exit_non_zero_with_the_reason(tmp_path, handler, code, message):
    done, written = run_in_job_environment(handler, {}, tmp_path)
    assert done.returncode == code
    assert message in written and message in done.stderr


def test_attempt_context_comes_from_the_environment(tmp_path):
    done, message = run_in_job_environment("test.context", {}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(message) == {
        "namespace": "ns",
        "run": "run-1",
        "task": "Check",
        "attempt": 2,
        "key": "u-1/Check",
    }


class _Attempt(http.server.BaseHTTPRequestHandler):
    """The operator's attempt links as the entrypoint sees them: its input, its output."""

    input = b""
    received: ClassVar[list[bytes]] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.input)

    def do_PUT(self) -> None:
        self.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_large_input_is_fetched_and_a_large_output_sent_over_http(tmp_path):
    big = {"doc": "d" * 300_000, "step": 1}
    _Attempt.input, _Attempt.received = json.dumps(big).encode(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attempt)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/api/v1/attempts/t"
    try:
        env = {
            "SEQFLOW_INPUT_URL": f"{base}/input",
            "SEQFLOW_OUTPUT_URL": f"{base}/output",
            "SEQFLOW_OUTPUT_PATH": str(tmp_path / "termination-log"),
            "SEQFLOW_HANDLER_MODULES": "seqflow_test_handlers",
            "SEQFLOW_TASK": "Check",
            "PYTHONPATH": os.pathsep.join([str(HANDLERS), str(REPO / "operator")]),
        }
        done = subprocess.run(
            [sys.executable, "-m", "seqflow", "task", "test.step"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "termination-log").read_text() == ""  # the output went over HTTP
    (sent,) = _Attempt.received
    assert json.loads(sent) == {**big, "trail": ["Check"], "step": 2}


def test_the_attempt_runs_in_a_span_under_the_steps_exported_to_the_endpoint_it_is_given(tmp_path):
    """TRACEPARENT and OTEL_EXPORTER_OTLP_ENDPOINT, as seqflow gives a Job's pod: the pod's span
    under the step's, the handler's own span under it, in a real Jaeger."""
    step = "00-5b8aa5a2d2c872e8321cf37308d69df2-051581bf3cb55c13-01"
    with Jaeger() as jaeger:
        trace = (("TRACEPARENT", step), ("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_endpoint))
        done, message = run_in_job_environment("test.traced", {"lines": 1}, tmp_path, trace=trace)
        assert done.returncode == 0 and json.loads(message)["trail"] == ["Check"], done.stderr
        found = jaeger.trace("5b8aa5a2d2c872e8321cf37308d69df2", spans=2)
    spans = {span["operationName"]: span for span in found["spans"]}
    assert sorted(spans) == ["Check pod", "charge card"]
    pod, charge = spans["Check pod"], spans["charge card"]
    assert [(r["refType"], r["spanID"]) for r in pod["references"]] == [("CHILD_OF", "051581bf3cb55c13")]
    assert [r["spanID"] for r in charge["references"]] == [pod["spanID"]]
    assert found["processes"][pod["processID"]]["serviceName"] == "seqflow-step"
