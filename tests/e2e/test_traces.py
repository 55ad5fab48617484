"""End to end with a real tracing backend (Jaeger v2, OTLP over HTTP, its query API as the
assertion): a run of five steps (a handler with a span of its own, a retried step, a parallel
group, a Job step on kwok, a sub-workflow) is one trace, span by span with its parents; the
Job's pod is given its span as TRACEPARENT; the child run is a trace of its own linked to its
step; a run started over HTTP with a traceparent joins the caller's trace."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv.jaeger import Jaeger
from testenv.operator import OperatorProcess
from tests.e2e.operators import http_url, start_operator
from tests.e2e.test_history import admin_token
from tests.e2e.test_job_tasks import job_task
from tests.support import Cluster, Runs, workflow, workflow_run

pytestmark = [pytest.mark.cluster]

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def jaeger() -> Iterator[Jaeger]:
    with Jaeger() as server:
        yield server


@pytest.fixture(scope="module")
def traced_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"traced-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def traced_operator(
    operator_kubeconfig: Path,
    crds: None,
    database_url: str,
    jaeger: Jaeger,
    traced_namespace: str,
    tmp_path_factory,
) -> Iterator[OperatorProcess]:
    """An operator of its own, exporting to Jaeger, serving `traced_namespace` (there before it)."""
    log = tmp_path_factory.mktemp("traced") / "operator.log"
    process = start_operator(
        operator_kubeconfig,
        log,
        traced_namespace,
        database_url,
        SEQFLOW_TRACING_ENDPOINT=jaeger.otlp_endpoint,
    )
    yield process
    process.stop()
    print(f"\noperator log: {log}\n{process.tail(40)}")


def by_name(found: dict) -> dict[str, list[dict]]:
    spans: dict[str, list[dict]] = {}
    for span in sorted(found["spans"], key=lambda s: s["startTime"]):
        spans.setdefault(span["operationName"], []).append(span)
    return spans


def parent_of(span: dict) -> str | None:
    return next((r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"), None)


def tags(span: dict) -> dict:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def test_a_run_is_one_trace_span_by_span(
    cluster: Cluster, runs: Runs, traced_namespace: str, traced_operator: OperatorProcess, jaeger: Jaeger
):
    cluster.require_kwok()
    namespace = traced_namespace
    steps = [
        {"name": "Reserve", "handler": "test.traced"},
        {"name": "Pay", "handler": "test.flaky", "retry": {"maxRetries": 2, "backoffSeconds": 0.5}},
        {
            "name": "Pack",
            "parallel": [{"name": "Box", "handler": "test.step"}, {"name": "Tape", "handler": "test.step"}],
        },
        job_task("Label"),
        {"name": "Ship", "workflowRef": {"name": "traced-shipping"}},
    ]
    cluster.apply(
        workflow("traced-shipping", [{"name": "Post", "handler": "test.step"}]), namespace=namespace
    )
    cluster.apply(workflow("traced", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "traced", {"fail_attempts": 1}), namespace=namespace)
    status = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=90)[-1]
    trace_id = status["traceId"]
    assert trace_id == runs.get(namespace, "r1")["metadata"]["uid"].replace("-", "")

    spans = by_name(jaeger.trace(trace_id, spans=11))
    assert sorted(spans) == sorted(
        [
            "run traced",
            "Reserve",
            "charge card",
            "Pay",
            "Pay backoff",
            "Pack",
            "Pack/Box",
            "Pack/Tape",
            "Label",
            "Ship",
        ]
    ), sorted(spans)
    (root,) = spans["run traced"]
    run_span = root["spanID"]
    assert parent_of(root) is None
    assert tags(root)["seqflow.run"] == "r1" and tags(root)["seqflow.namespace"] == namespace
    for name in ("Reserve", "Pay backoff", "Pack", "Label", "Ship"):
        (span,) = spans[name]
        assert parent_of(span) == run_span, name
        assert (
            tags(span)["seqflow.step"] == name.removesuffix(" backoff")
            and tags(span)["seqflow.workflow"] == "traced"
        )
    first, second = spans["Pay"]  # the retried step's attempts: siblings under the run
    assert parent_of(first) == parent_of(second) == run_span
    assert [tags(first)["seqflow.attempt"], tags(second)["seqflow.attempt"]] == [1, 2]
    assert tags(first).get("error") is True and "error" not in tags(second)
    (pack,) = spans["Pack"]
    assert [parent_of(spans[m][0]) for m in ("Pack/Box", "Pack/Tape")] == [pack["spanID"]] * 2
    (reserve,) = spans["Reserve"]
    (charge,) = spans["charge card"]  # the handler's own span, under its attempt's
    assert parent_of(charge) == reserve["spanID"] and tags(charge)["shop.card"] == "visa"
    assert {process["serviceName"] for process in jaeger.trace(trace_id, spans=11)["processes"].values()} == {
        "seqflow"
    }

    (label,) = spans["Label"]
    (job,) = cluster.get_json("jobs", "-n", namespace, "-l", "seqflow.io/task=Label")["items"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TRACEPARENT"] == f"00-{trace_id}-{label['spanID']}-01"

    child_name = runs.get(namespace, "r1")["status"]["nodes"][-1]["child"]
    child = runs.get(namespace, child_name)
    child_trace = child["status"]["traceId"]
    assert child_trace != trace_id
    (child_root,) = by_name(jaeger.trace(child_trace, spans=2))["run traced-shipping"]
    (ship,) = spans["Ship"]
    linked = [r for r in child_root["references"] if r["refType"] == "FOLLOWS_FROM"]
    assert [(r["traceID"], r["spanID"]) for r in linked] == [(trace_id, ship["spanID"])]


def test_a_run_started_over_http_joins_the_callers_trace(
    cluster: Cluster, runs: Runs, traced_namespace: str, traced_operator: OperatorProcess, jaeger: Jaeger
):
    namespace = traced_namespace
    cluster.apply(workflow("called", [{"name": "Work", "handler": "test.step"}]), namespace=namespace)
    request = urllib.request.Request(
        f"{http_url(traced_operator)}/api/v1/namespaces/{namespace}/workflows/called/runs",
        data=json.dumps({}).encode(),
        headers={
            "Authorization": f"Bearer {admin_token(cluster)}",
            "Content-Type": "application/json",
            "traceparent": CALLER,
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        name = json.load(response)["name"]
    status = runs.watch(namespace, name, until=lambda s: s.get("phase") == "Succeeded", timeout=60)[-1]
    caller_trace, caller_span = CALLER.split("-")[1:3]
    assert status["traceId"] == caller_trace

    spans = by_name(jaeger.trace(caller_trace, spans=2))
    (root,) = spans["run called"]
    assert parent_of(root) == caller_span
    assert parent_of(spans["Work"][0]) == root["spanID"]


def test_no_trace_is_kept_without_an_endpoint(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    cluster.apply(workflow("untraced", [{"name": "Work", "handler": "test.step"}]), namespace=namespace)
    cluster.apply(workflow_run("r1", "untraced", {}), namespace=namespace)
    status = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=60)[-1]
    assert "traceId" not in status
