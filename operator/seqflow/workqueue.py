"""A de-duplicating work queue of run keys, with delayed re-adds (the timers behind backoff).

A key is handed to one worker at a time. Adding a key that is waiting does nothing; adding a key
that is being processed marks it to be processed once more when its worker is done. This is the
classic controller work queue, on asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class WorkQueue:
    def __init__(self) -> None:
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._waiting: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._again: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, key: Hashable) -> None:
        if key in self._processing:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        """Add `key` after `delay` seconds; an earlier pending timer for it wins."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Hashable:
        key = await self._ready.get()
        self._waiting.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def forget(self, key: Hashable) -> None:
        """Drop the pending timer of a key that no longer needs one (say, a deleted run)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()


def backoff(failures: int, *, first: float = 0.5, limit: float = 30.0) -> float:
    """Seconds to wait after the `failures`-th consecutive failure: doubling, capped."""
    return min(first * 2 ** (max(failures, 1) - 1), limit)
