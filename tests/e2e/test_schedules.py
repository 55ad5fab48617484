"""End to end: WorkflowSchedules firing every minute (Allow, Forbid, Replace, suspended), an
operator restart across a scheduled time, and Forbid holding across SIGKILLs and restarts."""

from __future__ import annotations

import functools
import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.operators import start_operator
from tests.support import Cluster, Runs, condition, wait_for, workflow

pytestmark = pytest.mark.cluster


def schedule(name: str, workflow_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "seqflow.io/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": name},
        "spec": {"schedule": "* * * * *", "runTemplate": {"workflowRef": {"name": workflow_name}}, **spec},
    }


def runs_of(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = cluster.get_json("workflowruns", "-n", namespace, "-l", f"seqflow.io/schedule={name}")["items"]
    return sorted(items, key=lambda r: r["metadata"]["name"])


def minute(at: datetime) -> str:
    return str(int(at.timestamp()) // 60)


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def clear_of_the_minute(margin: float = 15.0) -> None:
    """Sleep past the next minute if it is less than `margin` seconds away."""
    now = datetime.now(UTC)
    if now.second + now.microsecond / 1e6 > 60 - margin:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 1)


@pytest.mark.usefixtures("operator")
def test_schedules_fire_at_the_minute(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow("quick", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    cluster.apply(workflow("gate", [{"name": "Hold", "wait": {"signal": "go"}}]), namespace=namespace)
    clear_of_the_minute()  # all four schedules created within the same minute
    cluster.apply(schedule("every", "quick"), namespace=namespace)
    cluster.apply(schedule("forbid", "gate", concurrencyPolicy="Forbid"), namespace=namespace)
    cluster.apply(schedule("replace", "gate", concurrencyPolicy="Replace"), namespace=namespace)
    cluster.apply(schedule("paused", "quick", suspend=True), namespace=namespace)

    wait_for(lambda: len(runs_of(cluster, namespace, "every")) >= 2, timeout=150, what="two minutes of runs")
    time.sleep(3)  # the other schedules act on the same minute

    every = runs_of(cluster, namespace, "every")
    for run in every:
        at = ts(run["metadata"]["annotations"]["seqflow.io/scheduled-at"])
        assert at.second == 0 and run["metadata"]["name"] == f"every-{minute(at)}"
        created = ts(run["metadata"]["creationTimestamp"])
        assert abs((created - at).total_seconds()) <= 2, (created, at)
        assert run["spec"]["workflowRef"] == {"name": "quick"}
    wait_for(
        lambda: runs.get(namespace, every[0]["metadata"]["name"])["status"].get("phase") == "Succeeded",
        timeout=30,
    )
    status = cluster.get_json("workflowschedule", "every", "-n", namespace)["status"]
    last = ts(status["lastScheduleTime"])
    assert ts(status["nextScheduleTime"]) == last + timedelta(minutes=1)
    assert condition(status, "Ready")["message"].startswith("Next run at ")
    table = cluster.kubectl("get", "swfs", "-n", namespace).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST",
        "SCHEDULE",
        "NEXT",
        "AGE",
    ]

    def next_shown() -> bool:  # the NEXT cell, before AGE, is the time to come (not "<invalid>")
        (row,) = cluster.kubectl("get", "swfs", "every", "-n", namespace, "--no-headers").stdout.splitlines()
        status = cluster.get_json("workflowschedule", "every", "-n", namespace)["status"]
        return row.split()[-2] == status["nextScheduleTime"]

    wait_for(next_shown, timeout=5, what="kubectl get swfs showing the next time")

    def reasons(name: str) -> list[str]:
        selector = f"involvedObject.name={name}"
        return [
            e["reason"]
            for e in cluster.get_json("events", "-n", namespace, "--field-selector", selector)["items"]
        ]

    # the second minute came while the first run waited: skipped
    wait_for(lambda: "Skipped" in reasons("forbid"), timeout=15, what="the Forbid schedule's Skipped event")
    assert len(runs_of(cluster, namespace, "forbid")) == 1

    replace = runs_of(cluster, namespace, "replace")
    assert len(replace) >= 2
    old, new = replace[0], replace[-1]
    assert old["spec"].get("cancel") is True
    wait_for(
        lambda: runs.get(namespace, old["metadata"]["name"])["status"].get("phase") == "Cancelled", timeout=30
    )
    assert runs.get(namespace, new["metadata"]["name"])["status"].get("phase") == "Running"

    assert runs_of(cluster, namespace, "paused") == []
    paused = cluster.get_json("workflowschedule", "paused", "-n", namespace)["status"]
    assert condition(paused, "Ready")["reason"] == "Suspended"


def test_a_restart_across_a_scheduled_time_starts_exactly_one_run_for_it(
    cluster: Cluster, crds: None, database_url: str, operator_kubeconfig, tmp_path
):
    namespace = f"restart-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.apply(workflow("quick", [{"name": "A", "handler": "test.step"}]), namespace=namespace)
    operator = start_operator(operator_kubeconfig, tmp_path / "first.log", "restart-*", database_url)
    try:
        cluster.apply(schedule("tick", "quick"), namespace=namespace)
        wait_for(
            lambda: "status" in cluster.get_json("workflowschedule", "tick", "-n", namespace), timeout=30
        )
        # Stop a few seconds before a minute; start again a few seconds after it.
        now = datetime.now(UTC)
        boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1 if now.second < 50 else 2)
        time.sleep(max(0.0, (boundary - timedelta(seconds=5) - datetime.now(UTC)).total_seconds()))
    finally:
        operator.kill()
    time.sleep(max(0.0, (boundary + timedelta(seconds=5) - datetime.now(UTC)).total_seconds()))
    missed = f"tick-{minute(boundary)}"
    assert missed not in [r["metadata"]["name"] for r in runs_of(cluster, namespace, "tick")]
    restarted = start_operator(operator_kubeconfig, tmp_path / "second.log", "restart-*", database_url)
    try:
        wait_for(
            lambda: missed in [r["metadata"]["name"] for r in runs_of(cluster, namespace, "tick")],
            timeout=30,
            what="the run of the time missed while the operator was down",
        )
        time.sleep(3)
        names = [r["metadata"]["name"] for r in runs_of(cluster, namespace, "tick")]
        assert names.count(missed) == 1
        later = [n for n in names if int(n.rsplit("-", 1)[1]) > int(minute(boundary))]
        assert later == []  # nothing beyond the missed time yet
    finally:
        restarted.stop()


def test_forbid_holds_across_sigkills_at_scheduled_times(
    cluster: Cluster, runs: Runs, crds: None, database_url: str, operator_kubeconfig, tmp_path
):
    """The operator is killed (SIGKILL) two seconds before each of two scheduled times while
    Forbid schedules' runs wait for a signal, and started again at once: it decides those times
    just after starting, before or after its watch has delivered the runs. No run of a schedule
    starts while another is active, and one whose run ended meanwhile goes on at the next time."""
    namespace = f"restart-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.apply(workflow("gate", [{"name": "Hold", "wait": {"signal": "go"}}]), namespace=namespace)
    start = functools.partial(
        start_operator, operator_kubeconfig, namespaces="restart-*", database_url=database_url
    )
    operator = start(log=tmp_path / "operator-0.log")
    try:
        clear_of_the_minute(margin=5)  # both schedules' first runs at the same minute
        for name in SCHEDULES:
            cluster.apply(schedule(name, "gate", concurrencyPolicy="Forbid"), namespace=namespace)
        wait_for(
            lambda: all(names_of(cluster, namespace, n) for n in SCHEDULES), timeout=75, what="first runs"
        )
        (first,) = runs_of(cluster, namespace, "held")
        at = ts(first["metadata"]["annotations"]["seqflow.io/scheduled-at"])
        held, released = f"held-{minute(at)}", f"released-{minute(at)}"

        for restart in (1, 2):
            boundary = at + timedelta(minutes=restart)
            pause_until(boundary - timedelta(seconds=2))
            operator.kill()
            operator = start(log=tmp_path / f"operator-{restart}.log")
            wait_for(
                lambda b=boundary: decided(cluster, namespace) >= b,
                timeout=30,
                what=f"{boundary}'s decisions",
            )
            assert names_of(cluster, namespace, "held") == [held]
            if restart == 1:
                assert names_of(cluster, namespace, "released") == [released]
                send_signal(cluster, namespace, released)
                wait_for(lambda: phase(runs, namespace, released) == "Succeeded", timeout=30)

        # The run that ended freed its schedule: an operator just restarted started the next time.
        assert names_of(cluster, namespace, "released") == [released, f"released-{minute(boundary)}"]
        for name in SCHEDULES:
            assert_never_two_active(runs_of(cluster, namespace, name))
        send_signal(cluster, namespace, held)
        wait_for(lambda: phase(runs, namespace, held) == "Succeeded", timeout=30)
    finally:
        operator.stop()


SCHEDULES = ("held", "released")  # `held`'s run waits throughout; `released`'s is let go midway


def pause_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def decided(cluster: Cluster, namespace: str) -> datetime:
    """The earliest of the schedules' latest times decided on (started or skipped)."""
    times = []
    for item in cluster.get_json("workflowschedules", "-n", namespace)["items"]:
        last = (item.get("status") or {}).get("lastScheduleTime")
        times.append(ts(last) if last else datetime.min.replace(tzinfo=UTC))
    return min(times)


def names_of(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return [r["metadata"]["name"] for r in runs_of(cluster, namespace, name)]


def send_signal(cluster: Cluster, namespace: str, run: str) -> None:
    patch = '{"spec": {"signals": {"go": {}}}}'
    cluster.kubectl("patch", "workflowrun", run, "-n", namespace, "--type=merge", "-p", patch)


def phase(runs: Runs, namespace: str, run: str) -> str | None:
    return (runs.get(namespace, run).get("status") or {}).get("phase")


def assert_never_two_active(items: list[dict[str, Any]]) -> None:
    """Each run was created once the one before it had finished."""
    ordered = sorted(items, key=lambda r: r["metadata"]["creationTimestamp"])
    for before, after in itertools.pairwise(ordered):
        finished = (before.get("status") or {}).get("finishedAt")
        overlap = f"{after['metadata']['name']} started while {before['metadata']['name']} ran"
        assert finished is not None, overlap
        assert ts(after["metadata"]["creationTimestamp"]) >= ts(finished).replace(microsecond=0), overlap
