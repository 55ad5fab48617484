"""The benchmark's task: does nothing but note when it started and ended, in its output."""

from __future__ import annotations

import time

import seqflow


@seqflow.task("bench.noop")
async def noop(data: dict, context: seqflow.TaskContext) -> dict:
    started = time.time()
    return {**data, "marks": [*data.get("marks", []), [started, time.time()]]}
