"""WorkflowRun objects as seqflow writes them (child runs, scheduled runs, runs started over HTTP,
by a webhook or by the plugin), and the phase read back from one."""

from __future__ import annotations

from seqflow.api.models import GROUP, VERSION, JsonObject, RunPhase

API_VERSION = f"{GROUP}/{VERSION}"
PHASES = {phase.value for phase in RunPhase}


def owner_reference(*, kind: str, name: str, uid: str) -> JsonObject:
    """A controller reference: the owner's deletion deletes the object. No blockOwnerDeletion:
    where OwnerReferencesPermissionEnforcement is on, setting it needs rights on the owner's
    finalizers that the operator does not have."""
    return {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid, "controller": True}


def workflow_run(
    *, workflow: str, input: JsonObject, metadata: JsonObject, suspend: bool = False
) -> JsonObject:
    """A WorkflowRun of `workflow` with `input`; `metadata` gives its name (or generateName),
    namespace, labels, annotations and owners."""
    spec: JsonObject = {"workflowRef": {"name": workflow}, "input": input}
    if suspend:
        spec["suspend"] = True
    return {"apiVersion": API_VERSION, "kind": "WorkflowRun", "metadata": metadata, "spec": spec}


def run_phase(run: JsonObject) -> RunPhase | None:
    """The phase in a run's status, if it has a known one."""
    phase = (run.get("status") or {}).get("phase")
    return RunPhase(phase) if phase in PHASES else None
