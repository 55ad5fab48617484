"""The pure engine: `plan()` and the data it reads and returns (see `seqflow.engine.plan`)."""

from seqflow.engine.plan import derive_phase, fail_unrecordable, job_name, json_size, pin_tasks, plan
from seqflow.engine.types import (
    Action,
    AttemptResult,
    CancelHandler,
    CreateJob,
    Decision,
    DeleteJob,
    DeleteRun,
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
    "CancelHandler",
    "CreateJob",
    "Decision",
    "DeleteJob",
    "DeleteRun",
    "EngineOptions",
    "EventType",
    "Observations",
    "PostEvent",
    "RunHandler",
    "RunView",
    "WakeAt",
    "WorkflowView",
    "derive_phase",
    "fail_unrecordable",
    "job_name",
    "json_size",
    "pin_tasks",
    "plan",
]
