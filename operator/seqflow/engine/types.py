"""What the engine is told (the run, its workflow, what was observed) and what it decides.

Plain frozen dataclasses: the reconciler fills the inputs from Kubernetes and the executors, and
carries out the actions. Nothing here talks to the outside world.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from seqflow.api.models import (
    MAX_VALUE_BYTES,
    ErrorType,
    FailureCause,
    JsonObject,
    NodeStatus,
    PinnedMember,
    PinnedTask,
    RunPhase,
    StoredArtifact,
    WorkflowRef,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowSpec,
)
from seqflow.api.values import Encoded, ValueRef


@dataclass(frozen=True)
class RunView:
    """The parts of a WorkflowRun object the engine needs."""

    name: str
    spec: WorkflowRunSpec
    status: WorkflowRunStatus
    generation: int
    created_at: datetime
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    depth: int = 0  # 0 for a run of its own; a sub-workflow's child run is one deeper than its parent
    max_descendants: int | None = None  # a child run's share of its parent's bound (None: the operator's)


@dataclass(frozen=True)
class WorkflowView:
    """The Workflow a run refers to, as currently known."""

    spec: WorkflowSpec
    generation: int


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt of one step ended."""

    node: str  # the step's id
    attempt: int
    output: JsonObject | None = None  # set when the attempt succeeded
    error: str | None = None  # set when it failed
    permanent: bool = False  # a failure that no retry can fix
    reason: str | None = None  # why it failed, when more precise than TaskFailed (DeadlineExceeded)
    cause: FailureCause | None = None  # a child run's, when it failed for good
    artifacts: tuple[StoredArtifact, ...] = ()  # the files a Job step's attempt kept
    retry_after: float | None = None  # seconds the called service asked to be left before a retry
    error_type: ErrorType | None = None  # what kind of failure it was, for a retry's conditions
    exit_code: int | None = None  # a Job step's container's
    # Interrupted from outside (its pod evicted, or deleted by its node): retried, not counted.
    disrupted: bool = False

    @property
    def succeeded(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ChildRun:
    """The child WorkflowRun of a sub-workflow step, as last seen."""

    phase: RunPhase | None
    suspended: bool
    output: JsonObject | None = None
    reason: str = ""  # of its Succeeded condition
    message: str = ""
    cause: FailureCause | None = None  # set when it failed for good
    descendants: int = 0  # runs created beneath it


@dataclass(frozen=True)
class Observations:
    """What the reconciler saw since the status was last written."""

    workflow: WorkflowView | None = None
    workflows: Mapping[str, WorkflowSpec] = field(default_factory=dict)  # the namespace's, by name
    handlers: frozenset[str] = frozenset()
    results: tuple[AttemptResult, ...] = ()  # attempts that ended and are not yet in the status
    handlers_running: frozenset[tuple[str, int]] = frozenset()  # (node, attempt) being executed
    jobs_running: frozenset[str] = frozenset()  # nodes whose current Job exists and runs
    children: Mapping[str, ChildRun] = field(default_factory=dict)  # node -> its current child run
    blocked: Mapping[str, str] = field(default_factory=dict)  # node -> why its Job or child cannot be made
    history_written_through: int = 0  # activity log entries up to this seq are in the store
    deleted: bool = False  # the run is being deleted
    queued: tuple[int, int] | None = None  # (position, of how many) while its Workflow is at its limit
    hold: bool = False  # handed to another replica: take in what happened, start nothing new
    # The progress journal could not be read: what an earlier process did with the run's
    # in-process attempts is not known, so none starts and none counts as interrupted.
    progress_unknown: bool = False
    values: Mapping[str, JsonObject] = field(
        default_factory=dict
    )  # stored values the status names, by digest
    input_from: InputRead | None = None  # spec.inputFrom as read before the start (None: not read)
    retry_source: RetrySource | None = None  # spec.retryFrom's run as read before the start
    # Cached steps looked up: node -> the output kept under its key, or None when there is none.
    cached: Mapping[str, JsonObject | None] = field(default_factory=dict)


@dataclass(frozen=True)
class InputRead:
    """A run's spec.inputFrom as read: the input, or why there is none (`missing`: the object or
    its key is not there, and may appear; `problem`: what is there is not a JSON object)."""

    value: JsonObject | None = None
    missing: str | None = None
    problem: str | None = None


@dataclass(frozen=True)
class RetrySource:
    """The run a run retries from (spec.retryFrom), as read before the start: its task list,
    its nodes, its input and the input its task had (None: unknown), or why it cannot be had."""

    pinned_tasks: list[PinnedTask] = field(default_factory=list)
    nodes: list[NodeStatus] = field(default_factory=list)
    run_input: JsonObject = field(default_factory=dict)
    step_input: JsonObject | None = None
    output_schema: JsonObject | None = None
    problem: str | None = None


@dataclass(frozen=True)
class EngineOptions:
    """Operator-wide policy the engine applies."""

    workflow_wait: timedelta = timedelta(seconds=30)
    default_timeout_seconds: int = 300
    max_value_bytes: int = MAX_VALUE_BYTES  # an input or output larger than this fails its run or step
    inline_value_bytes: int = 4096  # larger values are stored, and named in the status by reference
    node_chunk: int = 100  # finished nodes are folded into the store this many at a time
    inline_tasks_bytes: int = 16 * 1024  # a larger task list is kept in the store
    value_recheck: timedelta = timedelta(seconds=5)  # how often a run waiting for a stored value looks again
    blocked_recheck: timedelta = timedelta(seconds=30)  # how often a blocked attempt looks again
    run_ttl: timedelta | None = None  # delete finished runs this long after they finish
    max_pending_history: int = 200  # entries held in a status while the store is behind
    max_pending_history_bytes: int = 256 * 1024  # and their size (inputs and outputs included)
    max_depth: int = 8  # sub-workflows nested deeper than this fail (a cycle, most likely)
    max_descendants: int = 1000  # runs a run may create beneath it, its sub-workflows' included


# ----- actions -----


class EventType(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class RunHandler:
    """Call the in-process handler of a step once (after the status saying so is written)."""

    node: str
    task: PinnedTask | PinnedMember
    attempt: int
    input: JsonObject
    artifacts: tuple[StoredArtifact, ...] = ()  # its input files, by the names they have for it


@dataclass(frozen=True)
class CreateJob:
    """Create the Job of one attempt of a step (after the status saying so is written).
    Creating it again is harmless: its name is a function of (run, step, attempt)."""

    node: str
    name: str
    task: PinnedTask | PinnedMember
    attempt: int
    input: JsonObject  # the value, or the reference to it when it is stored
    artifacts: tuple[StoredArtifact, ...] = ()  # its input files, by the names they have in its pod
    item: int | None = None  # the index of the forEach item it runs


@dataclass(frozen=True)
class CreateChildRun:
    """Create the child WorkflowRun of one attempt of a sub-workflow step, owned by the run.
    Creating it again is harmless: its name is a function of (run, step, attempt)."""

    node: str
    name: str
    attempt: int
    workflow: WorkflowRef
    input: JsonObject  # the value, or the reference to it when it is stored
    suspend: bool
    depth: int
    max_descendants: int  # the child's share: what is left of the parent's bound


@dataclass(frozen=True)
class ControlChildRun:
    """Pass the run's suspend or cancel on to a child run (its spec fields of the same names)."""

    name: str
    suspend: bool | None = None
    cancel: bool | None = None


@dataclass(frozen=True)
class CancelHandler:
    """Stop an in-process attempt: an async handler is cancelled, a sync one's result dropped."""

    node: str
    attempt: int


@dataclass(frozen=True)
class DeleteJob:
    """Delete the Job of a cancelled attempt (and its pod)."""

    name: str


@dataclass(frozen=True)
class DeleteRun:
    """Delete the run itself: its time to live after finishing is over (its history stays)."""


@dataclass(frozen=True)
class WakeAt:
    """Look at this run again at the given time (a backoff or a wait running out)."""

    when: datetime

    def delay_from(self, now: datetime) -> timedelta:
        return max(self.when - now, timedelta(0))


@dataclass(frozen=True)
class PostEvent:
    """Tell the story in a Kubernetes Event on the run."""

    type: EventType
    reason: str
    message: str


Action = (
    RunHandler
    | CreateJob
    | CreateChildRun
    | ControlChildRun
    | CancelHandler
    | DeleteJob
    | DeleteRun
    | WakeAt
    | PostEvent
)


@dataclass(frozen=True)
class Decision:
    status: WorkflowRunStatus
    actions: tuple[Action, ...] = field(default=())
    values: Mapping[str, Encoded] = field(default_factory=dict)  # to store (by digest) before the status
    held: bool = False  # nothing observed was taken in (the results wait for the next plan)


class ValueMissing(Exception):
    """A stored value the plan needs is not among the observed ones (the store did not answer)."""

    def __init__(self, ref: ValueRef) -> None:
        super().__init__(ref.digest)
        self.ref = ref
