"""In-process handlers: the registry, the `@task` decorator and the runner of one attempt.

A handler is a plain callable, sync or async, taking the input dict and a `TaskContext` and
returning a dict. Raising `PermanentError` fails the task at once; any other exception is retried
by the task's policy. Sync handlers run in a bounded thread pool, async ones on the event loop,
both under the task's timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import importlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.trace import INVALID_SPAN, Span

from seqflow.api.models import ErrorType, JsonObject
from seqflow.api.values import REF_SHAPE, ref_of
from seqflow.engine import AttemptResult, RunHandler
from seqflow.settings import StartupError


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help (bad input, a refused payment...)."""


@dataclass(frozen=True)
class TaskContext:
    namespace: str
    run: str
    run_uid: str
    task: str
    attempt: int
    # The directory of the step's files (its `artifacts`): inputs there before the call, the
    # declared outputs kept from there after it; None when the step passes none.
    files: Path | None = None
    # The attempt's OpenTelemetry span (current while the handler runs, so that its own spans
    # and its instrumented clients' join the run's trace); INVALID_SPAN with tracing off.
    span: Span = INVALID_SPAN

    @property
    def idempotency_key(self) -> str:
        """Stable across the attempts of one task of one run: pass it to external services so a
        retried attempt (or one repeated after an operator restart) is not applied twice."""
        return f"{self.run_uid}/{self.task}"


Handler = Callable[[JsonObject, TaskContext], JsonObject | Awaitable[JsonObject]]


class HandlerRegistry:
    """Handlers by name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        existing = self._handlers.get(name)
        if existing is not None and existing is not handler:
            raise ValueError(f'a different handler is already registered as "{name}"')
        self._handlers[name] = handler

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> frozenset[str]:
        return frozenset(self._handlers)


registry = HandlerRegistry()


def task(name: str, *, into: HandlerRegistry = registry) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler called `name`."""

    def decorate(handler: Handler) -> Handler:
        into.register(name, handler)
        return handler

    return decorate


def import_handler_modules(modules: Iterable[str]) -> None:
    """Import the modules that register handlers; one that fails to import stops the start."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # whatever the module raised, the user must see which one
            raise StartupError(
                f"SEQFLOW_HANDLER_MODULES: cannot import {module}: {type(error).__name__}: {error}"
            ) from None


class HandlerRunner:
    """Runs one attempt of a handler task and reports how it ended, never raising."""

    def __init__(self, *, handlers: HandlerRegistry, threads: int) -> None:
        self._handlers = handlers
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="handler")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, action: RunHandler, context: TaskContext) -> AttemptResult:
        def failed(
            message: str, *, permanent: bool = False, kind: ErrorType = ErrorType.EXCEPTION
        ) -> AttemptResult:
            return AttemptResult(
                node=action.node, attempt=action.attempt, error=message, permanent=permanent, error_type=kind
            )

        name = action.task.handler or ""
        handler = self._handlers.get(name)
        if handler is None:
            return failed(f'no handler registered as "{name}"', permanent=True)
        timeout = action.task.timeout_seconds
        try:
            async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
                output = await self._call(handler, action.input, context)
        except PermanentError as error:
            return failed(str(error) or type(error).__name__, permanent=True)
        except TimeoutError:
            return failed(f"timed out after {timeout} s", kind=ErrorType.TIMEOUT)
        except Exception as error:  # a handler's failure is the attempt's outcome
            return failed(f"{type(error).__name__}: {error}")
        problem = output_problem(output)
        if problem:  # the handler's code decides its output's shape: retrying cannot fix it
            return failed(problem, permanent=True)
        return AttemptResult(node=action.node, attempt=action.attempt, output=output)

    async def _call(self, handler: Handler, input: JsonObject, context: TaskContext) -> Any:
        if inspect.iscoroutinefunction(handler):
            return await handler(dict(input), context)
        loop = asyncio.get_running_loop()
        # in a copy of this context: what is current here (the attempt's log capture) is current there
        call = functools.partial(contextvars.copy_context().run, handler, dict(input), context)
        result = await loop.run_in_executor(self._pool, call)
        return await result if inspect.isawaitable(result) else result


def output_problem(output: Any) -> str | None:
    """Why a handler's return value cannot be a task's output, or None when it can (its size
    is the engine's to weigh)."""
    if not isinstance(output, dict):
        return f"the handler returned {type(output).__name__}, not a JSON object (dict)"
    try:
        json.dumps(output, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        return f"the handler's output is not JSON-serializable: {error}"
    if ref_of(output) is not None:
        return f"the output may not be {REF_SHAPE}: that is a stored value's reference"
    return None
