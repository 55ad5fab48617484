"""The in-process runner: how each way a handler can end becomes an attempt result."""

from __future__ import annotations

import asyncio
import time

import pytest

from seqflow.api.models import PinnedTask, RetryPolicy
from seqflow.engine import RunHandler
from seqflow.executors.inprocess import HandlerRegistry, HandlerRunner, PermanentError, TaskContext, task

registry = HandlerRegistry()


@task("echo", into=registry)
def echo(data, context):
    return {**data, "attempt": context.attempt, "key": context.idempotency_key}


@task("async_echo", into=registry)
async def async_echo(data, context):
    await asyncio.sleep(0)
    return {"async": True, **data}


@task("slow", into=registry)
async def slow(data, context):
    await asyncio.sleep(5)
    return {}


@task("slow_sync", into=registry)
def slow_sync(data, context):
    time.sleep(2)
    return {}


@task("refuse", into=registry)
def refuse(data, context):
    raise PermanentError("no such customer")


@task("crash", into=registry)
def crash(data, context):
    raise KeyError("amount")


@task("listy", into=registry)
def listy(data, context):
    return [1, 2]


@task("unserializable", into=registry)
def unserializable(data, context):
    return {"when": object()}


def attempt(handler: str, data: dict | None = None, timeout: int = 2):
    action = RunHandler(
        node="T",
        task=PinnedTask(name="T", handler=handler, retry=RetryPolicy(), timeout_seconds=timeout),
        attempt=3,
        input=data or {"n": 1},
    )
    context = TaskContext(namespace="ns", run="r", run_uid="uid-1", task="T", attempt=3)
    runner = HandlerRunner(handlers=registry, threads=2)
    try:
        return asyncio.run(runner.run(action, context))
    finally:
        runner.close()


def test_sync_and_async_handlers_return_output():
    result = attempt("echo")
    assert result.succeeded and (result.node, result.attempt) == ("T", 3)
    assert result.output == {"n": 1, "attempt": 3, "key": "uid-1/T"}
    assert attempt("async_echo").output == {"async": True, "n": 1}


@pytest.mark.parametrize(
    ("handler", "error", "permanent"),
    [
        ("refuse", "no such customer", True),
        ("crash", "KeyError: 'amount'", False),
        ("slow", "timed out after 1 s", False),
        ("slow_sync", "timed out after 1 s", False),
        ("listy", "the handler returned list, not a JSON object (dict)", True),
        ("missing", 'no handler registered as "missing"', True),
    ],
)
def test_failures_become_attempt_results(handler, error, permanent):
    result = attempt(handler, timeout=1)
    assert not result.succeeded
    assert result.error.startswith(error) and result.permanent is permanent


def test_output_must_be_json():
    assert "not JSON-serializable" in attempt("unserializable").error


def test_registering_another_handler_under_a_taken_name_fails():
    with pytest.raises(ValueError, match='already registered as "echo"'):
        registry.register("echo", lambda data, context: data)
