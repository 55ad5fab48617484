"""The pure engine: `plan()` and the data it reads and returns (see `seqflow.engine.plan`)."""

from seqflow.engine.plan import fail_unrecordable, json_size, pin_tasks, plan
from seqflow.engine.types import (
    Action,
    AttemptResult,
    CreateJob,
    Decision,
    EngineOptions,
    EventType,
    Observations,
    PostEvent,
    RunHandler,
    RunView,
    WakeAt,
    WorkflowView,
)

__all__ = [
    "Action",
    "AttemptResult",
    "CreateJob",
    "Decision",
    "EngineOptions",
    "EventType",
    "Observations",
    "PostEvent",
    "RunHandler",
    "RunView",
    "WakeAt",
    "WorkflowView",
    "fail_unrecordable",
    "json_size",
    "pin_tasks",
    "plan",
]
