"""End to end: forEach steps on the real API server. A 1,000-item fan-out of handlers never runs
more than maxParallel at once (from the items' own log) and gathers in item order; tolerated
failures, a retry that runs only the failed items, a cancel that stops the running ones; Job
items whose pods' image, args and env are rendered from their items."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from seqflow.examples.inventory import InventoryService
from testenv._proc import free_port
from testenv.operator import OperatorProcess
from tests.e2e.test_faults import history_of
from tests.e2e.test_history import admin_token, get
from tests.e2e.test_job_tasks import job_task, jobs_of, wait_phase
from tests.support import REPO, Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def fan_out(name: str, **for_each: Any) -> dict[str, Any]:
    spec = {"items": "input.lines", "step": {"handler": "test.item", "retry": {"maxRetries": 0}}, **for_each}
    return workflow(name, [{"name": "Square", "forEach": spec}])


def output_of(cluster: Cluster, operator: OperatorProcess, runs: Runs, namespace: str, name: str) -> Any:
    """A finished run's output, read through its reference when it is stored (the history API)."""
    wait_for(lambda: not runs.get(namespace, name)["status"].get("pendingHistory"), timeout=60)
    code, shown = get(operator, f"/api/v1/namespaces/{namespace}/runs/{name}", admin_token(cluster))
    assert code == 200, shown
    return shown["output"]


def log_of(path: Path) -> list[tuple[str, int, int, float]]:
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(what, int(index), int(attempt), float(at)) for what, index, attempt, at in lines]


def most_at_once(log: list[tuple[str, int, int, float]]) -> int:
    running = most = 0
    for what, *_ in sorted(log, key=lambda entry: entry[3]):
        running += 1 if what == "start" else -1
        most = max(most, running)
    return most


def test_a_1000_item_fan_out_runs_at_most_max_parallel_and_gathers_in_order(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path, operator: OperatorProcess
):
    cluster.apply(fan_out("squares", maxParallel=50), namespace=namespace)
    log = tmp_path / "items.log"
    started = time.monotonic()
    run = workflow_run("r", "squares", {"lines": list(range(1000)), "log": str(log), "sleep": 0.05})
    cluster.apply(run, namespace=namespace)
    wait_phase(cluster, namespace, "r", "Succeeded", timeout=300)
    took = time.monotonic() - started
    entries = log_of(log)
    assert sorted(index for what, index, _, _ in entries if what == "start") == list(range(1000))
    assert 40 <= most_at_once(entries) <= 50  # (an item runs 50 ms: the slots stay full)
    output = output_of(cluster, operator, runs, namespace, "r")
    assert output["results"] == [{"square": i * i} for i in range(1000)]
    size = len(json.dumps(cluster.get_json("workflowrun", "r", "-n", namespace)))
    assert size < 256 * 1024
    print(f"\n1,000 items, maxParallel 50: {took:.1f} s ({1000 / took:.0f} items/s), object {size} bytes")


@pytest.mark.parametrize(("tolerated", "phase"), [(2, "Succeeded"), (1, "Failed")])
def test_failing_items_within_the_tolerance_are_listed_beyond_it_fail_the_run(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path, tolerated: int, phase: str
):
    name = f"tolerant-{tolerated}"
    cluster.apply(fan_out(name, maxParallel=4, toleratedFailures=tolerated), namespace=namespace)
    (tmp_path / "failing").touch()
    given = {"lines": list(range(20)), "log": str(tmp_path / "items.log"), "fail": [3, 7]}
    cluster.apply(
        workflow_run(name, name, {**given, "failing": str(tmp_path / "failing")}), namespace=namespace
    )
    wait_phase(cluster, namespace, name, phase, timeout=120)
    status = runs.get(namespace, name)["status"]
    (square,) = [n for n in status["nodes"] if n["id"] == "Square"]
    assert square["fanOut"]["failedItems"] == ["Square/3", "Square/7"]
    if phase == "Succeeded":
        results = status["output"]["results"]
        assert results[3] is None and results[7] is None and results[4] == {"square": 16}
        return
    message = condition(status)["message"]
    assert (
        message == "Task Square failed: 2 of 20 items failed, more than the 1 tolerated; "
        "Square/3: RuntimeError: item 3 failed"
    )
    # It failed after the items under way ended, and admitted none after the second failure:
    entries = log_of(tmp_path / "items.log")
    assert all(any(e[:2] == ("end", i) for e in entries) for _, i, _, _ in entries)
    assert max(i for _, i, _, _ in entries) < 7 + 4 + 1


def test_a_retry_runs_only_the_failed_items_and_a_cancel_stops_the_running_ones(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path
):
    cluster.apply(fan_out("retried", maxParallel=5), namespace=namespace)
    failing, log = tmp_path / "failing", tmp_path / "items.log"
    failing.touch()
    given = {"lines": list(range(10)), "log": str(log), "fail": [2], "failing": str(failing)}
    cluster.apply(workflow_run("r", "retried", given), namespace=namespace)
    wait_phase(cluster, namespace, "r", "Failed", timeout=60)
    failing.unlink()
    patch(cluster, namespace, "r", {"retry": 1})
    wait_phase(cluster, namespace, "r", "Succeeded", timeout=60)
    starts = Counter(index for what, index, _, _ in log_of(log) if what == "start")
    assert starts == {i: 2 if i == 2 else 1 for i in range(10)}  # the failed item again, the rest once
    assert runs.get(namespace, "r")["status"]["output"]["results"][2] == {"square": 4}

    slow_log = tmp_path / "slow.log"
    slow = {"lines": list(range(10)), "log": str(slow_log), "sleep": 60}
    cluster.apply(workflow_run("slow", "retried", slow), namespace=namespace)
    wait_for(lambda: slow_log.exists() and len(log_of(slow_log)) == 5, timeout=30, what="5 items running")
    progress = lambda: runs.get(namespace, "slow").get("status", {}).get("progress")  # noqa: E731
    wait_for(lambda: progress() == "0/1, Square 0/10", timeout=10, what="the progress in the status")
    asked = time.time()
    patch(cluster, namespace, "slow", {"cancel": True})
    wait_phase(cluster, namespace, "slow", "Cancelled", timeout=30)
    entries = log_of(slow_log)
    assert sorted(i for what, i, _, _ in entries if what == "start") == list(range(5))
    cancelled = [at for what, _, _, at in entries if what == "cancelled"]
    assert len(cancelled) == 5 and max(cancelled) - asked < 2


def patch(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = json.dumps({"spec": spec})
    cluster.kubectl("patch", "workflowrun", name, "-n", namespace, "--type=merge", "-p", body)


def test_the_order_picking_example_picks_each_line_and_labels_what_it_could(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "workflows" / "order-picking.yaml"))
    wait_phase(cluster, namespace, "picking-001", "Succeeded", timeout=60)
    status = runs.get(namespace, "picking-001")["status"]
    assert status["output"] == {
        "order_id": "ORD-007",
        "parcel": ["2 x SKU-1", "1 x SKU-2", "5 x SKU-3"],
        "missing": ["SKU-9"],  # one line of four may fail (25%): it failed for good, not retried
    }
    (pick,) = [n for n in status["nodes"] if n["id"] == "Pick"]
    assert pick["fanOut"] == {
        **pick["fanOut"],
        "total": 4,
        "succeeded": 3,
        "failed": 1,
        "failedItems": ["Pick/2"],
    }


def test_job_items_run_a_job_each_with_their_item_in_its_input(cluster: Cluster, runs: Runs, namespace: str):
    cluster.require_kwok()  # (pods played by kwok: they echo their input as their output)
    step = job_task("item")["job"]
    cluster.apply(
        workflow(
            "jobs",
            [{"name": "Each", "forEach": {"items": "input.lines", "maxParallel": 5, "step": {"job": step}}}],
        ),
        namespace=namespace,
    )
    cluster.apply(workflow_run("r", "jobs", {"lines": [f"l{i}" for i in range(20)]}), namespace=namespace)
    wait_phase(cluster, namespace, "r", "Succeeded", timeout=120)
    results = runs.get(namespace, "r")["status"]["output"]["results"]
    assert [r["input"]["item"] for r in results] == [f"l{i}" for i in range(20)]
    assert [r["input"]["index"] for r in results] == list(range(20))
    assert all(r["input"]["input"] == {"lines": [f"l{i}" for i in range(20)]} for r in results)
    jobs = jobs_of(cluster, namespace, "r")
    assert len({j["metadata"]["name"] for j in jobs}) == 20 and all(
        "-each-" in j["metadata"]["name"] for j in jobs
    )


def test_fifty_job_items_get_their_args_rendered_from_their_item_and_the_steps_input(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.require_kwok()
    copy = {
        "image": "registry.example/aws-cli:{{ input.version }}",
        "args": ["s3", "cp", "s3://in/{{ key.name }}", "s3://out/{{ input.day }}/{{ index }}.csv"],
        "env": [{"name": "SIZE", "value": "{{ key.size * 2 }}"}],
    }
    each = {"items": "input.keys", "as": "key", "maxParallel": 10, "step": {"job": copy}}
    cluster.apply(workflow("copies", [{"name": "Copy", "forEach": each}]), namespace=namespace)
    keys = [{"name": f"k{i}.csv", "size": i} for i in range(50)]
    cluster.apply(
        workflow_run("r", "copies", {"keys": keys, "day": "mon", "version": "2"}), namespace=namespace
    )
    wait_phase(cluster, namespace, "r", "Succeeded", timeout=180)
    pods = cluster.get_json("pods", "-n", namespace, "-l", "seqflow.io/run=r")["items"]
    labels = [p["metadata"]["labels"] for p in pods]
    assert {label["seqflow.io/task"] for label in labels} == {"Copy"}
    assert sorted(int(label["seqflow.io/item"]) for label in labels) == list(range(50))
    tasks = [next(c for c in p["spec"]["containers"] if c["name"] == "task") for p in pods]
    rendered = sorted(
        (c["args"], c["image"], next(e["value"] for e in c["env"] if e["name"] == "SIZE")) for c in tasks
    )
    assert rendered == sorted(
        (["s3", "cp", f"s3://in/k{i}.csv", f"s3://out/mon/{i}.csv"], "registry.example/aws-cli:2", str(2 * i))
        for i in range(50)
    )


def test_a_template_over_a_missing_field_fails_the_item_naming_it(
    cluster: Cluster, runs: Runs, namespace: str
):
    step = {"job": {"image": "registry.example/x:1", "args": ["{{ item.path }}"]}, "retry": {"maxRetries": 3}}
    each = {"items": "input.xs", "step": step}
    cluster.apply(workflow("bad-template", [{"name": "Each", "forEach": each}]), namespace=namespace)
    cluster.apply(
        workflow_run("r2", "bad-template", {"xs": [{"path": "a"}, {"name": "b"}]}), namespace=namespace
    )
    wait_phase(cluster, namespace, "r2", "Failed", timeout=60)
    status = runs.get(namespace, "r2")["status"]
    summary = condition(status, "Succeeded")
    assert summary["reason"] == "TaskFailed"
    (each_node,) = [n for n in status["nodes"] if n["id"] == "Each"]
    assert each_node["fanOut"]["failedItems"] == ["Each/1"]
    assert "job args[0] 'item.path' failed: no field 'path'" in summary["message"], summary


def test_sub_workflow_items_run_as_child_runs_and_a_later_failure_undoes_them_the_last_first(
    cluster: Cluster, runs: Runs, namespace: str, tmp_path: Path
):
    cluster.apply(workflow("pack-line", [{"name": "Pack", "handler": "test.note"}]), namespace=namespace)
    each = {"items": "input.lines", "maxParallel": 2, "step": {"workflowRef": {"name": "pack-line"}}}
    ship = {"name": "Ship", "forEach": each, "compensate": {"handler": "test.note"}}
    cluster.apply(
        workflow("ship", [ship, {"name": "Invoice", "handler": "test.permanent"}]), namespace=namespace
    )
    log = tmp_path / "notes.log"
    cluster.apply(workflow_run("r", "ship", {"lines": ["a", "b", "c"], "log": str(log)}), namespace=namespace)
    wait_phase(cluster, namespace, "r", "Failed", timeout=90)
    summary = condition(runs.get(namespace, "r")["status"], "Succeeded")
    assert (summary["reason"], summary["message"]) == (
        "Compensated",
        "Task Invoice failed (permanent error): order ORD-9 does not exist; compensated Ship (3 items)",
    )
    lines = log.read_text().splitlines()
    assert sorted(lines[:3]) == ["Pack 0", "Pack 1", "Pack 2"]  # in the child runs, two at a time
    assert lines[3:] == ["Ship/2:compensate 2", "Ship/1:compensate 1", "Ship/0:compensate 0"]
    children = cluster.get_json("workflowruns", "-n", namespace, "-l", "seqflow.io/parent=r")["items"]
    assert sorted(c["metadata"]["annotations"]["seqflow.io/parent-step"] for c in children) == [
        "Ship/0",
        "Ship/1",
        "Ship/2",
    ]
    assert all(c["status"]["phase"] == "Succeeded" for c in children)


def example(name: str, kind: str) -> dict[str, Any]:
    """The document of `kind` in workflows/NAME.yaml."""
    documents = yaml.safe_load_all((REPO / "workflows" / f"{name}.yaml").read_text())
    return next(d for d in documents if d["kind"] == kind)


def test_the_stock_check_example_asks_each_lines_stock_and_reserves_the_order(
    cluster: Cluster, runs: Runs, namespace: str, operator: OperatorProcess
):
    service = InventoryService(free_port()).start()
    try:
        cluster.apply(example("stock-check", "Workflow"), namespace=namespace)
        run = example("stock-check", "WorkflowRun")
        given = {**run["spec"]["input"], "inventory": f"http://127.0.0.1:{service.server_address[1]}"}
        cluster.apply(workflow_run("stock", "stock-check", given), namespace=namespace)
        wait_phase(cluster, namespace, "stock", "Succeeded", timeout=60)
    finally:
        service.stop()
    assert runs.get(namespace, "stock")["status"]["output"] == {"reservation": "R-ORD-010", "lines": 2}
    retried = [
        e for e in history_of(cluster, operator, namespace, "stock")["activity"] if e["event"] == "TASK_RETRY"
    ]
    assert sorted(e["task"] for e in retried) == ["Stock/0", "Stock/1"]  # each line's first ask was busy
    assert all("answered 503 Service Unavailable" in e["details"]["error"] for e in retried)


def test_the_report_exports_example_runs_a_job_per_day_with_its_args(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.require_kwok()
    cluster.kubectl("apply", "-n", namespace, "-f", str(REPO / "workflows" / "report-exports.yaml"))
    wait_phase(cluster, namespace, "exports-week-49", "Succeeded", timeout=120)
    pods = cluster.get_json("pods", "-n", namespace, "-l", "seqflow.io/run=exports-week-49")["items"]
    args = sorted(p["spec"]["containers"][0]["args"][2] for p in pods)
    days = ["2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03"]
    assert args == [f"s3://acme-analytics/raw/{day}.csv" for day in days]
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"amazon/aws-cli:2.17.0"}
