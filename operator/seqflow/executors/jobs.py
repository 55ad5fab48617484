"""Job tasks: the batch/v1 Job of one attempt, or with SEQFLOW_JOB_STEPS_AS=Pod its pod alone
(pure functions of run, task and attempt), and the reading of its outcome from its pod (with
`backoffLimit: 0` the pod decides the Job: its end is the attempt's, read as soon as the pod is
seen terminal) or from the Job's conditions.

The input reaches the container as JSON twice: in the SEQFLOW_INPUT variable and in the file
/seqflow/input.json (a downward-API volume of the pod's `seqflow.io/input` annotation); an input
too large for that is fetched from SEQFLOW_INPUT_URL instead. The container returns its output
as a JSON object in its termination message, or one too large for it to SEQFLOW_OUTPUT_URL
(seqflow.executors.attempts). A step's files (artifacts) are in ARTIFACTS_DIR: the seqflow image
fetches its inputs there in an init container and keeps its outputs from there in a sidecar,
both through presigned object store URLs (seqflow.cli.artifacts), so the task's image needs
nothing of seqflow.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from seqflow.api.artifacts import (
    ARTIFACTS_DIR,
    ARTIFACTS_VOLUME,
    FETCH_CONTAINER,
    KEEP_CONTAINER,
    AttemptId,
    KeptReport,
)
from seqflow.api.bodies import annotations_of, labels_of, name_of, owners_of, spec_of, status_of, uid_of
from seqflow.api.manifests import owner_reference
from seqflow.api.models import (
    ErrorType,
    JsonObject,
    PinnedMember,
    PinnedTask,
    Reason,
    StoredArtifact,
    shortened_name,
)
from seqflow.api.values import REF_SHAPE, ref_of
from seqflow.engine import AttemptResult, CreateJob
from seqflow.executors.attempts import OUTPUT_ANNOTATION

TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096  # bytes Kubernetes keeps of a termination message
# The largest input passed in the manifest (twice: in a variable, which Linux bounds at 128 KiB,
# and an annotation, all of which are bounded at 256 KiB); a larger one is fetched from the
# operator's HTTP API.
INLINE_INPUT_BYTES = 64 * 1024
INPUT_DIR = "/seqflow"
INPUT_ANNOTATION = "seqflow.io/input"
PERMANENT_EXIT_CODE = 65  # EX_DATAERR: the task's entrypoint says retrying cannot help

MANAGED_BY = {"app.kubernetes.io/managed-by": "seqflow"}
LABEL_RUN = "seqflow.io/run"
LABEL_TASK = "seqflow.io/task"
LABEL_ATTEMPT = "seqflow.io/attempt"
LABEL_ITEM = "seqflow.io/item"  # a forEach item's index
LABEL_JOB_NAME = "batch.kubernetes.io/job-name"  # set on its pods by the Job controller
LABEL_JOB_UID = "batch.kubernetes.io/controller-uid"


@dataclass(frozen=True)
class RunRef:
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class ArtifactLinks:
    """Presigned object store URLs of an attempt's files, by name, and the image (seqflow's)
    of the containers that move them."""

    image: str
    inputs: tuple[tuple[str, str], ...] = ()  # (name, a GET URL)
    outputs: tuple[tuple[str, str], ...] = ()  # (name, a PUT URL)


@dataclass(frozen=True)
class AttemptUrls:
    """Where the attempt's pod fetches its input (when it is not in the manifest) and sends a
    large output (when the operator's HTTP API is reachable: SEQFLOW_API_URL), and its files."""

    input: str | None = None
    output: str | None = None
    artifacts: ArtifactLinks | None = None


def job_manifest(
    *, run: RunRef, action: CreateJob, ttl_seconds: int | None, urls: AttemptUrls = AttemptUrls()
) -> JsonObject:
    """The attempt as a Job of one pod."""
    template = _attempt_template(run=run, action=action, urls=urls)
    job_spec: JsonObject = {
        "backoffLimit": 0,  # seqflow owns retries: one pod per attempt
        "activeDeadlineSeconds": action.task.timeout_seconds,
        "template": template,
    }
    if ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": action.name,
            "namespace": run.namespace,
            "labels": template["metadata"]["labels"],
            "ownerReferences": [owner_reference(kind="WorkflowRun", name=run.name, uid=run.uid)],
        },
        "spec": job_spec,
    }


def pod_manifest(*, run: RunRef, action: CreateJob, urls: AttemptUrls = AttemptUrls()) -> JsonObject:
    """The attempt as a pod of its own, owned by the run (SEQFLOW_JOB_STEPS_AS=Pod)."""
    template = _attempt_template(run=run, action=action, urls=urls)
    spec = {**template["spec"], "activeDeadlineSeconds": action.task.timeout_seconds}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **template["metadata"],
            "name": action.name,
            "namespace": run.namespace,
            "ownerReferences": [owner_reference(kind="WorkflowRun", name=run.name, uid=run.uid)],
        },
        "spec": spec,
    }


def _attempt_template(*, run: RunRef, action: CreateJob, urls: AttemptUrls) -> JsonObject:
    """The pod template of an attempt: the task's, with seqflow's labels, its input and where
    its output goes."""
    task = action.task
    assert task.job is not None
    labels = {
        **MANAGED_BY,
        LABEL_RUN: shortened_name(run.name),
        LABEL_TASK: task.name,
        LABEL_ATTEMPT: str(action.attempt),
        **({LABEL_ITEM: str(action.item)} if action.item is not None else {}),
    }
    template = _pod_template(task)
    template.setdefault("metadata", {})
    template["metadata"].setdefault("labels", {}).update(labels)
    spec = template.setdefault("spec", {})
    spec["restartPolicy"] = "Never"
    container = _task_container(spec)
    container["terminationMessagePath"] = TERMINATION_LOG
    container["terminationMessagePolicy"] = "File"
    given: list[tuple[str, str]] = []
    if urls.input is not None:
        given.append(("SEQFLOW_INPUT_URL", urls.input))
    else:
        given += _inline_input(template, container, action.input)
    if urls.output is not None:
        given.append(("SEQFLOW_OUTPUT_URL", urls.output))
    container["env"] = [
        *container.get("env", []),
        *(
            {"name": name, "value": value}
            for name, value in (
                *given,
                ("SEQFLOW_OUTPUT_PATH", TERMINATION_LOG),
                ("SEQFLOW_NAMESPACE", run.namespace),
                ("SEQFLOW_RUN", run.name),
                ("SEQFLOW_RUN_UID", run.uid),
                ("SEQFLOW_TASK", task.name),
                ("SEQFLOW_ATTEMPT", str(action.attempt)),
            )
        ),
    ]
    if urls.artifacts is not None:
        _add_artifact_containers(spec, container, urls.artifacts)
    return template


def _add_artifact_containers(spec: JsonObject, container: JsonObject, links: ArtifactLinks) -> None:
    """The artifact directory in the task container, the init container that fetches its inputs
    into it and the sidecar that keeps its outputs from it once the task container has ended."""
    mount = {"name": ARTIFACTS_VOLUME, "mountPath": ARTIFACTS_DIR}
    spec.setdefault("volumes", []).append({"name": ARTIFACTS_VOLUME, "emptyDir": {}})
    container.setdefault("volumeMounts", []).append(mount)
    container["env"].append({"name": "SEQFLOW_ARTIFACTS_DIR", "value": ARTIFACTS_DIR})

    def mover(name: str, verb: str, files: tuple[tuple[str, str], ...]) -> JsonObject:
        return {
            "name": name,
            "image": links.image,
            "command": ["python", "-m", "seqflow", "artifacts", verb],
            "env": [
                {"name": "SEQFLOW_ARTIFACTS", "value": json.dumps([list(f) for f in files])},
                {"name": "SEQFLOW_ARTIFACTS_DIR", "value": ARTIFACTS_DIR},
            ],
            "volumeMounts": [mount],
            "terminationMessagePath": TERMINATION_LOG,
            "terminationMessagePolicy": "File",
        }

    movers = spec.setdefault("initContainers", [])
    if links.inputs:
        movers.append(mover(FETCH_CONTAINER, "fetch", links.inputs))
    if links.outputs:  # a sidecar: it runs beside the task, and is stopped once the task has ended
        movers.append({**mover(KEEP_CONTAINER, "keep", links.outputs), "restartPolicy": "Always"})


def _inline_input(template: JsonObject, container: JsonObject, input: JsonObject) -> list[tuple[str, str]]:
    """The input in the pod's annotation, mounted as a file, and its variables."""
    input_json = json.dumps(input, separators=(",", ":"))
    template["metadata"].setdefault("annotations", {})[INPUT_ANNOTATION] = input_json
    template["spec"].setdefault("volumes", []).append(
        {
            "name": "seqflow-input",
            "downwardAPI": {
                "items": [
                    {
                        "path": "input.json",
                        "fieldRef": {"fieldPath": f"metadata.annotations['{INPUT_ANNOTATION}']"},
                    }
                ]
            },
        }
    )
    container.setdefault("volumeMounts", []).append(
        {"name": "seqflow-input", "mountPath": INPUT_DIR, "readOnly": True}
    )
    return [("SEQFLOW_INPUT", input_json), ("SEQFLOW_INPUT_PATH", f"{INPUT_DIR}/input.json")]


def _pod_template(task: PinnedTask | PinnedMember) -> JsonObject:
    job = task.job
    assert job is not None
    if job.pod_template is not None:
        return copy.deepcopy(job.pod_template)
    container: JsonObject = {"name": "task", "image": job.image}
    if job.command is not None:
        container["command"] = list(job.command)
    if job.args is not None:
        container["args"] = list(job.args)
    if job.env:
        container["env"] = [e.to_wire() for e in job.env]
    if job.resources is not None:
        container["resources"] = copy.deepcopy(job.resources)
    return {"spec": {"containers": [container]}}


def _task_container(pod_spec: JsonObject) -> JsonObject:
    containers: list[JsonObject] = pod_spec.get("containers") or []
    if not containers:
        raise ValueError("the job's podTemplate has no containers")
    return next((c for c in containers if c.get("name") == "task"), containers[0])


# ----- outcome -----


def _condition(job: JsonObject, kind: str) -> JsonObject | None:
    for condition in status_of(job).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            found: JsonObject = condition
            return found
    return None


def job_finished(job: JsonObject) -> bool:
    return bool(_condition(job, "Complete") or _condition(job, "Failed"))


def job_duration(job: JsonObject | None) -> float | None:
    """Seconds from the Job's start to its end (Kubernetes keeps whole seconds)."""
    status = (job or {}).get("status") or {}
    end = status.get("completionTime") or next(
        (c.get("lastTransitionTime") for c in status.get("conditions") or [] if c.get("type") == "Failed"),
        None,
    )
    if not status.get("startTime") or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(status["startTime"])).total_seconds()


def run_of(owned: JsonObject) -> str | None:
    """The name of the WorkflowRun that owns a Job (or a step's own pod) of ours."""
    owners = owners_of(owned)
    return next((o["name"] for o in owners if o.get("kind") == "WorkflowRun"), None)


def owned_by(owned: JsonObject, run_uid: str) -> bool:
    """Whether the Job (or pod) belongs to this very run (not to an earlier run of the same name)."""
    return any(o.get("uid") == run_uid for o in owners_of(owned))


def terminated_state(pod: JsonObject | None) -> JsonObject:
    """The task container's `terminated` state, or {} when there is none."""
    if pod is None or not spec_of(pod).get("containers"):
        return {}
    wanted = _task_container(pod["spec"])["name"]
    for status in status_of(pod).get("containerStatuses") or []:
        if status.get("name") == wanted:
            return (status.get("state") or {}).get("terminated") or {}
    return {}


def step_of_pod(pod: JsonObject) -> str | None:
    """The name of the Job step object a pod is: its Job's, or its own for a pod owned by a run."""
    job: str | None = labels_of(pod).get(LABEL_JOB_NAME)
    if job is not None:
        return job
    return name_of(pod) if run_of(pod) is not None else None


def pod_of_job(pod: JsonObject | None, job: JsonObject) -> bool:
    """Whether `pod` is this very Job's (not one of an earlier Job of the same name)."""
    labels = (pod or {}).get("metadata", {}).get("labels") or {}
    return bool(labels.get(LABEL_JOB_UID) == uid_of(job))


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


def attempt_duration(*, job: JsonObject | None, pod: JsonObject | None) -> float | None:
    """Seconds the task container ran (or, without it, the Job's own whole seconds)."""
    terminated = terminated_state(pod)
    if terminated.get("startedAt") and terminated.get("finishedAt"):
        began, ended = (datetime.fromisoformat(terminated[k]) for k in ("startedAt", "finishedAt"))
        return (ended - began).total_seconds()
    return job_duration(job)


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
