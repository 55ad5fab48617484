"""How a Job step's attempt ended, read from its pod (with `backoffLimit: 0` the pod decides the
Job: its end is the attempt's, read as soon as the pod is seen terminal) or from the Job's
conditions when the pod cannot say: the task container's termination message or the output it
sent over HTTP, the files its artifact sidecar kept, and why it failed (exit code, OOM, deadline,
eviction), typed for the retry conditions. Also the slim form of a pod the watch cache keeps,
which is what these functions read.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from seqflow.api.artifacts import ARTIFACTS_DIR, FETCH_CONTAINER, KEEP_CONTAINER, AttemptId, KeptReport
from seqflow.api.bodies import annotations_of, spec_of, status_of
from seqflow.api.models import ErrorType, JsonObject, Reason, StoredArtifact
from seqflow.api.values import REF_SHAPE, ref_of
from seqflow.engine import AttemptResult
from seqflow.executors.attempts import OUTPUT_ANNOTATION
from seqflow.executors.jobs import PERMANENT_EXIT_CODE, TERMINATION_MESSAGE_LIMIT, task_container


def _condition(job: JsonObject, kind: str) -> JsonObject | None:
    for condition in status_of(job).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            found: JsonObject = condition
            return found
    return None


def job_finished(job: JsonObject) -> bool:
    return bool(_condition(job, "Complete") or _condition(job, "Failed"))


def job_times(job: JsonObject | None) -> tuple[datetime, datetime] | None:
    """The Job's start and end (Kubernetes keeps whole seconds)."""
    status = (job or {}).get("status") or {}
    end = status.get("completionTime") or next(
        (c.get("lastTransitionTime") for c in status.get("conditions") or [] if c.get("type") == "Failed"),
        None,
    )
    if not status.get("startTime") or not end:
        return None
    return datetime.fromisoformat(status["startTime"]), datetime.fromisoformat(end)


def terminated_state(pod: JsonObject | None) -> JsonObject:
    """The task container's `terminated` state, or {} when there is none."""
    if pod is None or not spec_of(pod).get("containers"):
        return {}
    wanted = task_container(pod["spec"])["name"]
    for status in status_of(pod).get("containerStatuses") or []:
        if status.get("name") == wanted:
            return (status.get("state") or {}).get("terminated") or {}
    return {}


def pod_finished(pod: JsonObject | None) -> bool:
    """Whether the pod ended by itself: one being deleted (killed for the Job's deadline, or
    evicted) does not decide; its Job's condition does."""
    pod = pod or {}
    ended = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
    return bool(ended and not pod.get("metadata", {}).get("deletionTimestamp"))


def slim_pod(pod: JsonObject) -> JsonObject:
    """What of a pod the outcome is read from (a watch cache of whole pods would be large)."""
    meta, status = pod["metadata"], status_of(pod)
    return {
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "labels", "ownerReferences", "deletionTimestamp")
            if k in meta
        }
        | _sent_output(pod),
        "spec": {
            "containers": [{"name": c.get("name")} for c in spec_of(pod).get("containers") or []],
            "activeDeadlineSeconds": spec_of(pod).get("activeDeadlineSeconds"),
        },
        "status": {
            "phase": status.get("phase"),
            "reason": status.get("reason"),
            "message": status.get("message"),
            "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "DisruptionTarget"],
            "containerStatuses": [
                {"name": c.get("name"), "state": c.get("state")}
                for c in status.get("containerStatuses") or []
            ],
            "initContainerStatuses": [
                {"name": c.get("name"), "state": c.get("state")}
                for c in status.get("initContainerStatuses") or []
                if c.get("name") in (FETCH_CONTAINER, KEEP_CONTAINER)
            ],
        },
    }


def attempt_times(*, job: JsonObject | None, pod: JsonObject | None) -> tuple[datetime, datetime] | None:
    """When the task container started and ended (or, without it, the Job's whole seconds)."""
    terminated = terminated_state(pod)
    if terminated.get("startedAt") and terminated.get("finishedAt"):
        return datetime.fromisoformat(terminated["startedAt"]), datetime.fromisoformat(
            terminated["finishedAt"]
        )
    return job_times(job)


def _mover_state(pod: JsonObject | None, name: str) -> JsonObject | None:
    """The state of one of the pod's artifact containers (None: it has none of that name)."""
    for status in status_of(pod or {}).get("initContainerStatuses") or []:
        if status.get("name") == name:
            state: JsonObject = status.get("state") or {}
            return state
    return None


def keeping(pod: JsonObject | None) -> bool:
    """Whether the pod's artifact sidecar is still keeping the step's files (its end waits)."""
    state = _mover_state(pod, KEEP_CONTAINER)
    return state is not None and "terminated" not in state


def read_outcome(*, job: JsonObject | None, pod: JsonObject | None, attempt: AttemptId) -> AttemptResult:
    """How an attempt ended (its Job finished, or its pod did; a step's own pod has no Job):
    output from the termination message and the files its sidecar kept, or why not."""
    outcome = _read_output(job=job, pod=pod, node=attempt.node, attempt=attempt.attempt)
    fetched = (_mover_state(pod, FETCH_CONTAINER) or {}).get("terminated") or {}
    if not outcome.succeeded and fetched.get("exitCode") not in (None, 0):
        return replace(outcome, error=(fetched.get("message") or "").strip() or outcome.error)
    report = _kept_report(pod) if outcome.succeeded else None
    if report is None:
        return outcome
    if report.missing or report.error:
        missing = ", ".join(f"{ARTIFACTS_DIR}/{name}" for name in report.missing)
        error = report.error or f"the step did not write its output artifacts {missing}"
        return replace(outcome, output=None, error=error, reason=Reason.ARTIFACT_MISSING)
    kept = tuple(
        StoredArtifact(name=f.name, key=attempt.artifact_key(f.name), size=f.size, sha256=f.sha256)
        for f in report.kept
    )
    return replace(outcome, artifacts=kept)


def _kept_report(pod: JsonObject | None) -> KeptReport | None:
    """What the pod's artifact sidecar says it kept (None: the step keeps no files)."""
    state = _mover_state(pod, KEEP_CONTAINER)
    if state is None:
        return None
    terminated = state.get("terminated") or {}
    message = (terminated.get("message") or "").strip()
    if not message:
        code = terminated.get("exitCode")
        return KeptReport(error=f"the {KEEP_CONTAINER} container ended (exit code {code}) with no report")
    return KeptReport.from_message(message)


def _read_output(*, job: JsonObject | None, pod: JsonObject | None, node: str, attempt: int) -> AttemptResult:
    def failed(error: str, **why: Any) -> AttemptResult:
        return AttemptResult(node=node, attempt=attempt, error=error, **why)

    terminated = terminated_state(pod)
    message = (terminated.get("message") or "").strip()
    disruption = _disruption(pod)
    if disruption is not None:  # evicted, preempted, its node gone: not the step's doing
        return failed(disruption, reason=Reason.TASK_INTERRUPTED, disrupted=True)
    failure = _condition(job, "Failed") if job is not None else None
    if failure is None and (pod or {}).get("status", {}).get("phase") == "Failed":
        pod_status = (pod or {})["status"]
        failure = {"reason": pod_status.get("reason") or "Failed", "message": pod_status.get("message") or ""}
    if failure is not None:
        reason = failure.get("reason") or "Failed"
        if reason == "DeadlineExceeded":
            kind, limited = ("Job", job) if job is not None else ("pod", pod or {})
            limit = spec_of(limited).get("activeDeadlineSeconds")
            overran = f"DeadlineExceeded: the {kind} ran longer than its {limit} s deadline"
            return failed(overran, reason=reason, error_type=ErrorType.DEADLINE_EXCEEDED)
        code = terminated.get("exitCode")
        killed = terminated.get("reason") == "OOMKilled"
        detail = f"exit code {code}" if code is not None else f"{reason}: {failure.get('message', '')}"
        detail = f"OOMKilled, {detail}" if killed else detail
        return failed(
            f"{detail}: {message}" if message else detail,
            permanent=code == PERMANENT_EXIT_CODE,
            exit_code=code,
            error_type=ErrorType.OOM_KILLED if killed else ErrorType.ERROR,
        )

    sent = annotations_of(job or pod or {}).get(OUTPUT_ANNOTATION)
    if sent is not None:  # sent to the operator's HTTP API, and stored
        ref = _sent_ref(sent)
        if ref is None:
            return failed(
                f"the {OUTPUT_ANNOTATION} annotation is not a stored value's reference: {sent[:200]!r}"
            )
        return AttemptResult(node=node, attempt=attempt, output=ref)
    output, problem = parse_output(message)
    if problem:
        return failed(problem)
    return AttemptResult(node=node, attempt=attempt, output=output)


def _disruption(pod: JsonObject | None) -> str | None:
    """Why a pod was stopped from outside (evicted, preempted, deleted by its node), if it was."""
    status = status_of(pod or {})
    if status.get("reason") == "Evicted":
        return f"the pod was evicted: {status.get('message') or 'no message'}"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            why = condition.get("message") or "no message"
            return f"the pod was stopped by {condition.get('reason')}: {why}"
    return None


def sent_elsewhere(job: JsonObject, pod: JsonObject | None) -> bool:
    """Whether a Job's pod succeeded with no termination message while the Job, as seen, names
    no output sent over HTTP (the annotation may be on its way: read the Job again)."""
    succeeded = (pod or {}).get("status", {}).get("phase") == "Succeeded"
    silent = not (terminated_state(pod).get("message") or "").strip()
    return succeeded and silent and OUTPUT_ANNOTATION not in annotations_of(job)


def _sent_ref(sent: str) -> JsonObject | None:
    try:
        value = json.loads(sent)
    except ValueError:
        return None
    return value if ref_of(value) is not None else None


def _sent_output(pod: JsonObject) -> JsonObject:
    """The reference to the output a step's own pod sent, in its slim form."""
    sent = annotations_of(pod).get(OUTPUT_ANNOTATION)
    return {"annotations": {OUTPUT_ANNOTATION: sent}} if sent is not None else {}


def parse_output(message: str) -> tuple[JsonObject | None, str | None]:
    if not message:
        return None, "the task wrote no output: a JSON object is expected in its termination message"
    try:
        output: Any = json.loads(message)
    except ValueError:
        if len(message.encode()) >= TERMINATION_MESSAGE_LIMIT:
            return None, (
                f"the output is not valid JSON, probably cut at Kubernetes' limit of "
                f"{TERMINATION_MESSAGE_LIMIT} bytes for a termination message: keep outputs smaller"
            )
        return None, f"the output is not valid JSON: {message[:200]!r}"
    if not isinstance(output, dict):
        return None, f"the output must be a JSON object, got {type(output).__name__}"
    if ref_of(output) is not None:
        return None, f"the output may not be {REF_SHAPE}: that is a stored value's reference"
    return output, None
