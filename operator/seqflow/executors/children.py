"""Sub-workflow steps: the child WorkflowRun of one attempt (a pure function of parent, step and
attempt) and what the parent reads back from it.

A child run is an ordinary WorkflowRun: owned by its parent (deleted with it), labelled with its
parent's name and its depth, which a run of its own has at 0, and annotated with its share of
the runs its parent may still create beneath it.
"""

from __future__ import annotations

from pydantic import ValidationError

from seqflow.api.bodies import annotations_of, condition_of, labels_of, run_phase, spec_of, status_of
from seqflow.api.manifests import owner_reference, workflow_run
from seqflow.api.models import FailureCause, JsonObject, shortened_name
from seqflow.engine import ChildRun, CreateChildRun
from seqflow.executors.jobs import MANAGED_BY, RunRef

LABEL_PARENT = "seqflow.io/parent"
LABEL_DEPTH = "seqflow.io/depth"
PARENT_STEP = "seqflow.io/parent-step"  # annotation: the step of the parent it runs
MAX_DESCENDANTS = "seqflow.io/max-descendants"  # annotation: the runs it may create beneath it


def child_run_manifest(*, parent: RunRef, action: CreateChildRun) -> JsonObject:
    metadata = {
        "name": action.name,
        "namespace": parent.namespace,
        "labels": {**MANAGED_BY, LABEL_PARENT: shortened_name(parent.name), LABEL_DEPTH: str(action.depth)},
        "annotations": {PARENT_STEP: action.node, MAX_DESCENDANTS: str(action.max_descendants)},
        "ownerReferences": [owner_reference(kind="WorkflowRun", name=parent.name, uid=parent.uid)],
    }
    return workflow_run(
        workflow=action.workflow, input=action.input, metadata=metadata, suspend=action.suspend
    )


def depth_of(body: JsonObject) -> int:
    """How deep a run is nested in sub-workflows (0: a run of its own)."""
    label = labels_of(body).get(LABEL_DEPTH, "0")
    return int(label) if label.isdigit() else 0


def max_descendants_of(body: JsonObject) -> int | None:
    """A child run's share of its parent's bound on runs beneath it (None: a run of its own)."""
    value = annotations_of(body).get(MAX_DESCENDANTS, "")
    return int(value) if value.isdigit() else None


def child_run(body: JsonObject) -> ChildRun:
    """A child run as its parent sees it."""
    status = status_of(body)
    summary = condition_of(status, "Succeeded")
    return ChildRun(
        phase=run_phase(body),
        suspended=bool(spec_of(body).get("suspend")),
        output=status.get("output"),
        reason=summary.get("reason", ""),
        message=summary.get("message", ""),
        cause=_cause(status),
        descendants=_descendants(status),
    )


def _cause(status: JsonObject) -> FailureCause | None:
    try:
        return FailureCause.model_validate(status["cause"]) if "cause" in status else None
    except ValidationError:
        return None


def _descendants(status: JsonObject) -> int:
    value = status.get("descendants")
    return value if isinstance(value, int) and value >= 0 else 0
