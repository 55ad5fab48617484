"""The worker loop of every controller: take a key from the queue, reconcile it, and on failure
hold it back with growing backoff (logged with the count); on success forget its failures. A
`Permanent` error is logged once and not retried: the key comes back only with news of it.
controller-runtime's reconcileHandler, on asyncio. `Background` keeps the tasks a controller
starts and does not wait for (writes whose outcome comes back as a queue add)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

from seqflow.controller.queue import WorkQueue, backoff

logger = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


class Permanent(Exception):
    """Reconciling this key cannot succeed as things are: retrying it would only repeat this."""


async def _ready() -> None:
    return None


class Workers(Generic[K]):
    def __init__(
        self,
        *,
        queue: WorkQueue[K],
        reconcile: Callable[[K], Awaitable[None]],
        what: str,
        on_error: Callable[[], None] = lambda: None,
        ready: Callable[[], Awaitable[None]] = _ready,
    ) -> None:
        """`what` names a key's object in the log ("run", "schedule"); `ready` is awaited before
        each key (a worker may have to wait for something every reconcile needs)."""
        self._queue = queue
        self._reconcile = reconcile
        self._what = what
        self._on_error = on_error
        self._ready = ready
        self._failures: dict[K, int] = {}
        self._reconciling: set[K] = set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, count: int, *, name: str) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"{name}-{i}") for i in range(count)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reconciling(self) -> frozenset[K]:
        """The keys being reconciled now."""
        return frozenset(self._reconciling)

    def forget(self, key: K) -> None:
        """The key's object is gone: no backoff or timer of it is left."""
        self._failures.pop(key, None)
        self._queue.forget(key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            try:
                await self._ready()
                self._reconciling.add(key)
                await self._reconcile(key)
                self._failures.pop(key, None)
            except Permanent as error:
                self._failures.pop(key, None)
                logger.warning("%s %s cannot be reconciled: %s", self._what, _named(key), error)
            except Exception:
                self._on_error()
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                delay = backoff(failures)
                logger.exception(
                    "reconciling %s %s failed (%d in a row); retrying in %.1f s",
                    self._what,
                    _named(key),
                    failures,
                    delay,
                )
                self._queue.retry_after(key, delay)
            finally:
                self._reconciling.discard(key)
                self._queue.done(key)


def _named(key: Hashable) -> str:
    return "/".join(key) if isinstance(key, tuple) else str(key)


class Background:
    """Tasks started and not awaited; cancelled together at stop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
