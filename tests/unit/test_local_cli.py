"""`seqflow run --local`: its exit codes (0 succeeded, 1 not, 2 a usage error in one line), the
transitions it prints on stderr and the output JSON on stdout, run as a subprocess; and the
signals typed on a terminal while a step waits."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqflow.local import LocalOptions, TerminalSignals, load_workflows, run_local
from seqflow.local.options import import_modules

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
NAP = """
apiVersion: seqflow.io/v1alpha1
kind: Workflow
metadata: {name: nap}
spec:
  tasks:
    - name: Nap
      sleep: {seconds: 3600}
    - name: Echo
      job:
        image: busybox
        command: [sh, -c, 'printf "{\\"seen\\": %s}" "$SEQFLOW_INPUT" > "$SEQFLOW_OUTPUT_PATH"']
"""
GATE = """
kind: Workflow
metadata: {name: gate}
spec:
  tasks:
    - {name: Gate, wait: {signal: go}}
"""


def seqflow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    return subprocess.run(
        [sys.executable, "-m", "seqflow", "run", *map(str, args)],
        cwd=REPO,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def nap(tmp_path: Path) -> Path:
    path = tmp_path / "nap.yaml"
    path.write_text(NAP)
    return path


def test_a_run_that_succeeds_prints_its_steps_and_output(nap: Path):
    began = time.monotonic()
    done = seqflow("--local", nap, "--input", '{"a": 1}', "--jobs", "local")
    wall = time.monotonic() - began
    print(f"a 3600 s sleep run by the command in {wall:.2f} s of wall time")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"seen": {"a": 1}}
    lines = done.stderr.splitlines()
    assert [line.split()[1:] for line in lines[:4]] == [
        ["Nap", "Running", "attempt", "1"],
        ["Nap", "Succeeded", "attempt", "1"],
        ["Echo", "Running", "attempt", "1"],
        ["Echo", "Succeeded", "attempt", "1"],
    ]
    offsets = [float(line.split()[0].strip("+s")) for line in lines[:4]]
    assert offsets[0] < 1 and 3600 <= offsets[1] < 3601  # the jump over the sleep
    summary = re.fullmatch(
        r"run local: Succeeded \(Succeeded\) All 2 tasks succeeded in ([\d.]+) s of virtual .*", lines[4]
    )
    assert summary and 3600 <= float(summary.group(1)) < 3601  # virtual time runs on with the wall's
    assert wall < 10  # the interpreter's start included


def test_a_retried_handler_and_its_sub_workflow(tmp_path: Path):
    order = {"order_id": "ORD-1", "amount": 10, "flaky_gateway": True}
    order_file = tmp_path / "order.json"
    order_file.write_text(json.dumps(order))
    done = seqflow(
        "--local",
        WORKFLOWS / "order-process.yaml",
        "--input-file",
        order_file,
        "--handlers",
        "seqflow.examples",
    )
    assert done.returncode == 0, done.stderr
    assert (
        "DeductMoney                  Retrying    attempt 1  ConnectionError: payment gateway timeout"
        in done.stderr
    )
    assert json.loads(done.stdout)["email"] == "receipt for ORD-1 sent"
    shipped = seqflow(
        "--local",
        WORKFLOWS / "order-fulfilment.yaml",
        WORKFLOWS / "shipping.yaml",
        "--input",
        '{"order_id": "ORD-2", "amount": 5}',
        "--handlers",
        "seqflow.examples",
        "--stub",
        'Pack={"order_id": "ORD-2", "parcel": "none"}',  # a step of the sub-workflow
    )
    assert shipped.returncode == 0, shipped.stderr
    assert "    Ship > Pack                Succeeded   attempt 1" in shipped.stderr
    assert json.loads(shipped.stdout)["sms"].startswith("ORD-2 is on its way (TRK-")


def test_a_run_that_fails_exits_1(tmp_path: Path):
    late = '{"order_id": "ORD-2", "amount": 80, "days_since_purchase": 45}'
    done = seqflow(
        "--local", WORKFLOWS / "refund-process.yaml", "--input", late, "--handlers", "seqflow.examples"
    )
    assert done.returncode == 1
    assert (
        "CheckEligibility             Failed      attempt 1  refunds are possible within 30 days"
        in done.stderr
    )
    assert "run local: Failed (TaskFailed)" in done.stderr


def test_signals_and_stubs_given_on_the_command_line():
    done = seqflow(
        "--local",
        WORKFLOWS / "expense-approval.yaml",
        "--input",
        '{"employee": "bob", "amount": 120}',
        "--signal",
        'approved={"approved_by": "alice"}',
        "--stub",
        'Submit={"employee": "bob", "amount": 99}',
        "--handlers",
        "seqflow.examples",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"employee": "bob", "amount": 99, "approved_by": "alice", "paid": 99}


def test_a_run_left_waiting_for_a_signal_stops_saying_so(tmp_path: Path):
    gate = tmp_path / "gate.yaml"
    gate.write_text(GATE)
    done = seqflow("--local", gate)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].endswith("stopped: step Gate waits for signal go and none was given")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--local", "missing.yaml"], "seqflow: missing.yaml: cannot be read: No such file or directory"),
        (["--local", "{workflows}/order-process.yaml", "--input", "{"], "seqflow: --input: not JSON: "),
        (
            ["--local", "{workflows}/order-process.yaml", "--input", "[1]"],
            "seqflow: --input: a JSON object is needed, got list",
        ),
        (
            ["--local", "{workflows}/order-process.yaml", "--stub", "Nope={}"],
            "seqflow: --stub Nope: no step of that id",
        ),
        (
            ["--local", "{workflows}/order-process.yaml", "--stub", "SendEmail"],
            "seqflow: --stub 'SendEmail': NAME=JSON is needed",
        ),
        (
            ["--local", "{workflows}/order-process.yaml", "--signal", "go=1"],
            "seqflow: --signal go: a JSON object is needed, got int",
        ),
        (
            ["--local", "{workflows}/order-process.yaml", "--handlers", "no.such"],
            "seqflow: --handlers: cannot import no.such: ",
        ),
        (
            ["--local", "{workflows}/order-process.yaml", "--input-file", "none.json"],
            "seqflow: --input-file none.json: No such file",
        ),
        (["--local", "{tmp}/bad.yaml"], "seqflow: {tmp}/bad.yaml: not YAML: "),
        (
            ["--local", "{tmp}/empty.yaml"],
            "seqflow: {tmp}/empty.yaml: no Workflow in it (a document of kind: Workflow or ClusterWorkflow)",
        ),
        (["--local", "{tmp}/invalid.yaml"], "seqflow: {tmp}/invalid.yaml: Workflow w: spec.tasks: "),
    ],
    ids=[
        "no file",
        "bad JSON",
        "not an object",
        "unknown stub",
        "stub without JSON",
        "bad signal",
        "bad module",
        "no input file",
        "not YAML",
        "no Workflow",
        "invalid Workflow",
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], error: str):
    (tmp_path / "bad.yaml").write_text("kind: [")
    (tmp_path / "empty.yaml").write_text("kind: ConfigMap\n")
    (tmp_path / "invalid.yaml").write_text("kind: Workflow\nmetadata: {name: w}\nspec: {tasks: []}\n")
    done = seqflow(*(a.replace("{workflows}", str(WORKFLOWS)).replace("{tmp}", str(tmp_path)) for a in args))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(error.replace("{tmp}", str(tmp_path))), done.stderr


def test_local_options_without_local_are_a_usage_error():
    done = seqflow("--input", "{}")
    assert done.returncode == 2
    assert "these options are for a local run: add --local WORKFLOW.yaml" in done.stderr


def test_signals_typed_on_the_terminal_while_a_step_waits():
    import_modules(["seqflow.examples"])
    typed = io.StringIO('approved {"approved_by": "dan"\napproved {"approved_by": "dan"}\n')
    asked = io.StringIO()
    options = LocalOptions(
        workflows=load_workflows([WORKFLOWS / "expense-approval.yaml"]), input={"employee": "e", "amount": 3}
    )
    result = asyncio.run(run_local(options, signals=TerminalSignals(lines=typed, prompt=asked)))
    assert result.succeeded, result.summary()
    assert result.output is not None and result.output["approved_by"] == "dan"
    prompts = asked.getvalue().splitlines()
    assert prompts[0] == "step Approval waits for signal approved: type NAME JSON (an empty line: none)"
    assert prompts[1].startswith("not JSON: ")
    assert result.virtual_seconds < 1


def test_an_empty_line_lets_the_clock_run_to_the_timeout():
    import_modules(["seqflow.examples"])
    options = LocalOptions(
        workflows=load_workflows([WORKFLOWS / "expense-approval.yaml"]), input={"employee": "e", "amount": 3}
    )
    prompt = TerminalSignals(lines=io.StringIO("\n"), prompt=io.StringIO())
    result = asyncio.run(run_local(options, signals=prompt))
    assert result.steps["Approval"].attempts == 4  # one empty line, then the input ended: no more asking
    assert result.reason == "TaskFailed"
