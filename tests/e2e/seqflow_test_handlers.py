"""Handlers the e2e tests run inside the operator (SEQFLOW_HANDLER_MODULES=seqflow_test_handlers).

Each leaves evidence in its output so the tests can check order and data flow from the status.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time

from opentelemetry import trace

import seqflow


def _stepped(data: dict, context: seqflow.TaskContext) -> dict:
    return {
        **data,
        "trail": [*data.get("trail", []), context.task],
        "step": data.get("step", 0) + 1,
    }


@seqflow.task("test.traced")
def traced(data: dict, context: seqflow.TaskContext) -> dict:
    """A span of its own under the attempt's (the current one), and a few log lines."""
    with trace.get_tracer("shop").start_as_current_span("charge card") as span:
        span.set_attribute("shop.card", "visa")
        for i in range(data.get("lines", 3)):
            logging.getLogger("shop.payments").info("charging, line %d of %s", i, context.task)
    return _stepped(data, context)


@seqflow.task("test.step")
async def step(data: dict, context: seqflow.TaskContext) -> dict:
    """Waits `sleep` seconds (default 0), then appends its task name to `trail`."""
    await asyncio.sleep(data.get("sleep", 0))
    return _stepped(data, context)


@seqflow.task("test.sync_step")
def sync_step(data: dict, context: seqflow.TaskContext) -> dict:
    time.sleep(data.get("sleep", 0))
    return _stepped(data, context)


@seqflow.task("test.flaky")
def flaky(data: dict, context: seqflow.TaskContext) -> dict:
    """Fails its first `fail_attempts` attempts."""
    if context.attempt <= data.get("fail_attempts", 1):
        raise RuntimeError(f"flaky failure on attempt {context.attempt}")
    return _stepped(data, context)


@seqflow.task("test.fail")
def fail(data: dict, context: seqflow.TaskContext) -> dict:
    raise RuntimeError(data.get("error", "card declined"))


@seqflow.task("test.permanent")
def permanent(data: dict, context: seqflow.TaskContext) -> dict:
    raise seqflow.PermanentError("order ORD-9 does not exist")


@seqflow.task("test.not_an_object")
def not_an_object(data: dict, context: seqflow.TaskContext) -> list:
    return ["not", "a", "dict"]


@seqflow.task("test.big_output")
def big_output(data: dict, context: seqflow.TaskContext) -> dict:
    return {"blob": "x" * 5000}


@seqflow.task("test.context")
def show_context(data: dict, context: seqflow.TaskContext) -> dict:
    return {
        "namespace": context.namespace,
        "run": context.run,
        "task": context.task,
        "attempt": context.attempt,
        "key": context.idempotency_key,
    }


@seqflow.task("test.huge_output")
def huge_output(data: dict, context: seqflow.TaskContext) -> dict:
    return {"blob": "x" * (16 * 1024 * 1024)}  # more than a step may return (SEQFLOW_MAX_VALUE_BYTES)


@seqflow.task("test.fails_while_file_exists")
def fails_while_file_exists(data: dict, context: seqflow.TaskContext) -> dict:
    """Fails for good while the file its input names exists (a cause a user can remove)."""
    import os

    if os.path.exists(data["blocker"]):
        raise seqflow.PermanentError(f"{data['blocker']} is in the way")
    return _stepped(data, context)


@seqflow.task("test.count")
async def count(data: dict, context: seqflow.TaskContext) -> dict:
    """Notes each execution (the operator process, run, task, attempt) in the file `executions`,
    after `sleep` seconds; its input is its output."""
    await asyncio.sleep(data.get("sleep", 0))
    with open(data["executions"], "a") as executions:
        executions.write(f"{os.getpid()} {context.run} {context.task} {context.attempt}\n")
    return data


@seqflow.task("test.write_file")
def write_file(data: dict, context: seqflow.TaskContext) -> dict:
    """Writes `mib` MiB of random bytes to its file `data.bin` (none with `skip`), returns its sha256."""
    if data.get("skip") or context.files is None:
        return data
    content = os.urandom(1024 * 1024) * data.get("mib", 1)
    (context.files / "data.bin").write_bytes(content)
    return {"wrote": hashlib.sha256(content).hexdigest()}


@seqflow.task("test.read_file")
def read_file(data: dict, context: seqflow.TaskContext) -> dict:
    """Returns the sha256 and size of its input file `in.bin`, and its input."""
    assert context.files is not None
    content = (context.files / "in.bin").read_bytes()
    return {"read": hashlib.sha256(content).hexdigest(), "size": len(content), "input": data}


@seqflow.task("test.item")
async def item(data: dict, context: seqflow.TaskContext) -> dict:
    """A forEach item: notes `start`, then `end` or `cancelled`, with its index and the time in
    the file `log` of the forEach's input, after `sleep` seconds; fails while its index is in
    `fail` and the file `failing` exists. Returns the square of its item."""
    given = data["input"]

    def note(what: str) -> None:
        with open(given["log"], "a") as log:
            log.write(f"{what} {data['index']} {context.attempt} {time.time()}\n")

    note("start")
    try:
        await asyncio.sleep(given.get("sleep", 0))
    except asyncio.CancelledError:
        note("cancelled")
        raise
    note("end")
    if data["index"] in given.get("fail", []) and os.path.exists(given.get("failing", "")):
        raise RuntimeError(f"item {data['index']} failed")
    return {"square": data["item"] ** 2}


@seqflow.task("test.note")
def note(data: dict, context: seqflow.TaskContext) -> dict:
    """Notes its task and the `index` of its input in the file `log` of the input's `input`;
    its input is its output."""
    with open(data["input"]["log"], "a") as log:
        log.write(f"{context.task} {data['index']}\n")
    return data


@seqflow.task("test.outcome")
def outcome(data: dict, context: seqflow.TaskContext) -> dict:
    """A finally task: notes its task, the run's outcome and the time as a JSON line in the file
    `log` of the run's input."""
    with open(data["input"]["log"], "a") as log:
        log.write(json.dumps({"task": context.task, "outcome": data["outcome"], "at": time.time()}) + "\n")
    return {"noted": True}
