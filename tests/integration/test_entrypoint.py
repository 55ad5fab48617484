"""`python -m seqflow task NAME` as a real subprocess, in the environment a Job gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqflow.api.models import JobTemplate, PinnedTask, RetryPolicy
from seqflow.engine import CreateJob
from seqflow.executors.jobs import PERMANENT_EXIT_CODE, RunRef, job_manifest
from tests.support import REPO

HANDLERS = REPO / "tests" / "e2e"


def run_in_job_environment(handler: str, data: dict, tmp_path: Path, *, input_file: bool = True):
    """Build the attempt's Job, then run its container's command as the kubelet would."""
    task = PinnedTask(name="Check", job=JobTemplate(image="x"), retry=RetryPolicy(), timeout_seconds=5)
    action = CreateJob(node="Check", name="run-1-check-2", task=task, attempt=2, input=data)
    manifest = job_manifest(
        run=RunRef(namespace="ns", name="run-1", uid="u-1"), action=action, ttl_seconds=None
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
