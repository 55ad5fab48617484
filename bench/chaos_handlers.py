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
    time.sleep(random.uniform(0.05, 0.4))  # long enough for a kill to land in the middle
    line = json.dumps(
        {"run": context.run, "task": context.task, "attempt": context.attempt, "at": time.time()}
    )
    fd = os.open(data["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return {**data, "done": [*data.get("done", []), context.task]}
