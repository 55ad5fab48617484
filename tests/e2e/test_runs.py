"""End to end: WorkflowRuns applied with kubectl, executed by the operator, read back from the API."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from tests.support import REPO, Cluster, Runs, condition, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def kubectl_wait(cluster: Cluster, namespace: str, name: str, condition: str, timeout: int = 60):
    cluster.kubectl(
        "wait", "-n", namespace, f"workflowrun/{name}", f"--for={condition}", f"--timeout={timeout}s"
    )


def test_three_tasks_run_in_order_and_pass_data_on(cluster: Cluster, runs: Runs, namespace: str):
    steps = [{"name": n, "handler": "test.step"} for n in ("Reserve", "Charge", "Ship")]
    cluster.apply(workflow("three", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "three", {"order": "ORD-1", "sleep": 0.5}), namespace=namespace)

    history = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=60)
    kubectl_wait(cluster, namespace, "r1", "condition=Succeeded")

    # Task by task: whenever N tasks had succeeded, the carried output had passed through them.
    outputs = {s["progress"]: s.get("output") for s in history if "progress" in s}
    assert outputs["1/3"]["trail"] == ["Reserve"] and outputs["1/3"]["step"] == 1
    assert outputs["2/3"]["trail"] == ["Reserve", "Charge"] and outputs["2/3"]["step"] == 2
    final = runs.get(namespace, "r1")["status"]
    assert final["output"] == {
        "order": "ORD-1",
        "sleep": 0.5,
        "trail": ["Reserve", "Charge", "Ship"],
        "step": 3,
    }
    # While a task ran, the status named it and the ones before it had succeeded.
    running = [
        (s["current"], [t["phase"] for t in s["nodes"]]) for s in history if s.get("phase") == "Running"
    ]
    assert (["Charge"], ["Succeeded", "Running"]) in running
    # Strictly sequential: each task starts no earlier than the one before it finished.
    tasks = final["nodes"]
    for before, after in itertools.pairwise(tasks):
        assert ts(before["finishedAt"]) <= ts(after["startedAt"])
    assert [t["attempts"] for t in tasks] == [1, 1, 1]
    assert final["progress"] == "3/3" and final["retries"] == 0
    assert final["workflowGeneration"] == 1 and final["observedGeneration"] == 1

    table = cluster.kubectl("get", "workflowruns", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "WORKFLOW", "PHASE", "TASK", "PROGRESS", "RETRIES", "REASON", "AGE"]
    assert row.split()[:5] == ["r1", "three", "Succeeded", "3/3", "0"]


def test_retrying_task_shows_attempts_and_growing_backoff(cluster: Cluster, runs: Runs, namespace: str):
    retry = {"maxRetries": 3, "backoffSeconds": 1, "backoffFactor": 2}
    cluster.apply(
        workflow("flaky", [{"name": "Pay", "handler": "test.flaky", "retry": retry}]), namespace=namespace
    )
    cluster.apply(workflow_run("r1", "flaky", {"fail_attempts": 3}), namespace=namespace)

    history = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Succeeded", timeout=60)

    retrying = [s for s in history if s.get("nodes") and s["nodes"][0]["phase"] == "Retrying"]
    by_attempt = {s["nodes"][0]["attempts"]: s for s in retrying}
    assert sorted(by_attempt) == [1, 2, 3]
    first = by_attempt[1]
    assert first["phase"] == "Running" and first["current"] == ["Pay"] and first["retries"] == 0
    assert first["nodes"][0]["lastError"] == "RuntimeError: flaky failure on attempt 1"
    assert condition(first)["reason"] == "TaskRetrying"
    assert "retry 1 of 3" in condition(first)["message"]
    # Attempt k+1 starts when attempt k's backoff ends and fails at once, so the distance
    # between consecutive retry times is the next delay: 2 s, then 4 s.
    retry_at = [ts(by_attempt[k]["nodes"][0]["nextRetryAt"]) for k in (1, 2, 3)]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(retry_at)]
    assert 2 <= gaps[0] < 2.5 and 4 <= gaps[1] < 4.5, gaps

    final = runs.get(namespace, "r1")["status"]
    assert final["nodes"][0]["attempts"] == 4 and final["retries"] == 3
    assert "nextRetryAt" not in final["nodes"][0]
    row = cluster.kubectl("get", "workflowrun", "r1", "-n", namespace, "--no-headers").stdout.split()
    assert row[1:5] == ["flaky", "Succeeded", "1/1", "3"]


def test_exhausted_retries_fail_run_with_error_in_condition(cluster: Cluster, runs: Runs, namespace: str):
    tasks = [
        {"name": "Charge", "handler": "test.fail", "retry": {"maxRetries": 2, "backoffSeconds": 0.2}},
        {"name": "Ship", "handler": "test.step"},
    ]
    cluster.apply(workflow("doomed", tasks), namespace=namespace)
    cluster.apply(workflow_run("r1", "doomed", {"error": "card declined"}), namespace=namespace)

    kubectl_wait(cluster, namespace, "r1", "jsonpath={.status.phase}=Failed")
    status = runs.get(namespace, "r1")["status"]
    cond = condition(status)
    assert cond["status"] == "False" and cond["reason"] == "TaskFailed"
    assert "Charge" in cond["message"] and "card declined" in cond["message"]
    assert "3 attempts" in cond["message"]
    assert [t["phase"] for t in status["nodes"]] == ["Failed"]  # Ship never started
    assert status["nodes"][0]["attempts"] == 3
    assert status["nodes"][0]["lastError"] == "RuntimeError: card declined"
    events = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        "involvedObject.name=r1",
        "-o",
        "jsonpath={range .items[*]}{.reason}{'\\n'}{end}",
    ).stdout.split()
    assert events.count("TaskRetrying") == 2 and "TaskFailed" in events


def test_permanent_error_fails_without_retrying(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow("perm", [{"name": "Lookup", "handler": "test.permanent"}]), namespace=namespace)
    cluster.apply(workflow_run("r1", "perm"), namespace=namespace)
    kubectl_wait(cluster, namespace, "r1", "jsonpath={.status.phase}=Failed")
    status = runs.get(namespace, "r1")["status"]
    assert status["nodes"][0]["attempts"] == 1
    assert "permanent error" in condition(status)["message"]
    assert "ORD-9 does not exist" in condition(status)["message"]


def test_output_that_is_not_an_object_fails_the_attempt(cluster: Cluster, runs: Runs, namespace: str):
    task = {"name": "Bad", "handler": "test.not_an_object", "retry": {"maxRetries": 0}}
    cluster.apply(workflow("bad-output", [task]), namespace=namespace)
    cluster.apply(workflow_run("r1", "bad-output"), namespace=namespace)
    kubectl_wait(cluster, namespace, "r1", "jsonpath={.status.phase}=Failed")
    assert "not a JSON object" in condition(runs.get(namespace, "r1")["status"])["message"]


def test_unknown_workflow_fails_with_clear_reason(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow_run("r1", "no-such-workflow"), namespace=namespace)
    history = runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Failed", timeout=30)
    assert any(s.get("phase") == "Pending" for s in history), history
    pending = next(s for s in history if s.get("phase") == "Pending")
    assert condition(pending)["reason"] == "WaitingForWorkflow"
    cond = condition(history[-1])
    assert cond["reason"] == "WorkflowNotFound"
    assert 'Workflow "no-such-workflow" not found' in cond["message"]


def test_run_applied_before_its_workflow_waits_for_it(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow_run("r1", "late"), namespace=namespace)
    runs.watch(namespace, "r1", until=lambda s: s.get("phase") == "Pending", timeout=30)
    cluster.apply(workflow("late", [{"name": "Only", "handler": "test.step"}]), namespace=namespace)
    kubectl_wait(cluster, namespace, "r1", "condition=Succeeded")


def test_unknown_handler_fails_before_any_task_runs(cluster: Cluster, runs: Runs, namespace: str):
    tasks = [{"name": "First", "handler": "test.step"}, {"name": "Second", "handler": "no.such.handler"}]
    cluster.apply(workflow("typo", tasks), namespace=namespace)
    cluster.apply(workflow_run("r1", "typo"), namespace=namespace)
    kubectl_wait(cluster, namespace, "r1", "jsonpath={.status.phase}=Failed")
    status = runs.get(namespace, "r1")["status"]
    cond = condition(status)
    assert cond["reason"] == "HandlerNotFound"
    assert 'task Second: no handler registered as "no.such.handler"' in cond["message"]
    assert status["nodes"] == []


def test_run_keeps_the_definition_it_started_with(cluster: Cluster, runs: Runs, namespace: str):
    steps = [{"name": n, "handler": "test.step"} for n in ("A", "B")]
    cluster.apply(workflow("pinned", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "pinned", {"sleep": 1}), namespace=namespace)
    runs.watch(namespace, "r1", until=lambda s: s.get("current") == ["A"], timeout=30)
    changed = [{"name": n, "handler": "test.step"} for n in ("X", "Y", "Z")]
    cluster.apply(workflow("pinned", changed), namespace=namespace)
    kubectl_wait(cluster, namespace, "r1", "condition=Succeeded")
    status = runs.get(namespace, "r1")["status"]
    assert status["output"]["trail"] == ["A", "B"]
    assert status["workflowGeneration"] == 1


def test_examples_succeed(cluster: Cluster, runs: Runs, namespace: str):
    for path in sorted((REPO / "workflows").glob("*.yaml")):
        cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    for name in ("order-001", "refund-001", "onboarding-alice"):
        kubectl_wait(cluster, namespace, name, "condition=Succeeded")
    kubectl_wait(cluster, namespace, "refund-002-late", "jsonpath={.status.phase}=Failed")
    late = condition(runs.get(namespace, "refund-002-late")["status"])
    assert "refunds are possible within 30 days" in late["message"]
    order = runs.get(namespace, "order-001")["status"]
    assert order["retries"] == 1  # the flaky payment gateway, as the demo shows
    assert order["output"]["email"] == "receipt for ORD-001 sent"


def test_when_skips_a_step_and_passes_its_input_on(cluster: Cluster, runs: Runs, namespace: str):
    steps = [
        {"name": "Validate", "handler": "test.step"},
        {"name": "FraudCheck", "handler": "test.step", "when": "input.amount > 1000"},
        {"name": "Ship", "handler": "test.step"},
    ]
    cluster.apply(workflow("orders", steps), namespace=namespace)
    cluster.apply(workflow_run("small", "orders", {"amount": 5}), namespace=namespace)
    cluster.apply(workflow_run("big", "orders", {"amount": 5000}), namespace=namespace)
    for name in ("small", "big"):
        kubectl_wait(cluster, namespace, name, "condition=Succeeded")

    small = runs.get(namespace, "small")["status"]
    assert [(n["id"], n["phase"]) for n in small["nodes"]] == [
        ("Validate", "Succeeded"),
        ("FraudCheck", "Skipped"),
        ("Ship", "Succeeded"),
    ]
    assert small["output"]["trail"] == ["Validate", "Ship"] and small["progress"] == "3/3"
    assert runs.get(namespace, "big")["status"]["output"]["trail"] == ["Validate", "FraudCheck", "Ship"]


def test_sleep_waits_then_passes_its_input_on(cluster: Cluster, runs: Runs, namespace: str):
    steps = [
        {"name": "Order", "handler": "test.step"},
        {"name": "Cooldown", "sleep": {"seconds": 2}},
        {"name": "Remind", "handler": "test.step"},
    ]
    cluster.apply(workflow("cooldown", steps), namespace=namespace)
    cluster.apply(workflow_run("r1", "cooldown"), namespace=namespace)
    kubectl_wait(cluster, namespace, "r1", "condition=Succeeded")
    status = runs.get(namespace, "r1")["status"]
    nap = status["nodes"][1]
    assert (nap["id"], nap["type"], nap["phase"]) == ("Cooldown", "sleep", "Succeeded")
    assert 2 <= (ts(nap["finishedAt"]) - ts(nap["startedAt"])).total_seconds() < 4
    assert status["output"]["trail"] == ["Order", "Remind"]


def test_input_schema_refuses_a_bad_input_at_start(cluster: Cluster, runs: Runs, namespace: str):
    schema = {"type": "object", "required": ["order_id"], "properties": {"amount": {"type": "number"}}}
    cluster.apply(
        workflow("typed", [{"name": "Only", "handler": "test.step"}], inputSchema=schema), namespace=namespace
    )
    cluster.apply(workflow_run("bad", "typed", {"amount": "lots"}), namespace=namespace)
    cluster.apply(workflow_run("good", "typed", {"order_id": "O-1", "amount": 3}), namespace=namespace)
    kubectl_wait(cluster, namespace, "bad", "jsonpath={.status.phase}=Failed")
    cond = condition(runs.get(namespace, "bad")["status"])
    assert cond["reason"] == "InputInvalid" and "$.amount: 'lots' is not of type 'number'" in cond["message"]
    kubectl_wait(cluster, namespace, "good", "condition=Succeeded")


def test_workflow_status_says_whether_its_runs_can_run(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow("good", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    bad = [{"name": "A", "handler": "test.step", "when": "input.n >"}, {"name": "B", "handler": "no.such"}]
    cluster.apply(workflow("bad", bad), namespace=namespace)
    for name, ready in (("good", "True"), ("bad", "False")):
        cluster.kubectl(
            "wait", "-n", namespace, f"workflow/{name}", f"--for=condition=Ready={ready}", "--timeout=30s"
        )
    table = cluster.kubectl("get", "workflows", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "READY", "REASON"]
    assert table[1].split()[:3] == ["bad", "False", "HandlerNotFound"] and table[2].split()[:3] == [
        "good",
        "True",
        "Valid",
    ]
    status = cluster.get_json("workflow", "bad", "-n", namespace)["status"]
    assert status["observedGeneration"] == 1
    cluster.apply(workflow_run("r1", "bad"), namespace=namespace)
    kubectl_wait(cluster, namespace, "r1", "jsonpath={.status.phase}=Failed")
    assert condition(runs.get(namespace, "r1")["status"])["reason"] == "HandlerNotFound"
