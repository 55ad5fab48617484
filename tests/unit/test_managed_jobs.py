"""The Jobs seqflow runs itself (spec.managedBy): the pod made of a managed Job, as the Job
controller would make it, and the status written once that pod has ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from seqflow.api.models import JobTemplate, PinnedTask, RetryPolicy
from seqflow.engine import CreateJob, job_name
from seqflow.executors.jobs import LABEL_JOB_NAME, LABEL_JOB_UID, RunRef, job_manifest, pod_of_job
from seqflow.executors.managed import MANAGED_JOBS, ended_status, job_pod_manifest, managed

RUN = RunRef(namespace="shop", name="order-001", uid="uid-123")
T0 = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def created_job() -> dict:
    """A managed Job as the API server answers its creation."""
    task = PinnedTask(
        name="Label",
        job=JobTemplate(image="registry.example/label:1"),
        retry=RetryPolicy(),
        timeout_seconds=45,
    )
    name = job_name(run="order-001", node="Label", attempt=1)
    job = job_manifest(
        run=RUN, action=CreateJob(node="Label", name=name, task=task, attempt=1, input={}), ttl_seconds=60
    )
    job["spec"]["managedBy"] = MANAGED_JOBS
    job["metadata"]["uid"] = "job-uid-9"
    return job


def test_a_managed_jobs_pod_is_its_template_named_as_it_and_owned_by_it():
    job = created_job()
    pod = job_pod_manifest(job)
    assert managed(job) and not managed({**job, "spec": {**job["spec"], "managedBy": None}})
    assert pod["metadata"]["name"] == job["metadata"]["name"] and pod["metadata"]["namespace"] == "shop"
    (owner,) = pod["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job["metadata"]["name"],
        "uid": "job-uid-9",
        "controller": True,
    }
    labels = pod["metadata"]["labels"]
    assert labels[LABEL_JOB_NAME] == labels["job-name"] == job["metadata"]["name"]
    assert labels[LABEL_JOB_UID] == labels["controller-uid"] == "job-uid-9"
    assert labels["seqflow.io/task"] == "Label"  # the template's own labels kept
    assert pod_of_job(pod, job)  # the observer takes it for the Job's
    template = job["spec"]["template"]["spec"]
    assert pod["spec"]["containers"] == template["containers"]
    assert pod["spec"]["restartPolicy"] == "Never" and pod["spec"]["activeDeadlineSeconds"] == 45


@pytest.mark.parametrize(
    ("succeeded", "reason", "kinds", "why", "counts"),
    [
        (True, None, ["SuccessCriteriaMet", "Complete"], "CompletionsReached", (1, 0)),
        (False, None, ["FailureTarget", "Failed"], "BackoffLimitExceeded", (0, 1)),
        (False, "DeadlineExceeded", ["FailureTarget", "Failed"], "DeadlineExceeded", (0, 1)),
        (False, "TaskFailed", ["FailureTarget", "Failed"], "BackoffLimitExceeded", (0, 1)),
    ],
)
def test_an_ended_pod_ends_its_job_as_the_api_server_requires(succeeded, reason, kinds, why, counts):
    status = ended_status(
        started=T0, ended=T0 + timedelta(seconds=3), succeeded=succeeded, reason=reason, message="exit code 1"
    )
    assert [c["type"] for c in status["conditions"]] == kinds
    assert {c["reason"] for c in status["conditions"]} == {why}
    assert all(c["status"] == "True" for c in status["conditions"])
    assert (status["succeeded"], status["failed"], status["active"]) == (*counts, 0)
    assert status["startTime"] == "2026-12-08T12:00:00Z"
    assert ("completionTime" in status) == succeeded  # only a Complete Job has one
    if succeeded:
        assert status["completionTime"] == "2026-12-08T12:00:03Z"
