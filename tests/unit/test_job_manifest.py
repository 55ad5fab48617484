"""Job tasks: the manifest of an attempt (a Job, or its pod alone) and the reading of a finished
Job's or pod's outcome."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from seqflow.api.artifacts import AttemptId, KeptFile, KeptReport
from seqflow.api.models import JobTemplate, PinnedTask, RetryPolicy, StoredArtifact
from seqflow.engine import CreateJob, job_name
from seqflow.executors.attempts import AttemptClaim, AttemptLinks
from seqflow.executors.jobs import (
    PERMANENT_EXIT_CODE,
    ArtifactLinks,
    AttemptUrls,
    RunRef,
    job_manifest,
    pod_manifest,
    pod_of_job,
    step_of_pod,
)
from seqflow.executors.outcomes import attempt_times, keeping, pod_finished, read_outcome, slim_pod

RUN = RunRef(namespace="shop", name="order-001", uid="uid-123")
ATTEMPT = AttemptId(namespace="shop", run_uid="uid-123", node="SendEmail", attempt=1)


def action(job: dict, *, attempt: int = 2, timeout: int = 45, data: dict | None = None) -> CreateJob:
    task = PinnedTask(
        name="SendEmail",
        job=JobTemplate.model_validate(job),
        retry=RetryPolicy(),
        timeout_seconds=timeout,
    )
    name = job_name(run="order-001", node="SendEmail", attempt=attempt)
    return CreateJob(
        node="SendEmail", name=name, task=task, attempt=attempt, input=data or {"order": "ORD-1"}
    )


def env_of(container: dict) -> dict:
    return {e["name"]: e["value"] for e in container["env"]}


def test_simple_form_manifest():
    manifest = job_manifest(
        run=RUN,
        action=action(
            {
                "image": "mailer:1.2",
                "command": ["send"],
                "env": [{"name": "MODE", "value": "x"}],
                "resources": {"limits": {"cpu": "1"}},
            }
        ),
        ttl_seconds=600,
    )
    meta, spec = manifest["metadata"], manifest["spec"]
    assert meta["name"].startswith("order-001-sendemail-2-")
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "seqflow",
        "seqflow.io/run": "order-001",
        "seqflow.io/task": "SendEmail",
        "seqflow.io/attempt": "2",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "seqflow.io/v1alpha1",
            "kind": "WorkflowRun",
            "name": "order-001",
            "uid": "uid-123",
            "controller": True,
        }
    ]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 45
    assert spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert json.loads(pod["metadata"]["annotations"]["seqflow.io/input"]) == {"order": "ORD-1"}
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "mailer:1.2" and container["command"] == ["send"]
    assert container["resources"] == {"limits": {"cpu": "1"}}
    assert container["terminationMessagePath"] == "/dev/termination-log"
    env = env_of(container)
    assert env["MODE"] == "x"
    assert json.loads(env["SEQFLOW_INPUT"]) == {"order": "ORD-1"}
    assert env["SEQFLOW_INPUT_PATH"] == "/seqflow/input.json"
    assert (env["SEQFLOW_RUN"], env["SEQFLOW_TASK"], env["SEQFLOW_ATTEMPT"]) == (
        "order-001",
        "SendEmail",
        "2",
    )
    assert {"name": "seqflow-input", "mountPath": "/seqflow", "readOnly": True} in container["volumeMounts"]
    assert job_manifest(run=RUN, action=action({"image": "i"}), ttl_seconds=None)["spec"].keys() == {
        "backoffLimit",
        "activeDeadlineSeconds",
        "template",
    }


def test_pod_template_form_keeps_everything_and_uses_the_task_container():
    template = {
        "metadata": {"labels": {"team": "mail"}},
        "spec": {
            "serviceAccountName": "mailer",
            "nodeSelector": {"pool": "batch"},
            "tolerations": [{"key": "batch", "operator": "Exists"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "mailer"}}],
            "containers": [
                {"name": "proxy", "image": "envoy"},
                {"name": "task", "image": "mailer:1.2", "env": [{"name": "A", "value": "1"}]},
            ],
        },
    }
    pod = job_manifest(run=RUN, action=action({"podTemplate": template}), ttl_seconds=None)["spec"][
        "template"
    ]
    assert pod["spec"]["serviceAccountName"] == "mailer" and pod["spec"]["nodeSelector"] == {"pool": "batch"}
    assert pod["metadata"]["labels"]["team"] == "mail"
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["cfg", "seqflow-input"]
    proxy, task = pod["spec"]["containers"]
    assert "env" not in proxy and env_of(task)["A"] == "1" and "SEQFLOW_INPUT" in env_of(task)
    assert template["spec"]["containers"][1]["env"] == [{"name": "A", "value": "1"}]  # not mutated


def test_job_name_is_deterministic_short_and_named_after_the_step():
    long_run = "r" * 80
    name = job_name(run=long_run, node="Charge", attempt=3)
    assert len(name) <= 63 and name == job_name(run=long_run, node="Charge", attempt=3)
    assert name != job_name(run=long_run, node="Charge", attempt=4)
    assert name != job_name(run=long_run, node="Refund", attempt=3)
    assert job_name(run="order-001", node="ship", attempt=1) == "order-001-ship-1"
    # Ids that are not valid in a name are made so, with a hash so that no two ids meet.
    upper, lower = job_name(run="o", node="Ship", attempt=1), job_name(run="o", node="ship", attempt=1)
    assert upper.startswith("o-ship-1-") and upper != lower and len(upper) <= 63
    assert job_name(run="o", node="Notify/Email", attempt=2).startswith("o-notify-email-2-")


def job(condition: str, reason: str = "", deadline: int = 45) -> dict:
    return {
        "spec": {"activeDeadlineSeconds": deadline},
        "status": {"conditions": [{"type": condition, "status": "True", "reason": reason, "message": "m"}]},
    }


def pod(exit_code: int, message: str, phase: str | None = None) -> dict:
    return {
        "metadata": {"name": "p", "labels": {"batch.kubernetes.io/controller-uid": "job-uid"}},
        "spec": {"containers": [{"name": "task"}]},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"name": "task", "state": {"terminated": {"exitCode": exit_code, "message": message}}}
            ],
        },
    }


def test_complete_job_output_comes_from_termination_message():
    result = read_outcome(job=job("Complete"), pod=pod(0, '{"sent": true}'), attempt=ATTEMPT)
    assert result.succeeded and result.output == {"sent": True}


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("", "the task wrote no output"),
        ("sent!", "the output is not valid JSON: 'sent!'"),
        ("[1, 2]", "the output must be a JSON object, got list"),
        ('{"a": "' + "x" * 5000, "probably cut at Kubernetes' limit of 4096 bytes"),
    ],
)
def test_complete_job_with_bad_output_fails_the_attempt(message, error):
    result = read_outcome(job=job("Complete"), pod=pod(0, message), attempt=ATTEMPT)
    assert not result.succeeded and error in result.error and not result.permanent


def test_failed_job_reports_exit_code_and_message():
    result = read_outcome(
        job=job("Failed", "BackoffLimitExceeded"), pod=pod(1, "SMTP refused"), attempt=ATTEMPT
    )
    assert result.error == "exit code 1: SMTP refused" and not result.permanent
    permanent = read_outcome(
        job=job("Failed", "BackoffLimitExceeded"),
        pod=pod(PERMANENT_EXIT_CODE, "no such user"),
        attempt=ATTEMPT,
    )
    assert permanent.permanent and permanent.error == f"exit code {PERMANENT_EXIT_CODE}: no such user"


def test_deadline_exceeded_is_its_own_reason():
    result = read_outcome(job=job("Failed", "DeadlineExceeded", 5), pod=None, attempt=ATTEMPT)
    assert result.reason == "DeadlineExceeded"
    assert result.error == "DeadlineExceeded: the Job ran longer than its 5 s deadline"


RUNNING_JOB = {"metadata": {"uid": "job-uid"}, "spec": {"activeDeadlineSeconds": 45}, "status": {"active": 1}}


@pytest.mark.parametrize(
    ("phase", "exit_code", "message", "succeeded", "error", "permanent"),
    [
        ("Succeeded", 0, '{"sent": true}', True, None, False),
        ("Failed", 1, "SMTP refused", False, "exit code 1: SMTP refused", False),
        (
            "Failed",
            PERMANENT_EXIT_CODE,
            "no such user",
            False,
            f"exit code {PERMANENT_EXIT_CODE}: no such user",
            True,
        ),
    ],
)
def test_a_finished_pod_decides_before_its_job_does(phase, exit_code, message, succeeded, error, permanent):
    finished = slim_pod(pod(exit_code, message, phase))
    assert pod_finished(finished) and pod_of_job(finished, RUNNING_JOB)
    result = read_outcome(job=RUNNING_JOB, pod=finished, attempt=ATTEMPT)
    assert (result.succeeded, result.error, result.permanent) == (succeeded, error, permanent)


def test_a_pod_of_another_job_still_running_or_killed_decides_nothing():
    running = pod(0, "", "Running")
    assert not pod_finished(running) and not pod_finished(None)
    killed = pod(143, "", "Failed")
    killed["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # the Job's deadline, say
    assert not pod_finished(slim_pod(killed))
    assert not pod_of_job(pod(0, "", "Succeeded"), {"metadata": {"uid": "an-earlier-job"}})


def test_attempt_times_is_the_task_containers_run_time():
    ran = pod(0, "{}", "Succeeded")
    ran["status"]["containerStatuses"][0]["state"]["terminated"] |= {
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:02Z",
    }
    began, ended = attempt_times(job=RUNNING_JOB, pod=slim_pod(ran))
    assert (ended - began).total_seconds() == 2.0
    assert attempt_times(job=RUNNING_JOB, pod=None) is None


def test_the_pod_alone_is_the_jobs_pod_owned_by_the_run_with_the_deadline():
    attempt = action({"image": "mailer:1.2", "command": ["send"]})
    job = job_manifest(run=RUN, action=attempt, ttl_seconds=600)
    alone = pod_manifest(run=RUN, action=attempt)
    assert alone["apiVersion"] == "v1" and alone["kind"] == "Pod"
    meta = alone["metadata"]
    assert meta["name"] == job["metadata"]["name"] and meta["namespace"] == "shop"
    assert meta["labels"] == job["metadata"]["labels"]
    assert meta["ownerReferences"] == job["metadata"]["ownerReferences"]
    assert meta["annotations"] == job["spec"]["template"]["metadata"]["annotations"]
    assert alone["spec"] == {**job["spec"]["template"]["spec"], "activeDeadlineSeconds": 45}
    # a pod of its own is its own step; a Job's pod is its Job's; anyone else's is none of ours
    assert step_of_pod(alone) == meta["name"]
    of_job = {"metadata": {"name": "x-abcde", "labels": {"batch.kubernetes.io/job-name": "x"}}}
    assert step_of_pod(of_job) == "x"
    assert step_of_pod({"metadata": {"name": "web-1", "labels": {}}}) is None


def test_a_pod_alone_decides_its_attempt_and_its_deadline_is_its_own():
    ended = slim_pod({**pod(0, '{"sent": true}', "Succeeded"), "metadata": {"name": "p"}})
    assert read_outcome(job=None, pod=ended, attempt=ATTEMPT).output == {"sent": True}
    failed = slim_pod(pod(1, "SMTP refused", "Failed"))
    assert read_outcome(job=None, pod=failed, attempt=ATTEMPT).error == "exit code 1: SMTP refused"
    overran = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "task"}], "activeDeadlineSeconds": 30},
        "status": {"phase": "Failed", "reason": "DeadlineExceeded", "message": "Pod was active too long"},
    }
    result = read_outcome(job=None, pod=slim_pod(overran), attempt=ATTEMPT)
    assert result.reason == "DeadlineExceeded"
    assert result.error == "DeadlineExceeded: the pod ran longer than its 30 s deadline"
    assert attempt_times(job=None, pod=slim_pod(overran)) is None


# ----- data too large for the manifest or the termination message -----

LINKS = AttemptLinks(api_url="http://seqflow.seqflow-system.svc:8080/", key=b"k" * 32)
CLAIM = AttemptClaim(
    namespace="shop",
    run="order-001",
    run_uid="uid-123",
    node="Pack/Box",
    attempt=2,
    job="j",
    input="sha256:ab",
)


def test_an_attempt_token_names_its_attempt_and_nothing_else_verifies():
    token = LINKS.token(CLAIM)
    assert LINKS.verify(token) == CLAIM
    assert LINKS.input_url(token) == f"http://seqflow.seqflow-system.svc:8080/api/v1/attempts/{token}/input"
    other = AttemptLinks(api_url=LINKS.api_url, key=b"x" * 32)
    assert other.verify(token) is None  # another operator's key
    payload, signature = token.split(".")
    forged = AttemptLinks(api_url="", key=b"x" * 32).token(replace(CLAIM, attempt=3)).split(".")[0]
    assert LINKS.verify(f"{forged}.{signature}") is None  # another attempt, this signature
    assert LINKS.verify("garbage") is None and LINKS.verify(f"{payload}.") is None


def test_an_input_fetched_over_http_is_not_in_the_manifest_and_the_output_link_is():
    urls = AttemptUrls(input="http://op/api/v1/attempts/t/input", output="http://op/api/v1/attempts/t/output")
    manifest = job_manifest(run=RUN, action=action({"image": "x:1"}), ttl_seconds=None, urls=urls)
    template = manifest["spec"]["template"]
    env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
    assert env["SEQFLOW_INPUT_URL"] == urls.input and env["SEQFLOW_OUTPUT_URL"] == urls.output
    assert "SEQFLOW_INPUT" not in env and "volumes" not in template["spec"]
    assert "seqflow.io/input" not in template["metadata"].get("annotations", {})


def test_an_output_sent_to_the_operator_is_read_from_the_jobs_annotation():
    ref = {"ref": "sha256:" + "a" * 64, "size": 2_000_000}
    sent = {**job("Complete"), "metadata": {"annotations": {"seqflow.io/output": json.dumps(ref)}}}
    result = read_outcome(job=sent, pod=pod(0, ""), attempt=ATTEMPT)
    assert result.succeeded and result.output == ref


def test_a_step_pod_keeps_the_reference_to_its_sent_output_when_slimmed():
    ref = json.dumps({"ref": "sha256:" + "b" * 64, "size": 9})
    full = {**pod(0, ""), "metadata": {"name": "p", "annotations": {"seqflow.io/output": ref, "other": "x"}}}
    slim = slim_pod(full)
    assert slim["metadata"]["annotations"] == {"seqflow.io/output": ref}
    assert read_outcome(job=None, pod=slim, attempt=ATTEMPT).output == json.loads(ref)


def test_an_output_shaped_like_a_reference_in_a_termination_message_is_refused():
    ref = json.dumps({"ref": "sha256:" + "c" * 64, "size": 9})
    result = read_outcome(job=job("Complete"), pod=pod(0, ref), attempt=ATTEMPT)
    assert not result.succeeded and "stored value's reference" in (result.error or "")


# ----- artifacts -----

FILES_JOB = {"image": "loader:1"}  # (its step's artifacts decide the links it is given)


def test_a_step_that_passes_files_gets_an_init_container_a_sidecar_and_their_directory():
    links = ArtifactLinks(
        image="localhost/seqflow:dev",
        inputs=(("in.csv", "http://s3/get-in"),),
        outputs=(("report.pdf", "http://s3/put-report"),),
    )
    manifest = job_manifest(
        run=RUN, action=action(FILES_JOB), ttl_seconds=None, urls=AttemptUrls(artifacts=links)
    )
    spec = manifest["spec"]["template"]["spec"]
    fetch, keep = spec["initContainers"]
    assert (fetch["name"], fetch["image"], fetch["command"][-2:]) == (
        "seqflow-artifacts-in",
        "localhost/seqflow:dev",
        ["artifacts", "fetch"],
    )
    assert json.loads(env_of(fetch)["SEQFLOW_ARTIFACTS"]) == [["in.csv", "http://s3/get-in"]]
    assert "restartPolicy" not in fetch and keep["restartPolicy"] == "Always"  # a sidecar
    assert json.loads(env_of(keep)["SEQFLOW_ARTIFACTS"]) == [["report.pdf", "http://s3/put-report"]]
    task = spec["containers"][0]
    assert env_of(task)["SEQFLOW_ARTIFACTS_DIR"] == "/seqflow/artifacts"
    volumes = {
        m["name"]
        for c in (fetch, keep, task)
        for m in c["volumeMounts"]
        if m["mountPath"] == "/seqflow/artifacts"
    }
    assert (
        volumes == {"seqflow-artifacts"} and {"name": "seqflow-artifacts", "emptyDir": {}} in spec["volumes"]
    )
    plain = job_manifest(run=RUN, action=action(FILES_JOB), ttl_seconds=None)
    assert "initContainers" not in plain["spec"]["template"]["spec"]


def with_sidecar(base: dict, name: str, state: dict) -> dict:
    return {**base, "status": {**base["status"], "initContainerStatuses": [{"name": name, "state": state}]}}


def kept(message: str, code: int = 0) -> dict:
    return {"terminated": {"exitCode": code, "message": message}}


@pytest.mark.parametrize(
    ("sidecar", "artifacts", "error"),
    [
        (
            kept(KeptReport(kept=(KeptFile("report.pdf", 10, "ab"),)).to_message()),
            (
                StoredArtifact(
                    name="report.pdf", key="shop/uid-123/SendEmail/1/report.pdf", size=10, sha256="ab"
                ),
            ),
            None,
        ),
        (
            kept(KeptReport(missing=("report.pdf",)).to_message()),
            (),
            "did not write its output artifacts /seqflow/artifacts/report.pdf",
        ),
        (
            kept(KeptReport(error='output artifact "report.pdf" could not be kept: HTTP 403').to_message()),
            (),
            "HTTP 403",
        ),
        (kept("", 143), (), "ended (exit code 143) with no report"),
        (kept("{not json"), (), "report is unreadable"),
    ],
    ids=["kept", "missing", "upload refused", "killed", "garbled"],
)
def test_the_files_a_step_kept_come_from_its_sidecars_report(sidecar, artifacts, error):
    ended = with_sidecar(pod(0, '{"ok": true}', phase="Succeeded"), "seqflow-artifacts-out", sidecar)
    result = read_outcome(job=job("Complete"), pod=slim_pod(ended), attempt=ATTEMPT)
    assert result.artifacts == artifacts
    if error is None:
        assert result.succeeded and result.output == {"ok": True}
    else:
        assert error in (result.error or "") and result.reason == "ArtifactMissing" and not result.permanent


def test_a_step_waits_while_its_sidecar_keeps_its_files_and_a_failed_fetch_says_why():
    running = with_sidecar(pod(0, "{}", phase="Running"), "seqflow-artifacts-out", {"running": {}})
    assert keeping(slim_pod(running)) and not keeping(pod(0, "{}"))
    message = 'input artifact "in.csv" could not be fetched: HTTP 404 NoSuchKey'
    unfetched = with_sidecar(
        {**pod(0, ""), "status": {"phase": "Failed", "containerStatuses": []}},
        "seqflow-artifacts-in",
        kept(message, 1),
    )
    result = read_outcome(job=None, pod=slim_pod(unfetched), attempt=ATTEMPT)
    assert result.error == message and not result.permanent


def test_an_oom_killed_container_is_typed_with_its_exit_code():
    killed = pod(137, "")
    killed["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    result = read_outcome(job=job("Failed", "BackoffLimitExceeded"), pod=killed, attempt=ATTEMPT)
    assert (result.error, result.error_type, result.exit_code) == (
        "OOMKilled, exit code 137",
        "OOMKilled",
        137,
    )
    plain = read_outcome(job=job("Failed", "BackoffLimitExceeded"), pod=pod(2, "bad"), attempt=ATTEMPT)
    assert (plain.error_type, plain.exit_code, plain.disrupted) == ("Error", 2, False)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (
            {"reason": "Evicted", "message": "The node was low on resource: memory."},
            "the pod was evicted: The node was low on resource: memory.",
        ),
        (
            {
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                        "message": "preempted",
                    }
                ]
            },
            "the pod was stopped by PreemptionByScheduler: preempted",
        ),
    ],
)
def test_a_pod_stopped_from_outside_is_a_disruption(status: dict, error: str):
    stopped = pod(137, "")
    stopped["status"] = {**stopped["status"], "phase": "Failed", **status}
    result = read_outcome(job=job("Failed", "BackoffLimitExceeded"), pod=slim_pod(stopped), attempt=ATTEMPT)
    assert (result.error, result.reason, result.disrupted) == (error, "TaskInterrupted", True)
