"""Pydantic models of the Workflow and WorkflowRun resources: spec, status, phases and reasons.

These models are the single source of the CRD schemas (see `seqflow.api.crd`) and the shapes the
engine reads and writes. Field names are the camelCase names users write in manifests.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "seqflow.io"
VERSION = "v1alpha1"
MAX_TASKS = 100
MAX_MEMBERS = 20
MAX_FINALLY = 10  # finally tasks of a Workflow
MAX_ITEMS = 10_000  # items of one forEach step
MAX_PARALLEL_ITEMS = 200  # of them running at once (each keeps room for its end in the activity log)
DEFAULT_PARALLEL_ITEMS = 50
# Inputs and outputs up to this many bytes of JSON by default (SEQFLOW_MAX_VALUE_BYTES); those
# above the inline threshold are kept in the history store, the status names them by reference.
MAX_VALUE_BYTES = 16 * 1024 * 1024
# What an input, a payload or an output may weigh where it is written inline: in a run's spec
# or in a request to the HTTP API (etcd keeps at most 1.5 MiB per object).
MAX_INLINE_BYTES = 512 * 1024
DEFAULT_HTTP_TIMEOUT_SECONDS = 30
PERCENT = r"^[0-9]{1,3}%$"
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"

JsonObject = dict[str, Any]


def cel_rules(*rules: tuple[str, str]) -> ConfigDict:
    """Model config that carries CEL validation rules, (rule, message), into the CRD schema."""
    return ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}
    )


class Model(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_wire(self) -> JsonObject:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RunPhase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    COMPENSATING = "Compensating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


FINISHED = (RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED)


class NodePhase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    WAITING = "Waiting"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"
    CACHED = "Cached"  # succeeded at once with an output kept from an earlier run (cache)
    COMPENSATED = "Compensated"  # succeeded, then undone by its compensation


class NodeType(enum.StrEnum):
    HANDLER = "handler"
    JOB = "job"
    HTTP = "http"  # a request the operator makes
    SLEEP = "sleep"
    WAIT = "wait"
    PARALLEL = "parallel"
    FOR_EACH = "forEach"  # a step per item of a list
    WORKFLOW = "workflow"  # a sub-workflow: a child WorkflowRun


class Reason(enum.StrEnum):
    """Reasons of the `Succeeded` condition and of the Kubernetes Events seqflow posts."""

    WAITING_FOR_WORKFLOW = "WaitingForWorkflow"
    WORKFLOW_NOT_FOUND = "WorkflowNotFound"
    HANDLER_NOT_FOUND = "HandlerNotFound"
    INVALID_WORKFLOW = "InvalidWorkflow"
    INPUT_INVALID = "InputInvalid"
    OUTPUT_INVALID = "OutputInvalid"
    CONDITION_FAILED = "ConditionFailed"
    INPUT_TOO_LARGE = "InputTooLarge"
    WAITING_FOR_INPUT = "WaitingForInput"
    OUTPUT_TOO_LARGE = "OutputTooLarge"
    ARTIFACT_MISSING = "ArtifactMissing"
    ARTIFACTS_UNAVAILABLE = "ArtifactsUnavailable"
    VALUE_UNAVAILABLE = "ValueUnavailable"
    RUN_TOO_LARGE = "RunTooLarge"
    STATUS_INVALID = "StatusInvalid"
    INTERNAL_ERROR = "InternalError"
    HISTORY_BACKLOG = "HistoryBacklog"
    ATTEMPT_BLOCKED = "AttemptBlocked"
    PROGRESS_UNKNOWN = "ProgressUnknown"
    RUN_DELETED = "RunDeleted"
    CANCELLED = "Cancelled"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    RETRIED = "Retried"
    QUEUED = "Queued"
    STARTED = "Started"
    TASK_STARTED = "TaskStarted"
    WAITING = "Waiting"
    TASK_RETRYING = "TaskRetrying"
    TASK_FAILED = "TaskFailed"
    TASK_INTERRUPTED = "TaskInterrupted"
    DEPTH_EXCEEDED = "DepthExceeded"
    TOO_MANY_RUNS = "TooManyRuns"
    COMPENSATING = "Compensating"
    COMPENSATED = "Compensated"
    COMPENSATION_FAILED = "CompensationFailed"
    ITEMS_INVALID = "ItemsInvalid"
    FINALLY_RUNNING = "FinallyRunning"
    FINALLY_FAILED = "FinallyFailed"
    RETRY_SOURCE_INVALID = "RetrySourceInvalid"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    TEMPLATE_FAILED = "TemplateFailed"
    HOST_NOT_ALLOWED = "HostNotAllowed"
    SUCCEEDED = "Succeeded"


# ----- Workflow spec -----


class ErrorType(enum.StrEnum):
    """What kind of failure ended an attempt (`error.type` in a retry's `when`)."""

    OOM_KILLED = "OOMKilled"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    TIMEOUT = "Timeout"
    ERROR = "Error"
    CONNECTION_ERROR = "ConnectionError"
    HTTP_STATUS = "HttpStatus"
    EXCEPTION = "Exception"  # a handler raised


class RetryOverride(Model):
    """A retry policy as written in a manifest: every field optional, unset ones inherited."""

    max_retries: Annotated[int | None, Field(ge=0, le=100)] = Field(
        default=None, description="Retries after the first attempt (0 = no retry)."
    )
    backoff_seconds: Annotated[float | None, Field(gt=0)] = Field(
        default=None, description="Delay before the first retry."
    )
    backoff_factor: Annotated[float | None, Field(ge=1)] = Field(
        default=None, description="Multiplier applied to the delay after each failed attempt."
    )
    max_backoff_seconds: Annotated[float | None, Field(gt=0)] = Field(
        default=None, description="Upper bound of the delay between attempts."
    )
    on: Annotated[list[ErrorType], Field(max_length=8)] | None = Field(
        default=None,
        description="Retry only failures of these types (with exitCodes and when: any that matches): "
        "OOMKilled, DeadlineExceeded (a Job past its timeout), Timeout (a handler or request past "
        "its timeout), Error (a container's non-zero exit), ConnectionError and HttpStatus (an http "
        "step's 5xx or 429).",
    )
    exit_codes: Annotated[list[Annotated[int, Field(ge=1, le=255)]], Field(max_length=32)] | None = Field(
        default=None,
        description="Retry only a Job whose container exited with one of these codes (or as on, when).",
    )
    when: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Retry only when this CEL expression over `error` (message, reason, type, "
        "exitCode) and `attempt` is true (or as on, exitCodes).",
    )


class RetryPolicy(Model):
    """A resolved retry policy: every field set."""

    max_retries: int = 3
    backoff_seconds: float = 2.0
    backoff_factor: float = 2.0
    max_backoff_seconds: float = 300.0
    on: list[ErrorType] | None = None
    exit_codes: list[int] | None = None
    when: str | None = None

    @property
    def selective(self) -> bool:
        """Whether it retries only the failures it names."""
        return self.on is not None or self.exit_codes is not None or self.when is not None

    def merged(self, override: RetryOverride | None) -> RetryPolicy:
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        delay = self.backoff_seconds * self.backoff_factor ** (attempt - 1)
        return min(delay, self.max_backoff_seconds)


class EnvVar(Model):
    name: str = Field(min_length=1)
    value: str = ""


MAX_ARTIFACTS = 16
ARTIFACT_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"


class ArtifactOutput(Model):
    """A file the step writes, kept in the object store when it has ended."""

    name: str = Field(pattern=ARTIFACT_NAME_PATTERN, max_length=63, description="Its file name.")


class ArtifactInput(Model):
    """A file an earlier step produced, there before the step starts."""

    name: str = Field(pattern=ARTIFACT_NAME_PATTERN, max_length=63, description="Its file name here.")
    step: str = Field(
        min_length=1,
        max_length=127,
        description="The earlier step that produced it (GROUP/MEMBER for a group's member).",
    )
    artifact: str | None = Field(
        default=None,
        pattern=ARTIFACT_NAME_PATTERN,
        max_length=63,
        description="Its name among that step's outputs (default: name).",
    )

    @property
    def produced_as(self) -> str:
        return self.artifact or self.name


class Artifacts(Model):
    """Files a step needs and makes, passed between steps through the object store (names
    unique across both: checked with the Workflow, a CEL rule over nested lists costs too much)."""

    inputs: Annotated[list[ArtifactInput], Field(max_length=MAX_ARTIFACTS)] = Field(default_factory=list)
    outputs: Annotated[list[ArtifactOutput], Field(max_length=MAX_ARTIFACTS)] = Field(default_factory=list)


class StoredArtifact(Model):
    """A file a step produced, in the object store."""

    name: str
    key: str = Field(description="Its object key in the artifact bucket.")
    size: int = Field(ge=0, description="Bytes.")
    sha256: str


class KeyRef(Model):
    name: str = Field(min_length=1, max_length=253, description="The object, in the run's namespace.")
    key: str = Field(min_length=1, max_length=253, description="Its data key.")


class HttpHeader(Model):
    model_config = cel_rules(
        ("has(self.value) != has(self.secretKeyRef)", "a header needs exactly one of value or secretKeyRef"),
    )

    name: str = Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", max_length=256)
    value: str | None = Field(default=None, max_length=8192, description="Its value ({{ }} templates).")
    secret_key_ref: KeyRef | None = Field(
        default=None, description="Its value from a key of a Secret in the run's namespace."
    )


class HttpSpec(Model):
    """One HTTP request per attempt, made by the operator (to the hosts SEQFLOW_HTTP_ALLOWED_HOSTS
    allows). The response's JSON object is the step's output; any other body is `{body: ...}`.
    Connection errors, 5xx and 429 are retried (after Retry-After when given); any other code not
    in successCodes fails the step for good."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=r"^(https?://|\{\{)",
        description="An http:// or https:// URL, or a template giving one ({{ }} templates); "
        "redirects are not followed.",
    )
    headers: Annotated[list[HttpHeader], Field(max_length=32)] | None = None
    body: str | None = Field(
        default=None,
        max_length=65536,
        description='The request body ({{ }} templates: "{{ input }}" is the input as JSON).',
    )
    success_codes: Annotated[list[Annotated[int, Field(ge=100, le=599)]], Field(max_length=32)] | None = (
        Field(default=None, description="Status codes that succeed (default: 200 to 299).")
    )
    timeout_seconds: Annotated[int | None, Field(ge=1, le=3600)] = Field(
        default=None, description=f"Time limit of one request (default {DEFAULT_HTTP_TIMEOUT_SECONDS})."
    )


class JobTemplate(Model):
    """What a Job task runs: one container in the simple form, or a whole pod template."""

    model_config = cel_rules(
        ("has(self.image) != has(self.podTemplate)", "a job needs exactly one of image or podTemplate"),
    )

    image: str | None = Field(default=None, min_length=1, description="Image of the task container.")
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = None
    resources: JsonObject | None = Field(
        default=None, description="Resource requests and limits of the task container."
    )
    pod_template: JsonObject | None = Field(
        default=None,
        description="A full PodTemplateSpec (service account, node selector, volumes, "
        "tolerations...). The task runs in its container named `task`, else its first one.",
    )


class TaskDefaults(Model):
    retry: RetryOverride | None = None
    timeout_seconds: Annotated[int | None, Field(ge=1)] = Field(
        default=None, description="Time limit of one attempt."
    )


class SleepSpec(Model):
    """A durable pause: its due time is in the status, so a restart neither cuts nor repeats it."""

    model_config = cel_rules(
        ("has(self.seconds) != has(self.until)", "sleep needs exactly one of seconds or until"),
    )

    seconds: Annotated[int | None, Field(ge=0)] = Field(default=None, description="How long to wait.")
    until: datetime | None = Field(default=None, description="Wait until this time (RFC 3339).")


class WaitSpec(Model):
    """Wait for a signal: `spec.signals.<signal>` on the run (kubectl patch, a GitOps commit,
    `kubectl seqflow signal`); its payload is merged into the data passed on."""

    signal: str = Field(pattern=NAME_PATTERN, max_length=63, description="The key under spec.signals.")
    timeout_seconds: Annotated[int | None, Field(ge=1)] = Field(
        default=None, description="Give up after this long (per attempt; the retry policy applies)."
    )
    on_timeout: Literal["fail", "continue"] = Field(
        default="fail", description="fail: the attempt fails; continue: go on without the signal."
    )


CLUSTER_WORKFLOW = "ClusterWorkflow"


class WorkflowRef(Model):
    model_config = cel_rules(
        (
            "!has(self.revision) || !has(self.kind) || self.kind == 'Workflow'",
            "revision is for Workflows: a ClusterWorkflow runs its current spec",
        ),
    )

    kind: Literal["Workflow", "ClusterWorkflow"] | None = Field(
        default=None,
        description="Workflow (when not set): one in the run's namespace; ClusterWorkflow: a cluster's.",
    )
    name: str = Field(min_length=1, max_length=253, description="The Workflow's (or ClusterWorkflow's) name.")
    revision: Annotated[int | None, Field(ge=1)] = Field(
        default=None,
        description="One revision of the Workflow (the metadata.generation its spec had; "
        "`kubectl seqflow revisions`); without it, the latest Ready revision.",
    )

    @property
    def identity(self) -> str:
        """How history, metrics and queues name it: a Workflow by its name, a ClusterWorkflow as
        ClusterWorkflow/NAME (no name has a slash)."""
        return workflow_identity(kind=self.kind, name=self.name)


def workflow_identity(*, kind: str | None, name: str) -> str:
    return f"{CLUSTER_WORKFLOW}/{name}" if kind == CLUSTER_WORKFLOW else name


class CompensateSpec(Model):
    """How to undo a step that succeeded, when a later one fails or the run is cancelled: a
    handler or a Job, given the step's output as its input."""

    model_config = cel_rules(
        (
            "[has(self.handler), has(self.job), has(self.http)].filter(x, x).size() == 1",
            "compensate needs exactly one of handler, job or http",
        ),
        ("!has(self.http) || !has(self.artifacts)", "artifacts are passed to handler and job steps only"),
    )

    handler: str | None = Field(default=None, min_length=1, max_length=253)
    job: JobTemplate | None = None
    http: HttpSpec | None = None
    artifacts: Artifacts | None = Field(
        default=None,
        description="Files passed from earlier steps and on to later ones through the object store "
        "(SEQFLOW_ARTIFACTS_*): /seqflow/artifacts/NAME in a Job's container, context.files/NAME "
        "for a handler.",
    )
    retry: RetryOverride | None = None
    timeout_seconds: Annotated[int | None, Field(ge=1)] = None


class MemberSpec(Model):
    """A member of a parallel group: a handler or a Job, with its own retry policy."""

    model_config = cel_rules(
        (
            "[has(self.handler), has(self.job), has(self.http)].filter(x, x).size() == 1",
            "a member needs exactly one of handler, job or http",
        ),
        ("!has(self.http) || !has(self.artifacts)", "artifacts are passed to handler and job steps only"),
    )

    name: str = Field(pattern=NAME_PATTERN, max_length=63, description="Unique within its group.")
    handler: str | None = Field(default=None, min_length=1, max_length=253)
    job: JobTemplate | None = None
    http: HttpSpec | None = None
    artifacts: Artifacts | None = Field(
        default=None,
        description="Files passed from earlier steps and on to later ones through the object store "
        "(SEQFLOW_ARTIFACTS_*): /seqflow/artifacts/NAME in a Job's container, context.files/NAME "
        "for a handler.",
    )
    retry: RetryOverride | None = None
    timeout_seconds: Annotated[int | None, Field(ge=1)] = None


class ForEachStep(Model):
    """What runs for each item of a forEach: a handler, a Job, an http request or a sub-workflow,
    with its own retry policy."""

    model_config = cel_rules(
        (
            "[has(self.handler), has(self.job), has(self.http), has(self.workflowRef)]"
            ".filter(x, x).size() == 1",
            "a forEach step needs exactly one of handler, job, http or workflowRef",
        ),
    )

    handler: str | None = Field(default=None, min_length=1, max_length=253)
    job: JobTemplate | None = None
    http: HttpSpec | None = None
    workflow_ref: WorkflowRef | None = None
    retry: RetryOverride | None = None
    timeout_seconds: Annotated[int | None, Field(ge=1)] = None


class ForEachSpec(Model):
    """A step per item of a list that the data gives: each item's step gets `{<as>: item,
    index, input}`; the step's output is its input with the items' outputs, in item order,
    under `into`."""

    model_config = cel_rules(
        (
            "!has(self.as) || !(self.as in ['input', 'index', 'run', 'steps'])",
            "as may not be input, index, run or steps (the item's input has those keys, or its "
            "templates those variables)",
        ),
    )

    items: str = Field(
        min_length=1,
        max_length=1024,
        description="A CEL expression over `input`, `run` and `steps` (as in `when`) giving the list "
        f"of items (at most {MAX_ITEMS}).",
    )
    as_: str = Field(
        default="item",
        alias="as",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        max_length=63,
        description="The key of the item in each item's input (default item).",
    )
    into: str = Field(
        default="results",
        min_length=1,
        max_length=253,
        description="The key of the output holding the items' outputs in item order (a failed "
        "item's, tolerated, is null).",
    )
    max_parallel: Annotated[int | None, Field(ge=1, le=MAX_PARALLEL_ITEMS)] = Field(
        default=None,
        description=f"Items running at once (default {DEFAULT_PARALLEL_ITEMS}), admitted in item order.",
    )
    tolerated_failures: Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=PERCENT)] | None = Field(
        default=None,
        description="Items that may fail (after their retries) while the step still succeeds: a "
        'count, or a percentage of the items ("10%"). Default 0.',
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    fail_fast: bool | None = Field(
        default=None,
        description="Once more items failed than tolerated, cancel the running ones (default: let them end).",
    )
    step: ForEachStep


class TaskSpec(Model):
    model_config = cel_rules(
        (
            "[has(self.handler), has(self.job), has(self.http), has(self.sleep), has(self.wait), "
            "has(self.parallel), has(self.workflowRef), has(self.forEach)].filter(x, x).size() == 1",
            "a task needs exactly one of handler, job, http, sleep, wait, parallel, forEach or workflowRef",
        ),
        (
            "has(self.parallel) || !(has(self.maxParallel) || has(self.failFast))",
            "maxParallel and failFast apply to a parallel group only",
        ),
        (
            "has(self.handler) || has(self.job) || !has(self.artifacts)",
            "artifacts are passed to handler and job tasks only",
        ),
        (
            "has(self.handler) || has(self.job) || !has(self.timeoutSeconds)",
            "timeoutSeconds applies to a handler or job task only (a wait and an http step have "
            "their own timeoutSeconds; group members and sub-workflows' steps have theirs)",
        ),
        (
            "has(self.handler) || has(self.job) || has(self.http) || !has(self.cache)",
            "cache applies to a handler, job or http task only",
        ),
    )

    name: str = Field(pattern=NAME_PATTERN, max_length=63, description="Unique within the workflow.")
    handler: str | None = Field(
        default=None, min_length=1, max_length=253, description="Name of an in-process handler."
    )
    job: JobTemplate | None = Field(default=None, description="Run the task as a batch/v1 Job.")
    http: HttpSpec | None = Field(default=None, description="Make an HTTP request (no code).")
    artifacts: Artifacts | None = Field(
        default=None,
        description="Files passed from earlier steps and on to later ones through the object store "
        "(SEQFLOW_ARTIFACTS_*): /seqflow/artifacts/NAME in a Job's container, context.files/NAME "
        "for a handler.",
    )
    sleep: SleepSpec | None = Field(default=None, description="Wait, then pass the input on.")
    wait: WaitSpec | None = Field(default=None, description="Wait for a signal to the run.")
    parallel: list[MemberSpec] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MEMBERS,
        description="Members run at the same time; the group's output is its input merged with "
        "their outputs in this order.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(m, self.exists_one(n, n.name == m.name))",
                    "message": "member names must be unique",
                }
            ]
        },
    )
    workflow_ref: WorkflowRef | None = Field(
        default=None,
        description="Run another Workflow as this step: a child WorkflowRun, owned by this run, "
        "with this step's input; its output is the step's output.",
    )
    for_each: ForEachSpec | None = Field(default=None, description="Run a step per item of a list.")
    max_parallel: Annotated[int | None, Field(ge=1)] = Field(
        default=None, description="Members running at once (default: all)."
    )
    fail_fast: bool | None = Field(
        default=None, description="On a member's failure, cancel the others (default: let them end)."
    )
    when: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="A CEL expression over `input` (this task's input), `run` (name, namespace, "
        "labels) and `steps` (earlier steps by name: `steps.Check.phase`, `steps.Check.output`); "
        "false skips the task, passing its input on.",
    )
    compensate: CompensateSpec | None = Field(
        default=None,
        description="Undo this task once it has succeeded, when a later one fails or the run is "
        "cancelled (compensations run in reverse order; the run's phase is Compensating meanwhile).",
    )
    retry: RetryOverride | None = None
    timeout_seconds: Annotated[int | None, Field(ge=1)] = Field(
        default=None,
        description="Time limit of one attempt of a handler or Job (a sub-workflow's steps have their own).",
    )
    cache: CacheSpec | None = Field(
        default=None, description="Reuse this step's output from an earlier run with the same key."
    )


class FinallyTask(Model):
    """A task run after the main tasks end, however they end: given `{input, outcome, output}`
    (the run's input; its phase, reason, message and failed step; the data passed on so far)."""

    model_config = cel_rules(
        (
            "[has(self.handler), has(self.job), has(self.http)].filter(x, x).size() == 1",
            "a finally task needs exactly one of handler, job or http",
        ),
    )

    name: str = Field(
        pattern=NAME_PATTERN, max_length=63, description="Unique among tasks and finally tasks."
    )
    handler: str | None = Field(default=None, min_length=1, max_length=253)
    job: JobTemplate | None = None
    http: HttpSpec | None = None
    retry: RetryOverride | None = None
    timeout_seconds: Annotated[int | None, Field(ge=1)] = None


class CacheSpec(Model):
    """Reuse a successful output of this step from an earlier run of the Workflow whose key was
    the same, within the time to live (and while the task is defined the same)."""

    key: str = Field(
        min_length=1,
        max_length=1024,
        description="A CEL expression over `input`, `run` and `steps` (as in `when`) giving the key.",
    )
    ttl_seconds: int = Field(ge=1, le=31_536_000, description="How long an output may be reused.")


class Concurrency(Model):
    limit: int = Field(ge=1, description="Runs of this Workflow that may run at once; the others queue.")


class SecretKeyRef(Model):
    name: str = Field(min_length=1, max_length=253, description="A Secret in the Workflow's namespace.")
    key: str = Field(default="secret", min_length=1, description="The key of the shared secret in it.")


class StoredValueRef(Model):
    """A value kept in the history store: the sha256 of its compact JSON and its size."""

    ref: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<hex> of the value's compact JSON."
    )
    size: int = Field(ge=0, description="Bytes of the value's compact JSON.")


class Webhook(Model):
    """Runs started by `POST /hooks/{namespace}/{workflow}`, signed with a shared secret."""

    secret_ref: SecretKeyRef


class WorkflowSpec(Model):
    model_config = cel_rules(
        (
            "!has(self.finally) || self.finally.all(f, !self.tasks.exists(t, t.name == f.name) && "
            "self.finally.exists_one(g, g.name == f.name))",
            "finally task names must be unique, and not those of tasks",
        ),
    )

    description: str | None = None
    input_schema: JsonObject | None = Field(
        default=None,
        description="A JSON Schema the input of every run must satisfy; a run whose input does not "
        "fails at start with reason InputInvalid.",
    )
    output_schema: JsonObject | None = Field(
        default=None,
        description="A JSON Schema the output of every run must satisfy; a run whose tasks succeed "
        "with an output that does not fails with reason OutputInvalid, naming the places.",
    )
    revision_history_limit: Annotated[int | None, Field(ge=0)] = Field(
        default=None,
        description="Earlier revisions kept beyond those runs use (default 10).",
    )
    defaults: TaskDefaults | None = None
    concurrency: Concurrency | None = Field(
        default=None, description="Queue runs beyond a limit (Pending, reason Queued), in creation order."
    )
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0)] = Field(
        default=None, description="Delete this Workflow's runs this long after they finish (history stays)."
    )
    webhook: Webhook | None = Field(
        default=None,
        description="Accept runs from POST /hooks/{namespace}/{name} signed with HMAC-SHA256 by the "
        "shared secret in this Secret (for callers without a Kubernetes token).",
    )
    tasks: list[TaskSpec] = Field(
        min_length=1,
        max_length=MAX_TASKS,
        description="Tasks, run strictly in this order.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.all(t, self.exists_one(u, u.name == t.name))",
                    "message": "task names must be unique",
                }
            ]
        },
    )
    finally_: Annotated[list[FinallyTask], Field(max_length=MAX_FINALLY)] | None = Field(
        default=None,
        alias="finally",
        description="Tasks run in order after the tasks end in any way (succeeded, failed, cancelled, "
        "past the deadline), compensations first; they change the run's outcome only by failing "
        "(reason FinallyFailed). Deleting the run skips them.",
    )
    timeout_seconds: Annotated[int | None, Field(ge=1)] = Field(
        default=None,
        description="A deadline for each run's tasks from its start (the run's own timeoutSeconds wins): "
        "past it the running steps are cancelled, compensations and finally tasks run, and the run "
        "fails with reason DeadlineExceeded.",
    )


# ----- WorkflowRun spec -----


class InputFrom(Model):
    """Where a run's input is read at start: a JSON object under a key of a ConfigMap or a Secret
    (read once, then kept in the run's status like any input)."""

    model_config = cel_rules(
        ("has(self.configMapKeyRef) != has(self.secretKeyRef)", "set one of configMapKeyRef and secretKeyRef")
    )

    config_map_key_ref: KeyRef | None = None
    secret_key_ref: KeyRef | None = None

    def describe(self) -> str:
        kind, ref = (
            ("ConfigMap", self.config_map_key_ref)
            if self.config_map_key_ref
            else ("Secret", self.secret_key_ref)
        )
        assert ref is not None
        return f'{kind} "{ref.name}" key "{ref.key}"'


class RetryFrom(Model):
    """Run a run again from one of its tasks: the tasks before it are not run again (their
    outputs are kept), it and those after it run with the new input."""

    run: str = Field(min_length=1, max_length=253, description="The run to retry, in this namespace.")
    step: str = Field(pattern=NAME_PATTERN, max_length=63, description="The task to run again from.")
    patch: JsonObject | None = Field(
        default=None,
        description="Merged into the task's input in the run retried (instead of giving the input whole).",
    )


class WorkflowRunSpec(Model):
    model_config = cel_rules(
        (
            "has(self.input) == has(oldSelf.input) && (!has(self.input) || self.input == oldSelf.input)",
            "input is immutable: create a new run (kubectl seqflow rerun) instead",
        ),
        (
            "has(self.inputRef) == has(oldSelf.inputRef) && "
            "(!has(self.inputRef) || self.inputRef == oldSelf.inputRef)",
            "inputRef is immutable: create a new run instead",
        ),
        (
            "has(self.inputFrom) == has(oldSelf.inputFrom) && "
            "(!has(self.inputFrom) || self.inputFrom == oldSelf.inputFrom)",
            "inputFrom is immutable: create a new run instead",
        ),
        ("!has(self.inputFrom) || !has(self.inputRef)", "inputFrom is instead of inputRef: set one of them"),
        ("self.workflowRef == oldSelf.workflowRef", "workflowRef is immutable: create a new run instead"),
        (
            "has(self.retryFrom) == has(oldSelf.retryFrom) && "
            "(!has(self.retryFrom) || self.retryFrom == oldSelf.retryFrom)",
            "retryFrom is immutable: create a new run instead",
        ),
        (
            "!has(self.retryFrom) || !has(self.retryFrom.patch) || !has(self.input)",
            "retryFrom.patch is instead of input: set one of them",
        ),
        (
            "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
            "cancel cannot be undone: use retry to run a cancelled run again",
        ),
        (
            "(has(self.retry) ? self.retry : 0) >= (has(oldSelf.retry) ? oldSelf.retry : 0)",
            "retry only goes up: raise it by one to retry the run once more",
        ),
    )

    workflow_ref: WorkflowRef
    suspend: bool | None = Field(
        default=None, description="true: start no new step or attempt (running ones finish); false: go on."
    )
    cancel: bool | None = Field(
        default=None,
        description="true: stop the run now (Jobs deleted, async handlers cancelled); cannot be undone.",
    )
    retry: Annotated[int | None, Field(ge=0)] = Field(
        default=None,
        description="Raise it to run a Failed or Cancelled run again from the step that did not succeed.",
    )
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0)] = Field(
        default=None,
        description="Delete the run this long after it finishes (its history stays); "
        "else the Workflow's, else the operator's SEQFLOW_RUN_TTL_SECONDS.",
    )
    timeout_seconds: Annotated[int | None, Field(ge=1)] = Field(
        default=None,
        description="A deadline for the run's tasks from its start (instead of its Workflow's): past "
        "it the running steps are cancelled, compensations and finally tasks run, and the run fails "
        "with reason DeadlineExceeded.",
    )
    signals: JsonObject | None = Field(
        default=None,
        description="Signals delivered to the run, by name, each with a JSON object as payload "
        "(merged into the data of the step waiting for it).",
        # Each payload an object: the API server refuses `"yes"`, `[1, 2]` or `5` as one.
        json_schema_extra={"additionalProperties": {"type": "object", "additionalProperties": True}},
    )
    input: JsonObject = Field(
        default_factory=dict,
        description="Input of the first task: a JSON object (larger than the operator's "
        "SEQFLOW_MAX_VALUE_BYTES, 16 MiB unless set, fails the run with reason InputTooLarge).",
    )
    input_ref: StoredValueRef | None = Field(
        default=None,
        description="The input, kept in the history store (set by the HTTP API for a large input, "
        "and for a sub-workflow's child run); instead of input.",
    )
    input_from: InputFrom | None = Field(
        default=None,
        description="Read the input at start from a ConfigMap or Secret key holding a JSON object "
        "(for GitOps: the data beside the run); instead of input. Read once: the run keeps it in "
        "status.input, visible as any input is.",
    )
    retry_from: RetryFrom | None = Field(
        default=None,
        description="Retry another run from one of its tasks, with the same task list: the tasks "
        "before it keep their outputs, it runs with this run's input (or the one it had, patched).",
    )


# ----- WorkflowRun status -----


class PinnedMember(Model):
    """A member of a parallel group as the run executes it, defaults resolved."""

    name: str
    handler: str | None = None
    job: JobTemplate | None = None
    http: HttpSpec | None = None
    artifacts: Artifacts | None = None
    workflow_ref: WorkflowRef | None = None  # a forEach's items'
    retry: RetryPolicy
    timeout_seconds: int


class PinnedForEach(Model):
    """A forEach as the run executes it, defaults resolved."""

    items: str
    as_: str = Field(alias="as")
    into: str
    max_parallel: int
    tolerated_failures: int | str = Field(json_schema_extra={"x-kubernetes-int-or-string": True})
    fail_fast: bool
    step: PinnedMember

    def tolerated(self, total: int) -> int:
        """How many of `total` items may fail."""
        if isinstance(self.tolerated_failures, int):
            return self.tolerated_failures
        return total * int(self.tolerated_failures.removesuffix("%")) // 100


class PinnedTask(Model):
    """A task as the run executes it: copied from the Workflow at start, defaults resolved."""

    name: str
    handler: str | None = None
    job: JobTemplate | None = None
    http: HttpSpec | None = None
    artifacts: Artifacts | None = None
    sleep: SleepSpec | None = None
    wait: WaitSpec | None = None
    workflow_ref: WorkflowRef | None = None
    members: list[PinnedMember] | None = None
    for_each: PinnedForEach | None = None
    max_parallel: int | None = None
    fail_fast: bool = False
    when: str | None = None
    compensate: PinnedMember | None = None
    keep_output: bool = Field(
        default=False, description="Its output stays in its node: a compensation or a later `when` reads it."
    )
    final: bool = Field(default=False, description="A finally task: it runs once the tasks have ended.")
    cache: CacheSpec | None = None
    retry: RetryPolicy
    timeout_seconds: int


class FanOut(Model):
    """A forEach step's items and counters (its items' nodes, `<step>/<index>`, are folded into
    the store as they finish, so the status holds only the running ones and a few more)."""

    items: JsonObject = Field(description="The items ({items: [...]}), or their reference once stored.")
    total: int
    admitted: int = Field(default=0, description="Items started so far, in order.")
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    failed_items: list[str] | None = Field(default=None, description="The nodes of the items that failed.")


class NodeStatus(Model):
    """One step of a run that has started, by its stable path id (the step's name at the top)."""

    id: str
    type: NodeType
    phase: NodePhase = NodePhase.PENDING
    attempts: int = 0
    budget_from: int = Field(
        default=0, description="Attempts made before the run's last retry; the retry policy counts the rest."
    )
    job: str | None = Field(default=None, description="The Job of the current attempt (Job steps).")
    child: str | None = Field(
        default=None, description="The child WorkflowRun of the current attempt (workflowRef steps)."
    )
    deadline: datetime | None = Field(
        default=None, description="When a sleep ends, or a wait for a signal times out."
    )
    output: JsonObject | None = Field(
        default=None,
        description="The step's output where something later reads it: a group member's until its "
        "group ends; a step's that a compensation or a later `when` reads.",
    )
    artifacts: list[StoredArtifact] | None = Field(
        default=None, description="The files its successful attempt produced, in the object store."
    )
    fan_out: FanOut | None = Field(default=None, description="A forEach step's items and counters.")
    cache_key: str | None = Field(
        default=None, description="The key its output is looked up and kept under (a cached step)."
    )
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_retry_at: datetime | None = None
    last_error: str | None = None


class HistoryEvent(enum.StrEnum):
    """Types of the activity log entries kept in the history store."""

    WORKFLOW_STARTED = "WORKFLOW_STARTED"
    TASK_STARTED = "TASK_STARTED"
    TASK_RETRY = "TASK_RETRY"
    TASK_FAILED = "TASK_FAILED"
    TASK_COMPLETED = "TASK_COMPLETED"
    WORKFLOW_COMPLETED = "WORKFLOW_COMPLETED"
    WORKFLOW_FAILED = "WORKFLOW_FAILED"
    TASK_CANCELLED = "TASK_CANCELLED"
    TASK_SKIPPED = "TASK_SKIPPED"
    WORKFLOW_CANCELLED = "WORKFLOW_CANCELLED"
    RUN_SUSPENDED = "RUN_SUSPENDED"
    RUN_RESUMED = "RUN_RESUMED"
    RUN_RETRIED = "RUN_RETRIED"
    COMPENSATION_STARTED = "COMPENSATION_STARTED"
    FINALLY_STARTED = "FINALLY_STARTED"
    TASK_CACHED = "TASK_CACHED"


class HistoryRecord(Model):
    """One entry of the activity log, kept in the run's status until the store has it."""

    seq: int = Field(description="Position in the run's activity log, from 1.")
    type: HistoryEvent
    at: datetime
    task: str | None = None
    task_index: int | None = None
    attempt: int | None = None
    details: JsonObject = Field(default_factory=dict)


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: datetime


class WorkflowStatus(Model):
    """Whether runs of the Workflow can run: its `Ready` condition (the operator checks handlers,
    expressions and the input schema when it sees each generation)."""

    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    revision: int | None = Field(
        default=None,
        description="The newest revision kept (a ControllerRevision named <workflow>-<revision>).",
    )
    ready_revision: int | None = Field(
        default=None, description="The newest revision that was Ready: runs that name none take it."
    )


class Ending(Model):
    """How a run is ending while its compensations, then its finally tasks, run: the phase it
    ends in and why."""

    phase: Literal[RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED]
    reason: str
    message: str
    finally_: bool = Field(
        default=False, alias="finally", description="Its finally tasks run (compensations are done)."
    )
    failed_step: str | None = Field(default=None, description="The task that failed, if one did.")


class FailureCause(Model):
    """Where a run that failed for good (no retry can cure it) first failed: the run itself, or
    the innermost of its sub-workflows' runs, with that run's reason and message."""

    run: str
    reason: str
    message: str


class WorkflowRunStatus(Model):
    phase: RunPhase | None = None
    workflow_generation: int | None = Field(
        default=None, description="The revision of its Workflow the run runs (that spec's generation)."
    )
    current: list[str] = Field(
        default_factory=list, description="Ids of the steps under way (running, or waiting to retry)."
    )
    progress: str | None = None
    retries: int = 0
    trace_id: str | None = Field(
        default=None,
        description="The run's OpenTelemetry trace (with SEQFLOW_TRACING_ENDPOINT set): look it up in "
        "the tracing backend.",
    )
    started_at: datetime | None = None
    finished_at: datetime | None = None
    nodes: list[NodeStatus] = Field(
        default_factory=list, description="One per step that has started, by id, in the order they started."
    )
    pinned_tasks: list[PinnedTask] | None = Field(
        default=None, description="The task list this run executes, copied at start."
    )
    output_schema: JsonObject | None = Field(
        default=None, description="The JSON Schema its output must satisfy (its Workflow's), copied at start."
    )
    pinned_tasks_ref: StoredValueRef | None = Field(
        default=None,
        description="The task list, kept in the history store instead of pinnedTasks when its JSON "
        "is larger than 16 KiB.",
    )
    input: JsonObject | None = Field(
        default=None,
        description="The input read from spec.inputFrom at start ({ref, size} when stored).",
    )
    earlier_nodes: list[StoredValueRef] = Field(
        default_factory=list,
        description="The nodes before those in nodes, all of finished steps, kept in the history "
        "store 100 at a time (the HTTP API and the dashboard show them in place).",
    )
    output: JsonObject | None = Field(
        default=None,
        description="Output of the last task that succeeded; the run's output once Succeeded. "
        "A value larger than SEQFLOW_INLINE_VALUE_BYTES stands here as {ref, size}: it is kept in the "
        "history store, and the HTTP API shows it whole.",
    )
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    retried: int = Field(default=0, description="The spec's retry count this status has acted on.")
    cancelled: bool = Field(default=False, description="spec.cancel has been acted on (a retry runs again).")
    ending: Ending | None = Field(
        default=None,
        description="Set once compensations or finally tasks start: the phase the run ends in and why "
        "(kept until a retry).",
    )
    deadline: datetime | None = Field(
        default=None, description="When the run's tasks are past their time (timeoutSeconds from the start)."
    )
    cause: FailureCause | None = Field(
        default=None,
        description="Set when the run failed for good (no retry can cure it, so a parent run does not "
        "retry its step either): the run where it first failed, its reason and message.",
    )
    descendants: int | None = Field(
        default=None,
        description="Runs created beneath this run so far (its sub-workflows' runs and theirs, as of "
        "their end); bounded by SEQFLOW_MAX_DESCENDANTS.",
    )
    # Declared so that the API server keeps them for `upgrade_status`; never set by this version.
    legacy_tasks: list[JsonObject] | None = Field(
        default=None, alias="tasks", description="Written by seqflow 0.1; replaced by nodes when read."
    )
    legacy_current_task: str | None = Field(
        default=None, alias="currentTask", description="Written by seqflow 0.1; replaced by current."
    )
    progress_journaled: bool = Field(
        default=True,
        description="In-process steps may have gone on past this status, in the operator's progress "
        "journal (false: written while the journal was away; the next start is written here first).",
    )
    history_seq: int = Field(default=0, description="Number of activity log entries so far.")
    pending_history: list[HistoryRecord] = Field(
        default_factory=list,
        description="Activity log entries not yet in the history store (trimmed once written).",
    )

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def started(self) -> bool:
        """Its task list is pinned (inline or by reference)."""
        return self.pinned_tasks is not None or self.pinned_tasks_ref is not None

    def node(self, id: str) -> NodeStatus | None:
        return next((n for n in self.nodes if n.id == id), None)


# ----- WorkflowSchedule -----


class ConcurrencyPolicy(enum.StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"  # a time that comes while a run of the schedule is active is skipped
    REPLACE = "Replace"  # the active runs are cancelled (spec.cancel) and a new one starts


class RunTemplate(Model):
    """What each run of a schedule is: its Workflow, input and labels."""

    workflow_ref: WorkflowRef
    input: JsonObject = Field(default_factory=dict, description="The input of every run.")
    labels: dict[str, str] | None = Field(default=None, description="Labels of every run.")


class WorkflowScheduleSpec(Model):
    schedule: str = Field(
        min_length=1,
        max_length=256,
        description="When to start a run: standard cron (minute hour day-of-month month "
        "day-of-week) or @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly.",
    )
    time_zone: str | None = Field(
        default=None, max_length=64, description="The IANA time zone of the schedule (default UTC)."
    )
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.ALLOW,
        description="Allow: runs may overlap; Forbid: skip a time while a run is active; "
        "Replace: cancel the active run and start the new one.",
    )
    starting_deadline_seconds: Annotated[int | None, Field(ge=0)] = Field(
        default=None,
        description="A time missed (the operator was down) starts late only within this many "
        "seconds; unset: the most recent missed time always starts.",
    )
    suspend: bool | None = Field(default=None, description="true: start no run until false again.")
    successful_runs_history_limit: Annotated[int, Field(ge=0)] = Field(
        default=3, description="Succeeded runs kept (older ones are deleted; their history stays)."
    )
    failed_runs_history_limit: Annotated[int, Field(ge=0)] = Field(
        default=1, description="Failed or Cancelled runs kept."
    )
    run_template: RunTemplate


class WorkflowScheduleStatus(Model):
    last_schedule_time: datetime | None = Field(default=None, description="The latest time a run was due.")
    next_schedule_time: datetime | None = None
    active: list[str] = Field(default_factory=list, description="Runs of this schedule not finished.")
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None


def upgrade_status(raw: JsonObject, *, run: str) -> JsonObject:
    """A status as written by seqflow 0.1 (one `tasks` entry per task, `currentTask`) in today's
    shape: a node per task that has started; a running Job keeps the name it was created with."""
    if "tasks" not in raw:
        return raw
    status = {k: v for k, v in raw.items() if k not in ("tasks", "currentTask")}
    pinned = raw.get("pinnedTasks") or []
    nodes = []
    for index, task in enumerate(raw["tasks"]):
        if task.get("phase", "Pending") == "Pending" and not task.get("attempts"):
            continue
        is_job = index < len(pinned) and pinned[index].get("job") is not None
        node = {k: v for k, v in task.items() if k != "name"}
        node.update(id=task["name"], type="job" if is_job else "handler")
        if is_job and task.get("attempts"):
            node["job"] = legacy_job_name(run=run, task_index=index, attempt=task["attempts"])
        nodes.append(node)
    status["nodes"] = nodes
    status["current"] = [raw["currentTask"]] if raw.get("currentTask") and not _done(raw) else []
    return status


def _done(raw: JsonObject) -> bool:
    return raw.get("phase") in {p.value for p in FINISHED}


def legacy_job_name(*, run: str, task_index: int, attempt: int) -> str:
    """seqflow 0.1's Job name, `<run>-<task index>-<attempt>` shortened to 63 characters."""
    return shortened_name(f"{run}-{task_index}-{attempt}")


def shortened_name(value: str, *, limit: int = 63) -> str:
    """`value` itself when it fits, else its head and a hash of all of it."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{value[: limit - len(digest) - 1].rstrip('-_.')}-{digest}"
