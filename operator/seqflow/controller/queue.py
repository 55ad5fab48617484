"""A de-duplicating work queue of keys, with delayed re-adds (the timers behind backoff).

A key is handed to one worker at a time. Adding a key that is waiting does nothing; adding a key
that is being processed marks it to be processed once more when its worker is done. A key whose
processing failed is held back (`retry_after`): adds before its due time wait for it, so a
failing key is retried when the log says it is, not on the next watch event. Urgent keys (a
run whose attempt just ended) go before the others, so a run moves on to its next step at once
while new runs wait their turn. This is the classic controller work queue, on asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._ready: asyncio.PriorityQueue[tuple[int, int, K]] = asyncio.PriorityQueue()
        self._added = 0  # keeps the order of adds within a priority
        self._urgent: set[K] = set()  # keys being processed that were added urgently again
        self._waiting: set[K] = set()
        self._processing: set[K] = set()
        self._again: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._held_until: dict[K, float] = {}  # loop times before which a failed key is not retried

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, key: K, *, urgent: bool = False) -> None:
        """Queue `key`; an urgent key goes ahead of every key that is not."""
        held = self._held_until.get(key)
        if held is not None:
            remaining = held - asyncio.get_running_loop().time()
            if remaining > 0:
                self.add_after(key, remaining)
                return
            del self._held_until[key]
        if key in self._processing:
            self._again.add(key)
            if urgent:
                self._urgent.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._added += 1
            self._ready.put_nowait((0 if urgent else 1, self._added, key))

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` after `delay` seconds; an earlier pending timer for it wins."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def retry_after(self, key: K, delay: float) -> None:
        """Process `key` again in `delay` seconds, and not before: its processing failed."""
        self._held_until[key] = asyncio.get_running_loop().time() + delay
        self._again.discard(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self.add_after(key, delay)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        _, _, key = await self._ready.get()
        self._waiting.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._again:
            self._again.discard(key)
            urgent = key in self._urgent
            self._urgent.discard(key)
            self.add(key, urgent=urgent)

    def forget(self, key: K) -> None:
        """Drop the pending timer of a key that no longer needs one (say, a deleted run)."""
        self._held_until.pop(key, None)
        self._urgent.discard(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()


def backoff(failures: int, *, first: float = 0.5, limit: float = 30.0) -> float:
    """Seconds to wait after the `failures`-th consecutive failure: doubling, capped."""
    return float(min(first * 2 ** (max(failures, 1) - 1), limit))
