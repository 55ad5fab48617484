"""The chaos benchmark's handler: it appends one line per execution to the file its input names,
so the benchmark can count what really ran, in which order, and how often."""

from __future__ import annotations

import json
import os
import random
import time

import seqflow
from seqflow import JsonObject


@seqflow.task("chaos.step")
def chaos_step(data: JsonObject, context: seqflow.TaskContext) -> JsonObject:
    mean = data.get("sleep", 0.2)
    time.sleep(random.uniform(0.25 * mean, 1.75 * mean))  # long enough for a kill to land mid-task
    line = json.dumps(
        {"run": context.run, "task": context.task, "attempt": context.attempt, "at": time.time()}
    )
    fd = os.open(data["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    blob = (
        {"blob": f"{context.run}/{context.task}".ljust(data["output_bytes"], ".")}
        if data.get("output_bytes")
        else {}
    )
    return {**data, **blob, "done": [*data.get("done", []), context.task]}
