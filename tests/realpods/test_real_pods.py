"""End to end on real pods: the chart installed with Helm from the image built from the
Dockerfile, the operator running as a real pod under the chart's RBAC, Job steps running the
seqflow image in real containers, the history API through `kubectl port-forward`, `kubectl
seqflow dashboard` opening the dashboard signed in, and an upgrade with a run in flight."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import obstore
import pytest

from testenv import ensure_binaries
from testenv._proc import free_port
from testenv.objectstore import ObjectStore
from testenv.realnode import BRIDGE
from tests.support import CHROMIUM_FLAGS, REPO, Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster]

RELEASE, SYSTEM = "seqflow", "seqflow-system"
HANDLERS_IMAGE = "localhost/seqflow-handlers:dev"
FINISHED = ("Succeeded", "Failed", "Cancelled")


def helm(cluster: Cluster, home: Path, *args: str) -> str:
    done = subprocess.run(
        [str(ensure_binaries().helm), f"--kubeconfig={cluster.kubeconfig}", *args],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": str(home / "cache")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def operator_pod(cluster: Cluster) -> dict[str, Any]:
    pods = cluster.get_json("pods", "-n", SYSTEM, "-l", "app.kubernetes.io/component=operator")["items"]
    running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    return running[0]


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])
    )


def wait_ready(cluster: Cluster, *, image: str) -> dict[str, Any]:
    """The operator pod running `image`, once Ready (`helm --wait` returns before it is)."""

    def up() -> bool:
        try:
            pod = operator_pod(cluster)
        except AssertionError:
            return False
        return pod["spec"]["containers"][0]["image"] == image and ready(pod)

    try:
        wait_for(up, timeout=120, what=f"the operator pod running {image} to be Ready")
    except AssertionError as error:  # say why: its state and its last lines
        pods = cluster.kubectl("get", "pods", "-n", SYSTEM, "-o", "wide", check=False).stdout
        logs = cluster.kubectl(
            "logs", "-n", SYSTEM, "-l", "app.kubernetes.io/component=operator", "--tail=30", check=False
        )
        raise AssertionError(f"{error}\n{pods}\n{logs.stdout}{logs.stderr}") from None
    return operator_pod(cluster)


@pytest.fixture(scope="module")
def installed(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("helm")
    helm(
        cluster, home, "install", RELEASE, str(REPO / "charts" / "seqflow"), "-n", SYSTEM,
        "--create-namespace", "--set", "image.repository=localhost/seqflow", "--set", "image.tag=dev",
        "--set", "image.pullPolicy=Never", "--set", "jobTtlSeconds=none",
        # No kube-proxy on the test node: Job steps reach the operator pod by its address.
        "--set", "http.apiUrl=http://$(POD_IP):8080",
        "--wait", "--timeout=120s",
    )  # fmt: skip
    yield home


def test_the_operator_pod_is_ready_as_non_root_with_its_probes_passing(cluster: Cluster, installed: Path):
    pod = wait_ready(cluster, image="localhost/seqflow:dev")
    container = pod["status"]["containerStatuses"][0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    uid = cluster.kubectl("exec", "-n", SYSTEM, pod["metadata"]["name"], "--", "id", "-u").stdout.strip()
    assert uid == "65532"
    time.sleep(12)  # past the liveness probe's initial delay and one period
    pod = operator_pod(cluster)
    container = pod["status"]["containerStatuses"][0]
    assert ready(pod) and container["restartCount"] == 0, container
    logs = cluster.kubectl("logs", "-n", SYSTEM, pod["metadata"]["name"]).stdout
    assert "seqflow starting" in logs and "Traceback" not in logs


def job_step(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "job": {"image": HANDLERS_IMAGE, "command": ["python", "-m", "seqflow", "task", handler]},
        **extra,
    }


def test_job_steps_run_in_real_containers(cluster: Cluster, installed: Path, namespace: str):
    wait_ready(cluster, image="localhost/seqflow:dev")
    quick = {"maxRetries": 2, "backoffSeconds": 1}
    steps = [
        job_step("First", "pod.step"),
        job_step("Flaky", "pod.flaky", retry=quick),
        job_step("Last", "pod.step"),
    ]
    cluster.apply(workflow("real", steps), namespace=namespace)
    cluster.apply(
        workflow("doomed", [job_step("Refuse", "pod.permanent", retry={"maxRetries": 3})]),
        namespace=namespace,
    )
    cluster.apply(workflow_run("r1", "real", {"order": "ORD-7"}), namespace=namespace)
    cluster.apply(workflow_run("r2", "doomed"), namespace=namespace)
    runs = Runs(cluster.kubeconfig)

    wait_for(lambda: runs.get(namespace, "r1").get("status", {}).get("phase") == "Succeeded", timeout=120)
    status = runs.get(namespace, "r1")["status"]
    assert status["output"]["order"] == "ORD-7"
    assert status["output"]["trail"] == ["First", "Last"] and status["output"]["attempt"] == 2  # Flaky's
    pods = {p["metadata"]["name"] for p in cluster.get_json("pods", "-n", namespace)["items"]}
    assert status["output"]["hostname"] in pods  # written by the container, read from its termination message
    assert [(n["id"], n["attempts"]) for n in status["nodes"]] == [("First", 1), ("Flaky", 2), ("Last", 1)]

    wait_for(lambda: runs.get(namespace, "r2").get("status", {}).get("phase") == "Failed", timeout=60)
    failed = runs.get(namespace, "r2")["status"]
    assert failed["nodes"][0]["attempts"] == 1  # exit code 65: no retry
    assert "permanent error" in condition(failed)["message"]


def test_an_oom_killed_step_is_retried_on_oom_killed_and_an_exit_code_2_is_not(
    cluster: Cluster, installed: Path, namespace: str
):
    wait_ready(cluster, image="localhost/seqflow:dev")
    retry = {"maxRetries": 1, "backoffSeconds": 1, "on": ["OOMKilled"]}
    hungry = {
        "image": HANDLERS_IMAGE,
        "command": ["python", "-c", "blocks = [bytearray(16 * 2**20) for _ in range(64)]"],  # 1 GiB
        "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}},
    }
    refusing = {"image": HANDLERS_IMAGE, "command": ["python", "-c", "raise SystemExit(2)"]}
    cluster.apply(workflow("hungry", [{"name": "Load", "job": hungry, "retry": retry}]), namespace=namespace)
    cluster.apply(
        workflow("refusing", [{"name": "Load", "job": refusing, "retry": retry}]), namespace=namespace
    )
    cluster.apply(workflow_run("r-oom", "hungry"), namespace=namespace)
    cluster.apply(workflow_run("r-two", "refusing"), namespace=namespace)
    runs = Runs(cluster.kubeconfig)
    for name in ("r-oom", "r-two"):
        wait_for(
            lambda n=name: runs.get(namespace, n).get("status", {}).get("phase") == "Failed", timeout=120
        )
    oom = runs.get(namespace, "r-oom")["status"]
    assert oom["nodes"][0]["attempts"] == 2  # retried: the kernel killed it for its memory
    assert condition(oom)["message"].startswith("Task Load failed (2 attempts): OOMKilled, exit code 137")
    two = runs.get(namespace, "r-two")["status"]
    assert two["nodes"][0]["attempts"] == 1
    assert (
        "not retried: type Error, exit code 2 is not among its retry conditions" in condition(two)["message"]
    )


def test_a_2_mib_output_goes_from_one_real_job_step_to_the_next_over_http(
    cluster: Cluster, installed: Path, namespace: str
):
    wait_ready(cluster, image="localhost/seqflow:dev")
    steps = [job_step("Write", "pod.pages"), job_step("Read", "pod.step")]
    cluster.apply(workflow("pages", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "pages", {"mib": 2}), namespace=namespace)
    runs = Runs(cluster.kubeconfig)

    wait_for(
        lambda: runs.get(namespace, "r1").get("status", {}).get("phase") in ("Succeeded", "Failed"),
        timeout=180,
    )
    status = runs.get(namespace, "r1")["status"]
    assert status["phase"] == "Succeeded", condition(status)
    output = status["output"]  # Read's: its 2 MiB input, fetched over HTTP, and its trail
    assert set(output) == {"ref", "size"} and output["size"] > 2 * 1024 * 1024
    assert len(json.dumps(cluster.get_json("workflowrun", "r1", "-n", namespace))) < 256 * 1024
    jobs = {
        j["metadata"]["labels"]["seqflow.io/task"]: j
        for j in cluster.get_json("jobs", "-n", namespace)["items"]
    }
    read_env = {
        e["name"]: e.get("value") for e in jobs["Read"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert "SEQFLOW_INPUT" not in read_env and read_env["SEQFLOW_INPUT_URL"].endswith("/input")
    assert "seqflow.io/output" in jobs["Write"]["metadata"]["annotations"]


@pytest.fixture(scope="module")
def object_store(installed: Path) -> Iterator[ObjectStore]:
    """SeaweedFS on the pod network's gateway (the bridge has its address once a pod runs), where
    the operator pod and the steps' pods reach it."""
    shown = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", BRIDGE], capture_output=True, text=True, check=True
    )
    gateway = shown.stdout.split(" inet ")[1].split("/")[0]
    with ObjectStore(host=gateway) as store:
        obstore.put(store.client(), "warm-up", b"")  # its first write makes the bucket's volumes
        yield store


def test_a_50_mib_file_goes_from_one_real_job_step_to_the_next_through_the_object_store(
    cluster: Cluster, installed: Path, namespace: str, object_store: ObjectStore
):
    cluster.kubectl(
        "create", "secret", "generic", "s3", "-n", SYSTEM,
        f"--from-literal=accessKeyId={object_store.access_key}",
        f"--from-literal=secretAccessKey={object_store.secret_key}",
    )  # fmt: skip
    helm(
        cluster, installed, "upgrade", RELEASE, str(REPO / "charts" / "seqflow"), "-n", SYSTEM,
        "--reuse-values", "--set", f"artifacts.url={object_store.endpoint_url}",
        "--set", "artifacts.existingSecret=s3", "--wait", "--timeout=120s",
    )  # fmt: skip
    wait_for(
        lambda: (
            any(
                e.get("name") == "SEQFLOW_ARTIFACTS_URL"
                for e in operator_pod(cluster)["spec"]["containers"][0]["env"]
            )
            and ready(operator_pod(cluster))
        ),
        timeout=120,
        what="the operator running with an object store",
    )
    # Plain shell commands: the step's image needs nothing of seqflow to pass files.
    sha = 'sha256sum "$SEQFLOW_ARTIFACTS_DIR/{0}" | cut -d" " -f1'
    write = (
        'head -c 52428800 /dev/urandom > "$SEQFLOW_ARTIFACTS_DIR/data.bin" && '
        f'printf \'{{"wrote":"%s"}}\' "$({sha.format("data.bin")})" > /dev/termination-log'
    )
    read = (
        f'printf \'{{"read":"%s","input":%s}}\' "$({sha.format("in.bin")})" "$SEQFLOW_INPUT"'
        " > /dev/termination-log"
    )
    steps = [
        {
            "name": "Write",
            "job": {
                "image": HANDLERS_IMAGE,
                "command": ["sh", "-c", write],
            },
            "artifacts": {"outputs": [{"name": "data.bin"}]},
        },
        {
            "name": "Read",
            "job": {
                "image": HANDLERS_IMAGE,
                "command": ["sh", "-c", read],
            },
            "artifacts": {"inputs": [{"name": "in.bin", "step": "Write", "artifact": "data.bin"}]},
        },
    ]
    cluster.apply(workflow("files", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "files"), namespace=namespace)
    runs = Runs(cluster.kubeconfig)
    began = time.monotonic()
    wait_for(
        lambda: runs.get(namespace, "r1").get("status", {}).get("phase") in ("Succeeded", "Failed"),
        timeout=180,
    )
    status = runs.get(namespace, "r1")["status"]
    assert status["phase"] == "Succeeded", condition(status)
    print(
        f"\n50 MiB written, kept, fetched and read by two real Job steps in {time.monotonic() - began:.1f} s"
    )
    (kept,) = next(n for n in status["nodes"] if n["id"] == "Write")["artifacts"]
    assert kept["size"] == 50 * 1024 * 1024 and kept["name"] == "data.bin"
    # What Write's sidecar hashed as it kept the file, Write hashed as it wrote it, and Read read:
    assert status["output"]["read"] == kept["sha256"] == status["output"]["input"]["wrote"]
    uid = runs.get(namespace, "r1")["metadata"]["uid"]
    assert kept["key"] == f"{namespace}/{uid}/Write/1/data.bin"
    assert obstore.head(object_store.client(), kept["key"])["size"] == kept["size"]
    assert len(json.dumps(cluster.get_json("workflowrun", "r1", "-n", namespace))) < 256 * 1024


@contextlib.contextmanager
def operator_port(cluster: Cluster) -> Iterator[int]:
    """A local port forwarded to the operator's Service while inside."""
    port = free_port()
    forward = subprocess.Popen(
        [cluster.kubectl_path, f"--kubeconfig={cluster.kubeconfig}", "port-forward", "-n", SYSTEM,
         f"svc/{RELEASE}", f"{port}:http"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield port
    finally:
        forward.terminate()
        forward.wait()


def test_history_api_through_port_forward(cluster: Cluster, installed: Path, namespace: str):
    wait_ready(cluster, image="localhost/seqflow:dev")
    cluster.apply(workflow("one", [job_step("Only", "pod.step")]), namespace=namespace)
    cluster.apply(workflow_run("r1", "one", {"n": 1}), namespace=namespace)
    runs = Runs(cluster.kubeconfig)
    wait_for(
        lambda: (
            runs.get(namespace, "r1").get("status", {}).get("phase") == "Succeeded"
            and not runs.get(namespace, "r1")["status"].get("pendingHistory")
        ),
        timeout=90,
        what="the run and its history",
    )
    with operator_port(cluster) as port:
        assert cluster.control_plane is not None
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/namespaces/{namespace}/runs/r1",
            headers={"Authorization": f"Bearer {cluster.control_plane.token_for('admin')}"},
        )

        def answered() -> bool:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answered.body = json.loads(response.read())  # type: ignore[attr-defined]
                    return True
            except OSError:
                return False

        wait_for(answered, timeout=30, what="the history API through port-forward")
        run = answered.body  # type: ignore[attr-defined]
        assert run["phase"] == "Succeeded" and run["attempts"][0]["task"] == "Only"


def test_a_job_steps_log_is_kept_as_its_tail_after_its_pod_and_job_are_gone(
    cluster: Cluster, installed: Path, namespace: str
):
    """A 10 MiB container log, kept as its last 1 MiB (SEQFLOW_STEP_LOG_BYTES' default): read
    from the history API and `kubectl seqflow logs` once the Job and its pod are deleted."""
    wait_ready(cluster, image="localhost/seqflow:dev")
    lines = 10 * 2**20 // 128  # each line 128 bytes
    dump = (
        f"import sys\nfor i in range({lines}): sys.stdout.write(f'line {{i:09d}} ' + 'x' * 112 + '\\n')\n"
        "open('/dev/termination-log', 'w').write('{}')"  # its output
    )
    step = {"name": "Dump", "job": {"image": HANDLERS_IMAGE, "command": ["python", "-c", dump]}}
    cluster.apply(workflow("chatty", [step]), namespace=namespace)
    cluster.apply(workflow_run("r1", "chatty"), namespace=namespace)
    runs = Runs(cluster.kubeconfig)
    wait_for(lambda: runs.get(namespace, "r1").get("status", {}).get("phase") in FINISHED, timeout=120)
    assert runs.get(namespace, "r1")["status"]["phase"] == "Succeeded", runs.get(namespace, "r1")["status"]
    assert cluster.control_plane is not None
    token = cluster.control_plane.token_for("admin")

    def listed() -> list[dict[str, Any]] | None:
        try:
            request = urllib.request.Request(logs, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())["items"] or None
        except OSError:
            return None

    with operator_port(cluster) as port:
        logs = f"http://127.0.0.1:{port}/api/v1/namespaces/{namespace}/runs/r1/logs"
        (kept,) = wait_for(listed, timeout=60, what="the step's log kept")
        cluster.kubectl("delete", "jobs", "--all", "-n", namespace, "--cascade=foreground", "--wait=true")
        assert not cluster.get_json("pods", "-n", namespace)["items"]
        request = urllib.request.Request(f"{logs}/Dump/1", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            text, size = response.read(), int(response.headers["X-Seqflow-Log-Size"])
    assert (kept["task"], kept["attempt"], kept["truncated"]) == ("Dump", 1, True)
    assert kept["size"] == size == lines * 128 and kept["kept"] == len(text) == 2**20
    assert text.endswith(f"line {lines - 1:09d} ".encode() + b"x" * 112 + b"\n")
    assert text == b"".join(
        f"line {i:09d} ".encode() + b"x" * 112 + b"\n" for i in range(lines - 8192, lines)
    )

    plugin = subprocess.run(
        [str(Path(sys.executable).with_name("kubectl-seqflow")), f"--kubeconfig={cluster.kubeconfig}",
         "logs", "r1", "-n", namespace, "--operator-namespace", SYSTEM],
        env={**os.environ, "PATH": f"{Path(cluster.kubectl_path).parent}:{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plugin.returncode == 0, plugin.stderr
    assert f"--- Dump attempt 1: kept (the last {2**20} of {lines * 128} bytes)" in plugin.stdout
    assert plugin.stdout.rstrip().endswith(f"line {lines - 1:09d} " + "x" * 112)


def test_kubectl_seqflow_dashboard_opens_the_dashboard_signed_in(
    cluster: Cluster, installed: Path, tmp_path: Path
):
    wait_ready(cluster, image="localhost/seqflow:dev")
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"  # what `webbrowser` runs: BROWSER names it
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {
        **os.environ,
        "BROWSER": str(browser),
        "PATH": f"{Path(cluster.kubectl_path).parent}:{os.environ['PATH']}",
    }
    plugin = subprocess.Popen(
        [str(Path(sys.executable).with_name("kubectl-seqflow")), f"--kubeconfig={cluster.kubeconfig}",
         "dashboard", "--operator-namespace", SYSTEM],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = wait_for(lambda: opened.exists() and opened.read_text().strip(), timeout=30, what="the browser")
        address, fragment = url.split("#token=")
        token = urllib.parse.unquote(fragment)
        with urllib.request.urlopen(address, timeout=10) as page:
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            assert '<script type="module" src="/ui/app.js">' in page.read().decode()
        bearer = {"Authorization": f"Bearer {token}"}
        whoami = urllib.request.Request(address + "api/v1/whoami", headers=bearer)
        with urllib.request.urlopen(whoami, timeout=10) as answer:
            assert json.loads(answer.read())["user"] == "admin"  # the kubeconfig's own user
        chromium = shutil.which("chromium")
        if chromium:  # the same address in a real browser: signed in, the token gone from the address
            from playwright.sync_api import expect, sync_playwright

            with sync_playwright() as playwright:
                launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
                page = launched.new_page()
                page.goto(url)
                expect(page.locator("#user")).to_have_text("Signed in as admin")
                assert "token" not in page.url
                launched.close()
    finally:
        plugin.terminate()
        plugin.wait()
    assert plugin.stdout is not None
    assert f"seqflow dashboard at {address}" in plugin.stdout.read()


def test_upgrade_to_a_new_image_with_a_run_in_flight(cluster: Cluster, installed: Path, namespace: str):
    wait_ready(cluster, image="localhost/seqflow:dev")
    slow = job_step("Slow", "pod.step")
    cluster.apply(workflow("long", [slow, job_step("After", "pod.step")]), namespace=namespace)
    cluster.apply(workflow_run("r1", "long", {"sleep": 8}), namespace=namespace)
    runs = Runs(cluster.kubeconfig)
    wait_for(lambda: runs.get(namespace, "r1").get("status", {}).get("current") == ["Slow"], timeout=60)

    before = operator_pod(cluster)["metadata"]["name"]
    assert cluster.control_plane is not None and cluster.control_plane.node is not None
    cluster.control_plane.node.ctr(
        "images", "tag", "--force", "localhost/seqflow:dev", "localhost/seqflow:dev2"
    )
    helm(
        cluster, installed, "upgrade", RELEASE, str(REPO / "charts" / "seqflow"), "-n", SYSTEM,
        "--reuse-values", "--set", "image.tag=dev2", "--timeout=120s",
    )  # fmt: skip
    pod = wait_ready(cluster, image="localhost/seqflow:dev2")
    assert pod["metadata"]["name"] != before

    wait_for(lambda: runs.get(namespace, "r1").get("status", {}).get("phase") == "Succeeded", timeout=120)
    status = runs.get(namespace, "r1")["status"]
    assert status["output"]["trail"] == ["Slow", "After"]
    assert [n["attempts"] for n in status["nodes"]] == [1, 1]  # the Job in flight was found, not rerun


@pytest.mark.parametrize("steps_as", ["Pod", "ManagedJob"])
def test_steps_run_by_seqflow_itself_with_the_charts_rbac(
    cluster: Cluster, installed: Path, namespace: str, steps_as: str
):
    """jobStepsAs=Pod, then ManagedJob: the operator (with the chart's role) creates each
    attempt's pod itself (alone, or for a Job that names seqflow in spec.managedBy); outputs flow
    through real containers and the kubelet enforces the step's time limit."""
    helm(
        cluster, installed, "upgrade", RELEASE, str(REPO / "charts" / "seqflow"), "-n", SYSTEM,
        "--reuse-values", "--set", f"jobStepsAs={steps_as}", "--wait", "--timeout=120s",
    )  # fmt: skip
    wait_for(
        lambda: (
            any(
                e.get("name") == "SEQFLOW_JOB_STEPS_AS" and e.get("value") == steps_as
                for e in operator_pod(cluster)["spec"]["containers"][0]["env"]
            )
            and ready(operator_pod(cluster))
        ),
        timeout=120,
        what=f"the operator running with jobStepsAs={steps_as}",
    )
    quick = {"maxRetries": 2, "backoffSeconds": 1}
    steps = [job_step("First", "pod.step"), job_step("Flaky", "pod.flaky", retry=quick)]
    cluster.apply(workflow("pods", steps), namespace=namespace)
    overrun = job_step("Overrun", "pod.step", timeoutSeconds=3, retry={"maxRetries": 0})
    cluster.apply(workflow("overrun", [overrun]), namespace=namespace)
    cluster.apply(workflow_run("r1", "pods", {"order": "ORD-8"}), namespace=namespace)
    cluster.apply(workflow_run("r2", "overrun", {"sleep": 60}), namespace=namespace)
    runs = Runs(cluster.kubeconfig)

    wait_for(lambda: runs.get(namespace, "r1").get("status", {}).get("phase") == "Succeeded", timeout=120)
    status = runs.get(namespace, "r1")["status"]
    assert status["output"]["order"] == "ORD-8" and status["output"]["attempt"] == 2
    first_pod = status["nodes"][0]["job"]  # named as its Job is (or would be)
    assert status["output"]["hostname"] == first_pod  # First's, passed on through Flaky
    jobs = {j["metadata"]["name"]: j for j in cluster.get_json("jobs", "-n", namespace)["items"]}
    if steps_as == "Pod":
        assert jobs == {}
    else:
        assert {j["spec"]["managedBy"] for j in jobs.values()} == {"seqflow.io/steps"}
        waited = cluster.kubectl("wait", "-n", namespace, f"job/{first_pod}", "--for=condition=complete")
        assert "condition met" in waited.stdout

    wait_for(lambda: runs.get(namespace, "r2").get("status", {}).get("phase") == "Failed", timeout=90)
    failed = runs.get(namespace, "r2")["status"]
    assert condition(failed)["reason"] == "DeadlineExceeded"
    kind = "pod" if steps_as == "Pod" else "Job"
    assert failed["nodes"][0]["lastError"] == f"DeadlineExceeded: the {kind} ran longer than its 3 s deadline"
