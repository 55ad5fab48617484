"""The one clock of the shells (runs, schedules, the journal, the HTTP API): wall time for what
is written and compared with the cluster's times, monotonic time for deadlines and caches. Given
at start and passed down; the engine is given the time instead."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall time, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds that only go forward, for deadlines and time to live."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()
