"""Job tasks: the batch/v1 Job of one attempt, or with SEQFLOW_JOB_STEPS_AS=Pod its pod alone
(pure functions of run, task and attempt), and which run and Job a Job or pod belongs to. How an
attempt ended is read in seqflow.executors.outcomes.

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
from dataclasses import dataclass

from seqflow.api.artifacts import (
    ARTIFACTS_DIR,
    ARTIFACTS_VOLUME,
    FETCH_CONTAINER,
    KEEP_CONTAINER,
)
from seqflow.api.bodies import labels_of, name_of, owners_of, uid_of
from seqflow.api.manifests import owner_reference
from seqflow.api.models import (
    JsonObject,
    PinnedMember,
    PinnedTask,
    shortened_name,
)
from seqflow.engine import CreateJob

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
    large output (when the operator's HTTP API is reachable: SEQFLOW_API_URL), its files, and the
    trace it joins (with tracing on: TRACEPARENT, its span, and OTEL_EXPORTER_OTLP_ENDPOINT)."""

    input: str | None = None
    output: str | None = None
    artifacts: ArtifactLinks | None = None
    trace: tuple[tuple[str, str], ...] = ()


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
    container = task_container(spec)
    container["terminationMessagePath"] = TERMINATION_LOG
    container["terminationMessagePolicy"] = "File"
    given: list[tuple[str, str]] = []
    if urls.input is not None:
        given.append(("SEQFLOW_INPUT_URL", urls.input))
    else:
        given += _inline_input(template, container, action.input)
    if urls.output is not None:
        given.append(("SEQFLOW_OUTPUT_URL", urls.output))
    own = {var.get("name") for var in container.get("env", [])}
    given += [(name, value) for name, value in urls.trace if name not in own]  # theirs stand
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


def task_container(pod_spec: JsonObject) -> JsonObject:
    containers: list[JsonObject] = pod_spec.get("containers") or []
    if not containers:
        raise ValueError("the job's podTemplate has no containers")
    return next((c for c in containers if c.get("name") == "task"), containers[0])


# ----- ownership -----


def run_of(owned: JsonObject) -> str | None:
    """The name of the WorkflowRun that owns a Job (or a step's own pod) of ours."""
    owners = owners_of(owned)
    return next((o["name"] for o in owners if o.get("kind") == "WorkflowRun"), None)


def owned_by(owned: JsonObject, run_uid: str) -> bool:
    """Whether the Job (or pod) belongs to this very run (not to an earlier run of the same name)."""
    return any(o.get("uid") == run_uid for o in owners_of(owned))


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
