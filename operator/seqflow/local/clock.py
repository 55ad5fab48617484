"""The clock of a local run: wall time as it passes, plus the jumps made over waits when
nothing runs (virtual time: a one-hour sleep is over at once), unless the run keeps real time.
It is the `seqflow.clock.Clock` of the executors it drives (an http step's Retry-After)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta


class LocalClock:
    """Time from `start`: what passed on this machine's monotonic clock, plus the jumps."""

    def __init__(self, *, start: datetime, real_time: bool) -> None:
        self.start = start
        self.real_time = real_time
        self._began = time.monotonic()
        self._skipped = 0.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.monotonic())

    def monotonic(self) -> float:
        return time.monotonic() - self._began + self._skipped

    def offset(self, when: datetime) -> float:
        """Seconds of `when` since the start."""
        return (when - self.start).total_seconds()

    async def reach(self, when: datetime) -> None:
        """Let the time come to `when`: jump there, or with real time, sleep until then."""
        ahead = (when - self.now()).total_seconds()
        if ahead <= 0:
            return
        if self.real_time:
            await asyncio.sleep(ahead)
        else:
            self._skipped += ahead
