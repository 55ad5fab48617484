"""Running one registered handler inside a Job's container: `python -m seqflow task NAME`.

Reads the input and the context from the environment the Job manifest sets (see
`seqflow.executors.jobs`; a large input from SEQFLOW_INPUT_URL), calls the handler, and writes
its output as JSON to the termination message, or one too large for it to SEQFLOW_OUTPUT_URL.
Exit codes: 0 done, 1 failed (retried by the task's policy), 65 permanent error.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode

from seqflow.api.models import JsonObject
from seqflow.executors.inprocess import (
    PermanentError,
    TaskContext,
    import_handler_modules,
    output_problem,
    registry,
)
from seqflow.executors.jobs import PERMANENT_EXIT_CODE, TERMINATION_LOG, TERMINATION_MESSAGE_LIMIT
from seqflow.settings import StartupError
from seqflow.tracing import joined_span

TRANSFER_TIMEOUT_SECONDS = 120


def _read_input(environ: dict[str, str]) -> Any:
    path = environ.get("SEQFLOW_INPUT_PATH")
    if path and Path(path).is_file():
        return json.loads(Path(path).read_text())
    url = environ.get("SEQFLOW_INPUT_URL")
    if url and "SEQFLOW_INPUT" not in environ:
        with urllib.request.urlopen(url, timeout=TRANSFER_TIMEOUT_SECONDS) as response:
            return json.loads(response.read())
    return json.loads(environ.get("SEQFLOW_INPUT", "{}"))


def _send_output(url: str, text: str) -> None:
    request = urllib.request.Request(url, data=text.encode(), method="PUT")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=TRANSFER_TIMEOUT_SECONDS):
        pass


def _context(environ: dict[str, str], handler: str, span: Span) -> TaskContext:
    return TaskContext(
        namespace=environ.get("SEQFLOW_NAMESPACE", ""),
        run=environ.get("SEQFLOW_RUN", ""),
        run_uid=environ.get("SEQFLOW_RUN_UID", ""),
        task=environ.get("SEQFLOW_TASK", handler),
        attempt=int(environ.get("SEQFLOW_ATTEMPT", "1")),
        files=Path(environ["SEQFLOW_ARTIFACTS_DIR"]) if "SEQFLOW_ARTIFACTS_DIR" in environ else None,
        span=span,
    )


async def _awaited(result: Awaitable[JsonObject]) -> JsonObject:
    return await result


def run_task(
    handler_name: str, *, modules: list[str], environ: dict[str, str], span: Span = INVALID_SPAN
) -> int:
    """Call the handler once; write its output or error to the termination message."""
    output_path = Path(environ.get("SEQFLOW_OUTPUT_PATH", TERMINATION_LOG))

    def finish(message: str, code: int) -> int:
        output_path.write_text(message)
        if code:
            print(message, file=sys.stderr)
        return code

    try:
        import_handler_modules(modules)
    except StartupError as error:
        return finish(str(error), PERMANENT_EXIT_CODE)
    handler = registry.get(handler_name)
    if handler is None:
        known = ", ".join(sorted(registry.names())) or "none"
        return finish(f'no handler registered as "{handler_name}" (registered: {known})', PERMANENT_EXIT_CODE)
    try:
        data = _read_input(environ)
        if not isinstance(data, dict):
            raise PermanentError(f"the input must be a JSON object, got {type(data).__name__}")
        result = handler(data, _context(environ, handler_name, span))
        output = asyncio.run(_awaited(result)) if inspect.isawaitable(result) else result
    except PermanentError as error:
        return finish(str(error) or type(error).__name__, PERMANENT_EXIT_CODE)
    except Exception as error:  # the attempt's outcome, reported to seqflow
        return finish(f"{type(error).__name__}: {error}", 1)
    problem = output_problem(output)
    if problem:  # the same input gives the same output: no retry helps
        return finish(problem, PERMANENT_EXIT_CODE)
    text = json.dumps(output, separators=(",", ":"))
    size = len(text.encode())
    if size <= TERMINATION_MESSAGE_LIMIT:
        return finish(text, 0)
    url = environ.get("SEQFLOW_OUTPUT_URL")
    if not url:
        return finish(
            f"the output is {size} bytes, more than the {TERMINATION_MESSAGE_LIMIT} Kubernetes keeps of "
            "a termination message, and the operator takes none over HTTP (SEQFLOW_API_URL is unset)",
            PERMANENT_EXIT_CODE,
        )
    try:
        _send_output(url, text)
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        refused = error.code in (400, 403, 404, 413, 422)  # too large, not JSON, not this attempt's
        code = PERMANENT_EXIT_CODE if refused else 1  # else (the store away, a conflict) again
        return finish(f"the operator did not take the output ({error.code}): {detail}", code)
    except OSError as error:  # the operator is away: another attempt may get through
        return finish(f"the output could not be sent to the operator: {error}", 1)
    return finish("", 0)


def main(handler_name: str, modules: list[str]) -> None:
    """With TRACEPARENT and OTEL_EXPORTER_OTLP_ENDPOINT set (seqflow sets both when it traces),
    the attempt runs in a span of its own under the step's, the handler's spans beneath it."""
    environ = dict(os.environ)
    task = environ.get("SEQFLOW_TASK", handler_name)
    attributes = {
        "seqflow.step": task,
        "seqflow.handler": handler_name,
        "k8s.pod.name": environ.get("HOSTNAME", ""),
    }
    traceparent, endpoint = environ.get("TRACEPARENT"), environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    with joined_span(
        f"{task} pod", traceparent=traceparent, endpoint=endpoint, attributes=attributes
    ) as span:
        code = run_task(handler_name, modules=modules, environ=environ, span=span)
        if code:
            span.set_status(Status(StatusCode.ERROR, f"exit code {code}"))
    sys.exit(code)
