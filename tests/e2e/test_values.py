"""End to end: values by reference. A 10 MiB input over the HTTP API and 10 MiB outputs through
five steps, a Job step that fetches a large input and sends a 2 MiB output over HTTP, every run
object staying small; a database outage holds only the runs that need a stored value."""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid

import obstore
import pytest

from testenv.objectstore import ObjectStore
from testenv.operator import OperatorProcess
from tests.e2e.operators import http_url, start_operator
from tests.e2e.test_api import post
from tests.e2e.test_history import admin_token, get
from tests.e2e.test_job_tasks import job_task, jobs_of, wait_phase
from tests.e2e.test_plugin import plugin
from tests.support import Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster]
MIB = 1024 * 1024
OBJECT_BOUND = 256 * 1024


def object_size(cluster: Cluster, namespace: str, name: str) -> int:
    return len(json.dumps(cluster.get_json("workflowrun", name, "-n", namespace)))


def is_ref(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"ref", "size"}


@pytest.mark.usefixtures("operator")
def test_a_10_mib_input_over_http_flows_through_five_steps_by_reference(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    token = admin_token(cluster)
    steps = [{"name": f"S{i}", "handler": "test.step"} for i in range(1, 6)]
    cluster.apply(workflow("big", steps), namespace=namespace)
    payload = os.urandom(5 * MIB).hex()  # 10 MiB of JSON: each step's output is as large
    code, started, _ = post(
        operator, f"/api/v1/namespaces/{namespace}/workflows/big/runs", {"payload": payload}, token
    )
    assert code == 201, started
    name = started["name"]
    wait_phase(cluster, namespace, name, "Succeeded", timeout=120)

    run = runs.get(namespace, name)
    assert is_ref(run["spec"]["inputRef"]) and "input" not in run["spec"]
    assert is_ref(run["status"]["output"]) and run["status"]["output"]["size"] > 10 * MIB
    assert object_size(cluster, namespace, name) < OBJECT_BOUND

    wait_for(lambda: not runs.get(namespace, name)["status"].get("pendingHistory"), timeout=60)
    code, shown = get(operator, f"/api/v1/namespaces/{namespace}/runs/{name}", token)
    assert code == 200
    assert shown["input"] == {"payload": payload}  # read through the reference, whole
    assert shown["output"]["payload"] == payload and shown["output"]["trail"] == [s["name"] for s in steps]
    assert [a["input"].get("step", 0) for a in shown["attempts"]] == [0, 1, 2, 3, 4]
    code, by_ref = get(operator, f"/api/v1/namespaces/{namespace}/runs/{name}?values=ref", token)
    assert is_ref(by_ref["output"]) and by_ref["output"] == run["status"]["output"]
    digest = by_ref["output"]["ref"]
    request = urllib.request.Request(
        f"{http_url(operator)}/api/v1/namespaces/{namespace}/values/{digest}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == shown["output"]
    assert get(operator, f"/api/v1/namespaces/default/values/{digest}", token)[0] == 404  # held here only


@pytest.mark.usefixtures("operator")
def test_a_job_step_fetches_a_large_input_and_sends_a_2_mib_output_over_http(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.require_kwok()
    render = job_task("Render", annotations={"test.seqflow.io/duration": "5s"})
    steps = [{"name": "Prepare", "handler": "test.step"}, render, {"name": "Publish", "handler": "test.step"}]
    cluster.apply(workflow("render", steps), namespace=namespace)
    document = os.urandom(300 * 1024).hex()  # 600 KiB: more than a Job's manifest takes
    manifest = json.dumps(
        workflow_run("r1", "render", {"doc": document})
    )  # (too large for apply's annotation)
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=manifest)
    (job,) = wait_for(lambda: jobs_of(cluster, namespace, "r1"), timeout=30, what="the Render Job")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "SEQFLOW_INPUT" not in env and len(json.dumps(job)) < 64 * 1024

    # What the step's pod does with any image: curl its input, curl its output back.
    with urllib.request.urlopen(env["SEQFLOW_INPUT_URL"], timeout=30) as response:
        given = json.loads(response.read())
    assert given == {"doc": document, "trail": ["Prepare"], "step": 1}
    pages = os.urandom(MIB).hex()  # 2 MiB
    sent = urllib.request.Request(
        env["SEQFLOW_OUTPUT_URL"], data=json.dumps({"pages": pages}).encode(), method="PUT"
    )
    with urllib.request.urlopen(sent, timeout=30) as response:
        assert response.status == 201 and is_ref(json.loads(response.read()))
    forged = env["SEQFLOW_OUTPUT_URL"].replace("/attempts/", "/attempts/x")
    refused = urllib.request.Request(forged, data=b"{}", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(refused, timeout=10)
    assert denied.value.code == 403

    wait_phase(cluster, namespace, "r1", "Succeeded", timeout=60)
    status = runs.get(namespace, "r1")["status"]
    assert [n["phase"] for n in status["nodes"]] == ["Succeeded"] * 3
    assert len(json.dumps(status)) < 8 * 1024  # its 600 KiB input is in its spec, as written
    (job,) = jobs_of(cluster, namespace, "r1")
    assert is_ref(json.loads(job["metadata"]["annotations"]["seqflow.io/output"]))
    assert status["output"]["size"] > 2 * MIB


def test_an_outage_delays_inline_runs_and_holds_runs_that_need_a_stored_value(
    cluster: Cluster, runs: Runs, crds: None, mariadb, operator_kubeconfig, tmp_path
):
    namespace = f"values-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    operator = start_operator(operator_kubeconfig, tmp_path / "operator.log", "values-*", mariadb.url)
    try:
        steps = [{"name": n, "handler": "test.step", "retry": {"backoffSeconds": 0.5}} for n in ("A", "B")]
        cluster.apply(workflow("two", steps), namespace=namespace)
        big = {"doc": "z" * 100_000, "sleep": 3}
        cluster.apply(workflow_run("stored", "two", big), namespace=namespace)
        runs.watch(namespace, "stored", until=lambda s: s.get("current") == ["A"], timeout=30)
        mariadb.stop_server()
        cluster.apply(workflow_run("inline", "two", {"n": 1}), namespace=namespace)

        wait_phase(cluster, namespace, "inline", "Succeeded", timeout=60)  # needs no stored value
        held = runs.watch(namespace, "stored", until=lambda s: _reason(s) == "ValueUnavailable", timeout=60)[
            -1
        ]
        assert held["phase"] == "Running" and "history store" in condition(held)["message"]
        time.sleep(5)
        assert runs.get(namespace, "stored")["status"]["phase"] == "Running"  # held, not failed
        mariadb.start_server()
        wait_phase(cluster, namespace, "stored", "Succeeded", timeout=90)
        output = runs.get(namespace, "stored")["status"]["output"]
        assert is_ref(output) and output["size"] > 100_000
    finally:
        operator.stop()


def _reason(status: dict) -> str | None:
    found = [c for c in status.get("conditions", []) if c["type"] == "Succeeded"]
    return found[0]["reason"] if found else None


@pytest.mark.usefixtures("operator")
def test_a_run_of_2000_steps_keeps_its_object_small_with_its_finished_nodes_in_the_store(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    members = [{"name": f"m{j}", "handler": "test.step"} for j in range(20)]
    groups = [{"name": f"g{i}", "parallel": members} for i in range(100)]  # 100 x 20 members
    cluster.apply(workflow("wide", groups), namespace=namespace)
    cluster.apply(workflow_run("wide-1", "wide", {"sleep": 0.02}), namespace=namespace)
    folded = lambda: (runs.get(namespace, "wide-1").get("status") or {}).get("earlierNodes") or []  # noqa: E731
    wait_for(lambda: len(folded()) >= 5, timeout=120)
    assert object_size(cluster, namespace, "wide-1") < OBJECT_BOUND  # while it runs
    token = admin_token(cluster)
    code, shown = get(operator, f"/api/v1/namespaces/{namespace}/runs/wide-1", token)
    assert code == 200 and shown["phase"] == "Running"  # the HTTP API shows the folded nodes in place
    nodes = shown["live"]["nodes"]
    assert len(nodes) >= 500 and [n["id"] for n in nodes[:3]] == ["g0", "g0/m0", "g0/m1"]
    assert len({n["id"] for n in nodes}) == len(nodes) and "earlierNodes" not in shown["live"]
    wait_phase(cluster, namespace, "wide-1", "Succeeded", timeout=300)

    status = runs.get(namespace, "wide-1")["status"]
    assert (
        status["progress"] == "100/100" and "pinnedTasks" not in status and is_ref(status["pinnedTasksRef"])
    )
    assert len(status["earlierNodes"]) == 20 and len(status["nodes"]) == 100
    assert object_size(cluster, namespace, "wide-1") < OBJECT_BOUND
    printed = cluster.kubectl("get", "workflowrun", "wide-1", "-n", namespace).stdout
    assert "Succeeded" in printed and "100/100" in printed
    tree = plugin(cluster, "tree", "wide-1", "-n", namespace).stdout.splitlines()
    assert tree[2].strip() == "(earlier finished steps: seqflow history show wide-1)"
    assert tree[3].split()[:2] == ["g95/m4", "Succeeded"] and len(tree) == 103  # 2,000 nodes folded
    wait_for(lambda: not runs.get(namespace, "wide-1")["status"].get("pendingHistory"), timeout=60)
    code, shown = get(operator, f"/api/v1/namespaces/{namespace}/runs/wide-1", token)
    assert shown["output"]["step"] == 100 and len(shown["attempts"]) == 2100  # groups and members


def succeeded_condition(runs: Runs, namespace: str, name: str) -> dict:
    status = runs.get(namespace, name).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == "Succeeded"), {})


def config_map(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def run_from(name: str, workflow_name: str, source: dict) -> dict:
    run = workflow_run(name, workflow_name)
    run["spec"] = {"workflowRef": {"name": workflow_name}, "inputFrom": source}
    return run


@pytest.mark.usefixtures("operator")
def test_a_run_reads_its_input_from_a_config_map_or_a_secret_applied_beside_it(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.apply(workflow("from-data", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    source = {"configMapKeyRef": {"name": "order-7", "key": "input.json"}}
    cluster.apply(run_from("from-map", "from-data", source), namespace=namespace)  # before its data
    waiting = lambda: succeeded_condition(runs, namespace, "from-map").get("reason") == "WaitingForInput"  # noqa: E731
    wait_for(waiting, timeout=30)
    assert (
        'ConfigMap "order-7" key "input.json"' in succeeded_condition(runs, namespace, "from-map")["message"]
    )
    rows = [f'"r{i}"' for i in range(2000)]  # 16 KiB of JSON: kept in the store
    cluster.apply(
        config_map("order-7", {"input.json": f'{{"order": 7, "rows": [{",".join(rows)}]}}'}),
        namespace=namespace,
    )
    wait_phase(cluster, namespace, "from-map", "Succeeded", timeout=60)
    status = runs.get(namespace, "from-map")["status"]
    assert is_ref(status["input"]) and status["output"]["ref"] != status["input"]["ref"]

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "order-9"},
        "stringData": {"input": '{"order": 9}'},
    }
    cluster.apply(secret, namespace=namespace)
    cluster.apply(
        run_from("from-secret", "from-data", {"secretKeyRef": {"name": "order-9", "key": "input"}}),
        namespace=namespace,
    )
    wait_phase(cluster, namespace, "from-secret", "Succeeded", timeout=60)
    status = runs.get(namespace, "from-secret")["status"]
    assert status["input"] == {"order": 9} and status["output"]["order"] == 9

    cluster.apply(config_map("not-an-object", {"input.json": "[1, 2]"}), namespace=namespace)
    bad = {"configMapKeyRef": {"name": "not-an-object", "key": "input.json"}}
    cluster.apply(run_from("from-array", "from-data", bad), namespace=namespace)
    wait_phase(cluster, namespace, "from-array", "Failed", timeout=60)
    failed = succeeded_condition(runs, namespace, "from-array")
    assert failed["reason"] == "InputInvalid" and "it is an array" in failed["message"]

    both = run_from("both", "from-data", source)
    both["spec"]["inputRef"] = {"ref": "sha256:" + "0" * 64, "size": 2}
    refused = cluster.apply(both, namespace=namespace, check=False)
    assert refused.returncode != 0 and "inputFrom is instead of inputRef" in refused.stderr
    both["spec"] = {**both["spec"], "input": {"order": 1}}
    del both["spec"]["inputRef"]
    cluster.apply(both, namespace=namespace)
    wait_phase(cluster, namespace, "both", "Failed", timeout=60)
    assert "both input and inputFrom" in succeeded_condition(runs, namespace, "both")["message"]


def test_in_process_steps_pass_a_20_mib_file_through_the_object_store(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, operator_kubeconfig, tmp_path
):
    namespace = f"values-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    with ObjectStore() as store:
        obstore.put(store.client(), "warm-up", b"")  # its first write makes the bucket's volumes
        settings = {
            "SEQFLOW_ARTIFACTS_URL": store.endpoint_url,
            "SEQFLOW_ARTIFACTS_BUCKET": store.bucket,
            "SEQFLOW_ARTIFACTS_ACCESS_KEY_ID": store.access_key,
            "SEQFLOW_ARTIFACTS_SECRET_ACCESS_KEY": store.secret_key,
        }  # (no SEQFLOW_ARTIFACTS_IMAGE: in-process steps move their files themselves)
        operator = start_operator(
            operator_kubeconfig, tmp_path / "operator.log", "values-*", database_url, **settings
        )
        try:
            steps = [
                {
                    "name": "Write",
                    "handler": "test.write_file",
                    "artifacts": {"outputs": [{"name": "data.bin"}]},
                },
                {
                    "name": "Read",
                    "handler": "test.read_file",
                    "artifacts": {"inputs": [{"name": "in.bin", "step": "Write", "artifact": "data.bin"}]},
                },
            ]
            cluster.apply(workflow("files", steps), namespace=namespace)
            cluster.apply(workflow_run("r1", "files", {"mib": 20}), namespace=namespace)
            cluster.apply(workflow_run("r2", "files", {"skip": True}), namespace=namespace)
            wait_phase(cluster, namespace, "r1", "Succeeded", timeout=90)
            status = runs.get(namespace, "r1")["status"]
            (kept,) = next(n for n in status["nodes"] if n["id"] == "Write")["artifacts"]
            assert kept["size"] == 20 * MIB and kept["name"] == "data.bin"
            # Hashed by the handler as it wrote it, by the operator as it kept it, by the next step:
            assert status["output"]["input"]["wrote"] == kept["sha256"] == status["output"]["read"]
            uid = runs.get(namespace, "r1")["metadata"]["uid"]
            assert kept["key"] == f"{namespace}/{uid}/Write/1/data.bin"
            assert obstore.head(store.client(), kept["key"])["size"] == 20 * MIB
            assert object_size(cluster, namespace, "r1") < 16 * 1024

            wait_phase(cluster, namespace, "r2", "Failed", timeout=90)  # wrote no file: retried, then failed
            failed = runs.get(namespace, "r2")["status"]
            assert condition(failed)["reason"] == "ArtifactMissing"
            assert "did not write its output artifacts data.bin" in failed["nodes"][0]["lastError"]
        finally:
            operator.stop()
