"""Sub-workflow steps: the child WorkflowRun of one attempt (a pure function of parent, step and
attempt) and what the parent reads back from it.

A child run is an ordinary WorkflowRun: owned by its parent (deleted with it), labelled with its
parent's name and its depth, which a run of its own has at 0.
"""

from __future__ import annotations

from seqflow.api.manifests import condition_of, owner_reference, run_phase, workflow_run
from seqflow.api.models import JsonObject, shortened_name
from seqflow.engine import ChildRun, CreateChildRun
from seqflow.executors.jobs import MANAGED_BY, RunRef

LABEL_PARENT = "seqflow.io/parent"
LABEL_DEPTH = "seqflow.io/depth"
PARENT_STEP = "seqflow.io/parent-step"  # annotation: the step of the parent it runs


def child_run_manifest(*, parent: RunRef, action: CreateChildRun) -> JsonObject:
    metadata = {
        "name": action.name,
        "namespace": parent.namespace,
        "labels": {**MANAGED_BY, LABEL_PARENT: shortened_name(parent.name), LABEL_DEPTH: str(action.depth)},
        "annotations": {PARENT_STEP: action.node},
        "ownerReferences": [owner_reference(kind="WorkflowRun", name=parent.name, uid=parent.uid)],
    }
    return workflow_run(
        workflow=action.workflow, input=action.input, metadata=metadata, suspend=action.suspend
    )


def depth_of(body: JsonObject) -> int:
    """How deep a run is nested in sub-workflows (0: a run of its own)."""
    label = (body["metadata"].get("labels") or {}).get(LABEL_DEPTH, "0")
    return int(label) if label.isdigit() else 0


def child_run(body: JsonObject) -> ChildRun:
    """A child run as its parent sees it."""
    status = body.get("status") or {}
    summary = condition_of(status, "Succeeded")
    return ChildRun(
        phase=run_phase(body),
        suspended=bool((body.get("spec") or {}).get("suspend")),
        output=status.get("output"),
        reason=summary.get("reason", ""),
        message=summary.get("message", ""),
    )
