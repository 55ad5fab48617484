"""A clock that stands still, for tests of the shells (they are given a `seqflow.clock.Clock`)."""

from __future__ import annotations

from datetime import datetime


class FixedClock:
    def __init__(self, now: datetime, *, monotonic: float = 0.0) -> None:
        self.at = now
        self.seconds = monotonic

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.seconds
