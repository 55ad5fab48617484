"""Logs stay readable when an error keeps recurring: one traceback, then a line per repeat."""

from __future__ import annotations

import io
import logging

from seqflow.logs import RepeatedTracebacks, TextFormatter


def test_repeated_traceback_is_printed_once_then_counted():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatedTracebacks())
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("test.repeats")
    logger.addHandler(handler)
    logger.propagate = False

    def fail(run: str) -> None:
        try:
            raise RuntimeError("etcd timeout")
        except RuntimeError:
            logger.exception("reconciling run %s failed", run)

    for _ in range(3):
        fail("ns/r")
    try:
        raise ValueError("another error")
    except ValueError:
        logger.exception("something else")

    text = stream.getvalue()
    assert text.count("Traceback (most recent call last)") == 2  # the first of each error
    lines = text.splitlines()
    third = "failed: RuntimeError: etcd timeout (seen 3 times; traceback logged the first time)"
    assert any(line.endswith("reconciling run ns/r " + third) for line in lines)
    assert sum("seen 2 times" in line for line in lines) == 1
