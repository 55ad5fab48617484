"""Jobs seqflow runs itself (SEQFLOW_JOB_STEPS_AS=ManagedJob): each attempt's Job names seqflow in
`spec.managedBy`, so Kubernetes' Job controller leaves it alone; seqflow creates its one pod, as
that controller would (owned by the Job, with its labels), and writes the Job's status as the API
server requires of an external controller once the pod has ended: `startTime`, `succeeded` or
`failed`, the `SuccessCriteriaMet` or `FailureTarget` condition with `Complete` or `Failed`, and
`completionTime`. So `kubectl get jobs`, `kubectl wait --for=condition=complete` and the
TTL-after-finished controller see ordinary Jobs, without waiting on the Job controller's rate."""

from __future__ import annotations

from datetime import datetime

from seqflow.api.bodies import name_of, spec_of, uid_of
from seqflow.api.manifests import owner_reference
from seqflow.api.models import JsonObject
from seqflow.executors.jobs import LABEL_JOB_NAME, LABEL_JOB_UID

MANAGED_JOBS = "seqflow.io/steps"  # spec.managedBy of the Jobs seqflow runs itself
LEGACY_JOB_NAME, LEGACY_JOB_UID = "job-name", "controller-uid"  # the labels the Job controller sets too


def managed(job: JsonObject | None) -> bool:
    return job is not None and spec_of(job).get("managedBy") == MANAGED_JOBS


def job_pod_manifest(job: JsonObject) -> JsonObject:
    """The pod of a managed Job's attempt: its template, named as the Job (one pod each),
    owned by it, with the labels the Job controller gives its pods."""
    template = spec_of(job)["template"]
    metadata = template.get("metadata") or {}
    labels = {
        **(metadata.get("labels") or {}),
        LABEL_JOB_NAME: name_of(job),
        LABEL_JOB_UID: uid_of(job),
        LEGACY_JOB_NAME: name_of(job),
        LEGACY_JOB_UID: uid_of(job),
    }
    owner = {**owner_reference(kind="Job", name=name_of(job), uid=uid_of(job)), "apiVersion": "batch/v1"}
    spec = {**template["spec"], "restartPolicy": "Never"}
    if spec_of(job).get("activeDeadlineSeconds") is not None:
        spec["activeDeadlineSeconds"] = spec_of(job)["activeDeadlineSeconds"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **metadata,
            "name": name_of(job),
            "namespace": job["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": spec,
    }


def ended_status(
    *, started: datetime, ended: datetime, succeeded: bool, reason: str | None, message: str | None
) -> JsonObject:
    """The status of a managed Job whose pod has ended (one completion, no retries of its own)."""
    stamp = ended.isoformat().replace("+00:00", "Z")
    status: JsonObject = {"startTime": started.isoformat().replace("+00:00", "Z"), "active": 0, "ready": 0}
    if succeeded:
        kinds, counts = ("SuccessCriteriaMet", "Complete"), {"succeeded": 1, "failed": 0}
        why, said = "CompletionsReached", "Reached expected number of succeeded pods"
        status["completionTime"] = stamp
    else:
        kinds, counts = ("FailureTarget", "Failed"), {"succeeded": 0, "failed": 1}
        why = reason if reason == "DeadlineExceeded" else "BackoffLimitExceeded"
        said = message or "Job has reached the specified backoff limit"
    condition = {
        "status": "True",
        "reason": why,
        "message": said,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }
    return {**status, **counts, "conditions": [{"type": kind, **condition} for kind in kinds]}
