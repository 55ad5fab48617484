"""Handlers for the real-pod tests' Job steps, run as `python -m seqflow task NAME` in the image of
tests/realpods/Dockerfile.handlers (which lists this module in SEQFLOW_HANDLER_MODULES).

- `pod.step`: sleeps `sleep` seconds (default 0, and not passed on), then returns its input with
  the task's name appended to `trail` and the pod's `hostname`, so a test sees which step ran where;
- `pod.flaky`: fails on attempt 1 and succeeds on a retry;
- `pod.permanent`: fails for good (exit code 65);
- `pod.pages`: returns its input with `pages`, `mib` MiB of text (sent to the operator over HTTP).
"""

from __future__ import annotations

import socket
import time

import seqflow
from seqflow import JsonObject


@seqflow.task("pod.step")
def step(data: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    rest = {k: v for k, v in data.items() if k != "sleep"}
    time.sleep(data.get("sleep", 0))
    return {**rest, "trail": [*rest.get("trail", []), context.task], "hostname": socket.gethostname()}


@seqflow.task("pod.flaky")
def flaky(data: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    if context.attempt == 1:
        raise RuntimeError(f"{context.task} fails on attempt 1 on purpose")
    return {**data, "attempt": context.attempt}


@seqflow.task("pod.pages")
def pages(data: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    return {**data, "pages": "p" * (data.get("mib", 2) * 1024 * 1024)}


@seqflow.task("pod.permanent")
def permanent(data: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    raise seqflow.PermanentError(f"{context.task} fails for good on purpose")
