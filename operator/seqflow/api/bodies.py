"""Reading the objects the API server sends (runs, Workflows, schedules, Jobs, pods): one typed
accessor per field seqflow reads, each saying what an object without it gives, instead of
`["metadata"]` and `.get() or {}` digs at every use."""

from __future__ import annotations

from datetime import datetime

from seqflow.api.models import FINISHED, JsonObject, RunPhase, workflow_identity

Key = tuple[str, str]  # (namespace, name)
PHASES = {phase.value for phase in RunPhase}
FINISHED_PHASES = {phase.value for phase in FINISHED}
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"  # kubectl's copy of the object


def key_of(body: JsonObject) -> Key:
    """(namespace, name); a cluster-wide object's namespace is ""."""
    meta = body["metadata"]
    return meta.get("namespace", ""), meta["name"]


def name_of(body: JsonObject) -> str:
    return str(body["metadata"]["name"])


def uid_of(body: JsonObject) -> str:
    return str(body["metadata"]["uid"])


def version_of(body: JsonObject) -> str:
    """Its resourceVersion: what a guarded write is planned from."""
    return str(body["metadata"]["resourceVersion"])


def generation_of(body: JsonObject) -> int:
    return int(body["metadata"].get("generation", 1))


def created_at(body: JsonObject) -> datetime:
    return datetime.fromisoformat(body["metadata"]["creationTimestamp"])


def labels_of(body: JsonObject) -> dict[str, str]:
    return body["metadata"].get("labels") or {}


def annotations_of(body: JsonObject) -> dict[str, str]:
    return (body.get("metadata") or {}).get("annotations") or {}


def finalizers_of(body: JsonObject) -> list[str]:
    return body["metadata"].get("finalizers") or []


def owners_of(body: JsonObject) -> list[JsonObject]:
    return body["metadata"].get("ownerReferences") or []


def deleting(body: JsonObject) -> bool:
    """Whether its deletion has begun (it waits for its finalizers)."""
    return bool(body["metadata"].get("deletionTimestamp"))


def spec_of(body: JsonObject) -> JsonObject:
    return body.get("spec") or {}


def status_of(body: JsonObject) -> JsonObject:
    return body.get("status") or {}


def workflow_of(run: JsonObject) -> str:
    """A run's Workflow as history, metrics and queues name it: its name, or for a
    ClusterWorkflow ClusterWorkflow/NAME ("" for a body without one)."""
    ref = spec_of(run).get("workflowRef") or {}
    return workflow_identity(kind=ref.get("kind"), name=str(ref.get("name", "")))


def run_phase(run: JsonObject) -> RunPhase | None:
    """The phase in a run's status, if it has a known one."""
    phase = status_of(run).get("phase")
    return RunPhase(phase) if phase in PHASES else None


def run_finished(run: JsonObject) -> bool:
    return status_of(run).get("phase") in FINISHED_PHASES


def run_started(run: JsonObject) -> bool:
    """Whether the run has begun: its status pins its Workflow's steps (inline or by reference)."""
    status = status_of(run)
    return "pinnedTasks" in status or "pinnedTasksRef" in status


def condition_of(status: JsonObject, kind: str) -> JsonObject:
    """The condition of type `kind` in a status, or {} when it has none."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})
