"""seqflow: sequential workflows on Kubernetes.

Handler authors need only this module: `@seqflow.task("name")` registers a handler,
`seqflow.TaskContext` is what it receives besides its input (a `seqflow.JsonObject`), and raising
`seqflow.PermanentError` fails the task without retrying.
"""

from seqflow.api.models import JsonObject
from seqflow.executors.inprocess import PermanentError, TaskContext, task

__all__ = ["JsonObject", "PermanentError", "TaskContext", "task"]
