"""seqflow: sequential workflows on Kubernetes.

Handler authors need only this module: `@seqflow.task("name")` registers a handler,
`seqflow.TaskContext` is what it receives besides its input (a `seqflow.JsonObject`), and raising
`seqflow.PermanentError` fails the task without retrying.

They load on first use, so that `python -m seqflow --help` starts without the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seqflow.api.models import JsonObject
    from seqflow.executors.inprocess import PermanentError, TaskContext, task

__all__ = ["JsonObject", "PermanentError", "TaskContext", "task"]


def __getattr__(name: str) -> object:
    if name == "JsonObject":
        from seqflow.api import models

        return models.JsonObject
    if name in __all__:
        from seqflow.executors import inprocess

        return getattr(inprocess, name)
    raise AttributeError(f"module 'seqflow' has no attribute {name!r}")
