"""Logging setup: plain text for people, or one JSON object per line for log collectors, with
the run, task and attempt a line is about as fields of their own. A traceback is printed once;
its repeats are one line each, with a count."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from datetime import UTC, datetime

CONTEXT_FIELDS = ("namespace", "run", "task", "attempt", "event", "error")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{f}={getattr(record, f)}" for f in CONTEXT_FIELDS if getattr(record, f, None) is not None
        )
        return f"{line} [{context}]" if context else line


class RepeatedTracebacks(logging.Filter):
    """Drops the traceback of a record whose traceback was already logged, and says how many
    times it has now been seen instead (an error that keeps recurring stays readable)."""

    def __init__(self, *, remembered: int = 256) -> None:
        super().__init__()
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._remembered = remembered
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        traceback = self._formatter.formatException(record.exc_info)
        count = self._counts.pop(traceback, 0) + 1
        self._counts[traceback] = count
        if len(self._counts) > self._remembered:
            self._counts.popitem(last=False)
        if count > 1:
            error = record.exc_info[1]
            what = f"{type(error).__name__}: {error}"
            record.msg = (
                f"{record.getMessage()}: {what} (seen {count} times; traceback logged the first time)"
            )
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(*, level: str, json_format: bool) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RepeatedTracebacks())
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per watch event
