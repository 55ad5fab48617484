"""The benchmarks' task: does nothing but note when it started and ended, in its output (padded
to `pad_bytes`, for outputs kept by reference)."""

from __future__ import annotations

import time

import seqflow


@seqflow.task("bench.noop")
async def noop(data: dict, context: seqflow.TaskContext) -> dict:
    """Appends [start, end] to `marks`, also when its input is a Job's echo of the marks."""
    started = time.time()
    marks = data.get("marks") or (data.get("input") or {}).get("marks") or []
    pad = data.get("pad_bytes", 0)
    return {"marks": [*marks, [started, time.time()]], "pad_bytes": pad, "pad": "." * pad}
