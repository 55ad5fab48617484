"""WorkflowRun objects as seqflow writes them (child runs, scheduled runs, runs started over HTTP,
by a webhook or by the plugin)."""

from __future__ import annotations

from seqflow.api.bodies import labels_of, name_of, spec_of, status_of
from seqflow.api.models import GROUP, VERSION, JsonObject, WorkflowRef, WorkflowSpec, shortened_name
from seqflow.api.values import ref_of

API_VERSION = f"{GROUP}/{VERSION}"
RERUN_OF = "seqflow.io/rerun-of"  # label of a run started again with the same input: of which
RETRY_OF = "seqflow.io/retry-of"  # label of a run that retries another from one of its tasks


def owner_reference(*, kind: str, name: str, uid: str) -> JsonObject:
    """A controller reference: the owner's deletion deletes the object. No blockOwnerDeletion:
    where OwnerReferencesPermissionEnforcement is on, setting it needs rights on the owner's
    finalizers that the operator does not have."""
    return {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid, "controller": True}


def workflow_run(
    *, workflow: WorkflowRef, input: JsonObject, metadata: JsonObject, suspend: bool = False
) -> JsonObject:
    """A WorkflowRun of `workflow` with `input` (a stored one's reference: as its inputRef);
    `metadata` gives its name (or generateName), namespace, labels, annotations and owners."""
    spec: JsonObject = {"workflowRef": workflow.to_wire()}
    spec["inputRef" if ref_of(input) is not None else "input"] = input
    if suspend:
        spec["suspend"] = True
    return {"apiVersion": API_VERSION, "kind": "WorkflowRun", "metadata": metadata, "spec": spec}


def rerun(run: JsonObject) -> JsonObject:
    """A new run of `run`'s Workflow with its input (the one it read from its inputFrom, or where
    it read none, the same inputFrom) and labels, labelled with where it came from."""
    name, spec, read = name_of(run), spec_of(run), status_of(run).get("input")
    labels = {**labels_of(run), RERUN_OF: name}
    metadata = {"generateName": f"{name[:52]}-rerun-", "labels": labels}
    input = spec.get("inputRef") or read or spec.get("input") or {}
    workflow = WorkflowRef.model_validate(spec["workflowRef"])
    again = workflow_run(workflow=workflow, input=input, metadata=metadata)
    if "inputFrom" in spec and read is None:
        again["spec"] = {"workflowRef": spec["workflowRef"], "inputFrom": spec["inputFrom"]}
    return again


def retry_from(
    run: JsonObject, *, step: str, input: JsonObject | None, patch: JsonObject | None
) -> JsonObject:
    """A new run that retries `run` from its task `step` (spec.retryFrom): with `input` for that
    task, or the one it had there with `patch` merged in; labelled with the run it retries."""
    name, spec = name_of(run), spec_of(run)
    labels = {**labels_of(run), RETRY_OF: shortened_name(name)}
    labels.pop(RERUN_OF, None)
    retry: JsonObject = {"run": name, "step": step, **({"patch": patch} if patch else {})}
    body_spec: JsonObject = {"workflowRef": spec["workflowRef"], "retryFrom": retry}
    if input is not None:
        body_spec["inputRef" if ref_of(input) is not None else "input"] = input
    metadata = {"generateName": f"{name[:52]}-retry-", "labels": labels}
    return {"apiVersion": API_VERSION, "kind": "WorkflowRun", "metadata": metadata, "spec": body_spec}


# ----- Workflow revisions (kept by the operator, read by the plugin and the HTTP API) -----

LABEL_WORKFLOW = f"{GROUP}/workflow"  # on a Workflow's ControllerRevisions


def revision_name(workflow: str, revision: int) -> str:
    return shortened_name(f"{workflow}-{revision}", limit=253)


def revision_manifest(
    *, namespace: str, workflow: str, uid: str, spec: WorkflowSpec, revision: int
) -> JsonObject:
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(workflow, revision),
            "namespace": namespace,
            "labels": {LABEL_WORKFLOW: shortened_name(workflow)},
            "ownerReferences": [owner_reference(kind="Workflow", name=workflow, uid=uid)],
        },
        "data": {"spec": spec.to_wire()},
        "revision": revision,
    }
