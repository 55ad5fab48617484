"""An attempt's log as it is kept: the last bytes of it up to a bound (`LogTail`), fed by a Job or
Pod step's container log as it is read, or by the `logging` records an in-process handler emits
while it runs (`capture`: records of the handler's own context only, its threads included)."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

RECORD_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogTail:
    """The last `limit` bytes of what was fed, and how many bytes were fed in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._kept = bytearray()

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        self._kept += data[-self.limit :] if self.limit else b""
        if len(self._kept) > self.limit:
            del self._kept[: len(self._kept) - self.limit]

    @property
    def text(self) -> bytes:
        return bytes(self._kept)


_tail: contextvars.ContextVar[LogTail | None] = contextvars.ContextVar("seqflow_attempt_log", default=None)


class _AttemptRecords(logging.Handler):
    """Feeds each record emitted where an attempt's tail is current to that tail."""

    def emit(self, record: logging.LogRecord) -> None:
        tail = _tail.get()
        if tail is not None:
            tail.feed((self.format(record) + "\n").encode(errors="replace"))


_records = _AttemptRecords()
_records.setFormatter(logging.Formatter(RECORD_FORMAT))


@contextlib.contextmanager
def capture(limit: int) -> Iterator[LogTail]:
    """The logging records emitted in this context (and the threads given a copy of it) while
    inside, at the root logger's level, kept in a tail of `limit` bytes."""
    root = logging.getLogger()
    if _records not in root.handlers:
        root.addHandler(_records)
    tail = LogTail(limit)
    token = _tail.set(tail)
    try:
        yield tail
    finally:
        _tail.reset(token)
