"""The operator's settings: one pydantic-settings object read from SEQFLOW_* variables at start.

Nothing else in seqflow reads the environment; this object is built once (`load_settings`) and
passed down. A mistake in a setting is a `StartupError`: one line naming the variable, its value
and what is wrong with it.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "SEQFLOW_"
HOST_PATTERN = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?")
DEFAULT_SQLITE_PATH = Path.home() / ".local" / "share" / "seqflow" / "history.sqlite"


class StartupError(Exception):
    """Why seqflow cannot start, in one line for the user (no traceback)."""


JobStepsAs = Literal["Job", "ManagedJob", "Pod"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_parse_none_str="none", frozen=True)

    handler_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Python modules to import at start; they register the in-process handlers.",
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces (globs allowed) to serve; empty: all."
    )
    max_concurrent_runs: int = Field(
        default=16, ge=1, description="Reconcile workers, and in-process attempts executing at once."
    )
    handler_threads: int = Field(default=16, ge=1, description="Threads for synchronous handlers.")
    api_connections: int = Field(
        default=16, ge=1, description="Concurrent connections to the Kubernetes API server."
    )
    write_delay_seconds: float = Field(
        default=0.5,
        ge=0,
        le=5,
        description="How long a run's progress through in-process steps may go without a status "
        "write: the steps that end within it reach the status in one write with what follows them "
        "(fewer writes, shorter gaps), each start journaled in the history database first, so an "
        "operator that dies meanwhile runs no attempt twice. While the database is away, and with "
        "0, every attempt's start is written to the status before it runs.",
    )
    workflow_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How long a run waits for its Workflow to appear before it fails.",
    )
    default_timeout_seconds: int = Field(
        default=300, ge=1, description="Time limit of a task attempt when the Workflow sets none."
    )
    event_queue_size: int = Field(
        default=1000, ge=1, description="Kubernetes Events waiting to be posted; beyond it they are dropped."
    )
    max_descendants: int = Field(
        default=1000,
        ge=1,
        description="Runs a run may create beneath it (its sub-workflows' runs and theirs); past it "
        "the step fails for good with reason TooManyRuns, so no tree of runs can explode.",
    )
    run_ttl_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Seconds a finished run is kept when neither it nor its Workflow says; `none`: kept.",
    )
    job_steps_as: JobStepsAs = Field(
        default="Job",
        description="What runs a Job step's attempt: a batch/v1 Job of one pod (kubectl get jobs shows "
        "it; Kubernetes' Job controller creates its pod and reports its end, at its own API rate "
        "limit), `ManagedJob`: such a Job that seqflow runs itself (spec.managedBy; it creates the "
        "pod and writes the Job's status, Kubernetes 1.32+), or `Pod`: the pod alone, created by "
        "seqflow and owned by the run, as Argo Workflows and Tekton run steps (SEQFLOW_JOB_TTL_SECONDS "
        "does not apply, the pods go with their run).",
    )
    job_ttl_seconds: int | None = Field(
        default=3600,
        ge=0,
        description="Seconds a finished Job (and its pod) is kept; `none` keeps them.",
    )
    database_url: SecretStr = Field(
        default=SecretStr(f"sqlite:///{DEFAULT_SQLITE_PATH}"),
        description="SQLAlchemy URL of the history store, e.g. mysql+pymysql://user:pw@host/db; "
        "when unset, embedded SQLite in ~/.local/share/seqflow/history.sqlite. Never logged.",
    )
    migrate_on_start: bool = Field(
        default=True, description="Create or upgrade the history schema when the operator starts."
    )
    history_retention_days: float | None = Field(
        default=None, gt=0, description="Delete runs finished longer ago than this; `none` keeps all."
    )
    inline_value_bytes: int = Field(
        default=4096,
        ge=256,
        le=64 * 1024,
        description="Inputs and outputs larger than this (bytes of JSON) are kept in the history "
        "store; the run's status names them by reference.",
    )
    max_value_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        le=1024**3,
        description="The largest input or output (bytes of JSON): a larger input fails its run "
        "(InputTooLarge), a larger output its step (OutputTooLarge).",
    )
    value_cache_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        description="How many bytes of stored values the operator keeps in memory (most recently used).",
    )
    api_url: str = Field(
        default="",
        pattern=r"^(https?://[^\s/]+(/\S*)?)?$",
        description="The operator's HTTP API as the pods of Job steps reach it (the Helm chart sets "
        "its Service): Job steps fetch inputs over 64 KiB and send outputs too large for a "
        "termination message there. Empty: they cannot.",
    )
    attempt_key: SecretStr | None = Field(
        default=None,
        description="The key that signs Job steps' per-attempt links; unset: one derived from "
        "SEQFLOW_DATABASE_URL (every replica shares it).",
    )
    artifacts_url: str = Field(
        default="",
        pattern=r"^(https?://[^\s/]+/?)?$",
        description="The S3-compatible object store of Job steps' files (artifacts), as both the "
        "operator and the steps' pods reach it (path-style, SigV4); empty: steps that pass files fail "
        "(ArtifactsUnavailable).",
    )
    artifacts_bucket: str = Field(default="seqflow", min_length=3, max_length=63, description="Its bucket.")
    artifacts_region: str = Field(default="us-east-1", min_length=1, description="Its region.")
    artifacts_access_key_id: str = Field(default="", description="The operator's access key of the store.")
    artifacts_secret_access_key: SecretStr = Field(default=SecretStr(""), description="Its secret key.")
    artifacts_image: str = Field(
        default="",
        description="The seqflow image, which fetches and keeps Job steps' files in their pods (the "
        "chart sets its own image); empty: Job steps that pass files fail (ArtifactsUnavailable).",
    )
    artifacts_link_seconds: int = Field(
        default=24 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="How long a step's pod may use the links to its files: a step that runs longer "
        "cannot keep its output files (S3 allows 7 days at most).",
    )
    http_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of /healthz, /readyz and the history API."
    )
    http_auth: bool = Field(
        default=True,
        description="Check history API callers' bearer tokens (TokenReview) and their RBAC "
        "(SubjectAccessReview). Turn off for local development only.",
    )
    metrics_port: int = Field(
        default=9090, ge=0, le=65535, description="Port of the Prometheus metrics (/metrics); 0: off."
    )
    step_log_bytes: int = Field(
        default=1024 * 1024,
        ge=0,
        le=64 * 1024 * 1024,
        description="Bytes kept of each attempt's log in the history store (a Job or Pod step's "
        "container log, an in-process handler's logging records): the last ones when it is "
        "longer; 0: none kept.",
    )
    tracing_endpoint: str = Field(
        default="",
        description="OTLP over HTTP endpoint (http://collector:4318) to export traces to: a run a "
        "trace, each step attempt a span; empty: no tracing.",
    )
    metrics_step_label: bool = Field(
        default=True,
        description="Label the task metrics by step; false leaves the label out (Workflows of very "
        "many steps).",
    )
    peering: str = Field(
        default="",
        description="Kopf peering object shared by the replicas (one active, the others on "
        "standby); empty: standalone.",
    )
    priority: int = Field(
        default=0,
        ge=0,
        description="Peering priority: a higher one takes over; among replicas of the same one, "
        "the longest-running is active.",
    )
    peering_lifetime_seconds: int = Field(
        default=60,
        ge=1,
        description="How long a silent active replica counts as alive before a standby takes over.",
    )
    buckets: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Active-active replicas: the runs are split into this many buckets, each served "
        "by the replica holding its Lease (use at least as many as replicas); 0: this replica serves "
        "every run (alone, or as the active one of a peering).",
    )
    replica_name: str = Field(
        default_factory=lambda: _default_replica_name(),
        min_length=1,
        max_length=200,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="This replica's name in the bucket Leases (default: host name and process id).",
    )
    lease_namespace: str = Field(default="default", description="Namespace of the bucket Leases.")
    lease_name: str = Field(
        default="seqflow", description="Prefix of the bucket Leases' names: one per installation."
    )
    lease_seconds: float = Field(
        default=15.0,
        ge=3,
        description="A bucket Lease not renewed for this long is taken over; its holder stops work "
        "on it after two thirds of it.",
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*.svc", "*.svc.cluster.local"],
        description="Hosts http steps may call, by name (or IPv4 address), `*.` and a suffix, each "
        "with `:port` or for any port. The operator makes the requests from its own pod, with its "
        "network position, so by default only the cluster's Services (names ending .svc); empty: "
        "none.",
    )
    api_qps: float = Field(
        default=0.0, ge=0, description="Requests per second to the API server (client-go's qps); 0: no limit."
    )
    api_burst: int = Field(default=100, ge=1, description="Requests sent at once within api_qps.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="after")
    def _one_way_to_share(self) -> Self:
        if self.buckets and self.peering:
            raise ValueError(
                "SEQFLOW_BUCKETS (active-active) and SEQFLOW_PEERING (one active replica) exclude "
                "each other: set one"
            )
        return self

    @model_validator(mode="after")
    def _artifact_credentials(self) -> Self:
        if self.artifacts_url and not (
            self.artifacts_access_key_id and self.artifacts_secret_access_key.get_secret_value()
        ):
            raise ValueError(
                "SEQFLOW_ARTIFACTS_URL needs SEQFLOW_ARTIFACTS_ACCESS_KEY_ID and "
                "SEQFLOW_ARTIFACTS_SECRET_ACCESS_KEY"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("http_allowed_hosts")
    @classmethod
    def _host_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not HOST_PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"{pattern!r} is not a host name, *.suffix or IPv4 address, with an optional :port"
                )
        return patterns

    @field_validator("handler_modules", "namespaces", "http_allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def _default_replica_name() -> str:
    """The host name (a pod's name, in a pod) made fit for a Lease name, and the process id."""
    host = re.sub(r"[^a-z0-9.-]+", "-", socket.gethostname().lower()).strip("-.") or "seqflow"
    return f"{host}-{os.getpid()}"


def load_settings() -> Settings:
    """The settings from the SEQFLOW_* variables; a bad value is a `StartupError`."""
    try:
        return Settings()
    except ValidationError as error:
        raise StartupError("; ".join(_describe(problem) for problem in error.errors())) from None


def _describe(problem: ErrorDetails) -> str:
    if not problem.get("loc"):  # about several settings together: its message names them
        return problem["msg"].removeprefix("Value error, ")
    field = str(problem["loc"][0])
    variable = ENV_PREFIX + field.upper()
    secret = field in ("database_url", "attempt_key", "artifacts_secret_access_key")
    value = "(hidden)" if secret else problem.get("input")
    return f"{variable}={value}: {problem['msg']}"
