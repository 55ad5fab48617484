"""A Job step's attempt as a local process: its container's command and args run on this
machine with the Job contract of seqflow.executors.jobs (the input in SEQFLOW_INPUT and in the
file SEQFLOW_INPUT_PATH, the output a JSON object written to SEQFLOW_OUTPUT_PATH, exit code 65
a failure no retry can fix), under the step's timeout. The image is not used: the command runs
as it is, so it must exist here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path

from seqflow.api.models import ErrorType, JsonObject, PinnedMember, PinnedTask, Reason
from seqflow.engine import AttemptResult, CreateJob
from seqflow.executors.inprocess import TaskContext
from seqflow.executors.jobs import PERMANENT_EXIT_CODE, task_container
from seqflow.executors.outcomes import parse_output

LOG_TAIL = 500  # characters of its output shown when a process fails with no message


def command_of(task: PinnedTask | PinnedMember) -> list[str]:
    """The command and args of the step's task container (empty when it names neither)."""
    job = task.job
    assert job is not None
    if job.pod_template is not None:
        container = task_container(job.pod_template.get("spec") or {})
        return [*(container.get("command") or []), *(container.get("args") or [])]
    return [*(job.command or []), *(job.args or [])]


def environment_of(task: PinnedTask | PinnedMember) -> dict[str, str]:
    """The variables the step sets on its container (the simple form's)."""
    job = task.job
    assert job is not None
    return {variable.name: variable.value for variable in job.env or []}


async def run_process(
    action: CreateJob, *, input: JsonObject, context: TaskContext, environment: Mapping[str, str]
) -> AttemptResult:
    """Run the attempt's command to its end (killed past the step's timeout or when cancelled)."""
    command = command_of(action.task)
    if not command:
        return _failed(
            action,
            f"a local Job runs the step's command and args, and step {action.node} gives none (only "
            "an image, whose entrypoint is not known here): give them, or stub the step",
            permanent=True,
        )
    with tempfile.TemporaryDirectory(prefix="seqflow-job-") as directory:
        input_path, output_path = Path(directory) / "input.json", Path(directory) / "output"
        input_json = json.dumps(input, separators=(",", ":"))
        input_path.write_text(input_json)
        output_path.touch()
        variables = {
            **environment,
            **environment_of(action.task),
            "SEQFLOW_INPUT": input_json,
            "SEQFLOW_INPUT_PATH": str(input_path),
            "SEQFLOW_OUTPUT_PATH": str(output_path),
            "SEQFLOW_NAMESPACE": context.namespace,
            "SEQFLOW_RUN": context.run,
            "SEQFLOW_RUN_UID": context.run_uid,
            "SEQFLOW_TASK": action.task.name,
            "SEQFLOW_ATTEMPT": str(action.attempt),
        }
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                env=variables,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped whole, as a pod is
            )
        except OSError as error:
            return _failed(action, f"cannot start {command[0]}: {error.strerror or error}", permanent=True)
        try:
            async with asyncio.timeout(action.task.timeout_seconds):
                logs, _ = await process.communicate()
        except TimeoutError:
            await _stopped(process)
            return _overran(action)
        except asyncio.CancelledError:
            await _stopped(process)
            raise
        message = output_path.read_text(errors="replace").strip()
        return _outcome(
            action, code=process.returncode or 0, message=message, logs=logs.decode(errors="replace")
        )


def _overran(action: CreateJob) -> AttemptResult:
    limit = action.task.timeout_seconds
    return AttemptResult(
        node=action.node,
        attempt=action.attempt,
        error=f"DeadlineExceeded: the process ran longer than its {limit} s deadline",
        reason=Reason.DEADLINE_EXCEEDED,
        error_type=ErrorType.DEADLINE_EXCEEDED,
    )


def _outcome(action: CreateJob, *, code: int, message: str, logs: str) -> AttemptResult:
    if code == 0:
        output, problem = parse_output(message)
        if problem:
            return _failed(action, problem)
        return AttemptResult(node=action.node, attempt=action.attempt, output=output)
    said = message or " ".join(logs[-LOG_TAIL:].split())
    return AttemptResult(
        node=action.node,
        attempt=action.attempt,
        error=f"exit code {code}: {said}" if said else f"exit code {code}",
        permanent=code == PERMANENT_EXIT_CODE,
        exit_code=code,
        error_type=ErrorType.ERROR,
    )


async def _stopped(process: asyncio.subprocess.Process) -> None:
    """Kill the process and what it started (they hold its output pipe)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _failed(action: CreateJob, error: str, *, permanent: bool = False) -> AttemptResult:
    return AttemptResult(node=action.node, attempt=action.attempt, error=error, permanent=permanent)
