"""The operator's metrics: the census of runs a scrape reads (a table of runs and what it counts of
them), and the series Metrics exposes from activity log entries, attempts and the sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from seqflow.api.models import HistoryEvent, HistoryRecord
from seqflow.metrics import Metrics, Sources, WorkflowRuns
from seqflow.runs.census import census

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def body(name: str, *, namespace: str = "ns", ref: dict | None = None, created: float = 0, **status):
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": at(created)},
        "spec": {"workflowRef": ref or {"name": "orders"}},
        "status": status,
    }


def started(phase: str = "Running", *, since: float, nodes=()):
    return {"phase": phase, "pinnedTasks": [], "startedAt": at(since), "nodes": list(nodes)}


def node(phase: str, *, started: float | None = None, finished: float | None = None):
    times = {"startedAt": at(started) if started is not None else None}
    times["finishedAt"] = at(finished) if finished is not None else None
    return {"id": "A", "type": "handler", "phase": phase, **{k: v for k, v in times.items() if v}}


@pytest.mark.parametrize(
    ("bodies", "expected"),
    [
        pytest.param([], [], id="no runs"),
        pytest.param(
            [body("a", created=30), body("b", created=90, phase="Pending")],
            [
                WorkflowRuns(
                    "ns",
                    "orders",
                    waiting=2,
                    oldest_waiting_seconds=90,
                    running=0,
                    longest_without_progress_seconds=0,
                )
            ],
            id="waiting: the oldest's age",
        ),
        pytest.param(
            [
                body(
                    "a",
                    **started(
                        since=600,
                        nodes=[node("Succeeded", started=600, finished=500), node("Running", started=120)],
                    ),
                ),
                body("b", **started(since=50)),
            ],
            [
                WorkflowRuns(
                    "ns",
                    "orders",
                    waiting=0,
                    oldest_waiting_seconds=0,
                    running=2,
                    longest_without_progress_seconds=120,
                )
            ],
            id="running: since a step last started or ended",
        ),
        pytest.param(
            [
                body("a", **started(since=900, nodes=[node("Waiting", started=900)])),
                body("b", **started(since=900, nodes=[node("Retrying", started=900, finished=800)])),
                body("c", **started("Suspended", since=900)),
            ],
            [
                WorkflowRuns(
                    "ns",
                    "orders",
                    waiting=0,
                    oldest_waiting_seconds=0,
                    running=2,
                    longest_without_progress_seconds=0,
                )
            ],
            id="sleeps, signals, backoffs and suspended runs are not stalls",
        ),
        pytest.param(
            [
                body("a", **started("Succeeded", since=900)),
                body("b", **started("Failed", since=900)),
                {
                    **body("c", created=60),
                    "metadata": {**body("c", created=60)["metadata"], "deletionTimestamp": at(1)},
                },
                body("elsewhere", created=60),
            ],
            [],
            id="finished, deleted and other replicas' runs are left out",
        ),
        pytest.param(
            [
                body("a", created=5),
                body("b", namespace="other", created=7),
                body("c", ref={"kind": "ClusterWorkflow", "name": "x"}, created=9),
            ],
            [
                WorkflowRuns(
                    "ns",
                    "ClusterWorkflow/x",
                    waiting=1,
                    oldest_waiting_seconds=9,
                    running=0,
                    longest_without_progress_seconds=0,
                ),
                WorkflowRuns(
                    "ns",
                    "orders",
                    waiting=1,
                    oldest_waiting_seconds=5,
                    running=0,
                    longest_without_progress_seconds=0,
                ),
                WorkflowRuns(
                    "other",
                    "orders",
                    waiting=1,
                    oldest_waiting_seconds=7,
                    running=0,
                    longest_without_progress_seconds=0,
                ),
            ],
            id="by namespace and Workflow",
        ),
    ],
)
def test_census(bodies, expected):
    assert census(bodies, now=NOW, serves=lambda key: key[1] != "elsewhere") == expected


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def record(seq: int, type: HistoryEvent, *, seconds: float = 0, task: str | None = None) -> HistoryRecord:
    return HistoryRecord(seq=seq, type=type, at=NOW + timedelta(seconds=seconds), task=task)


def test_runs_and_tasks_are_counted_by_namespace_workflow_and_step():
    metrics = Metrics(CollectorRegistry())
    entries = [
        record(1, HistoryEvent.WORKFLOW_STARTED),
        record(2, HistoryEvent.TASK_RETRY, task="Pay"),
        record(3, HistoryEvent.WORKFLOW_FAILED, seconds=42),
    ]
    metrics.count(namespace="shop", workflow="orders", started_at=NOW, records=entries)
    metrics.attempt(namespace="shop", workflow="orders", task="Pay", succeeded=False, seconds=0.2)
    got = samples(metrics.registry)
    run = (("namespace", "shop"), ("workflow", "orders"))
    assert got[("seqflow_runs_started_total", run)] == 1
    assert got[("seqflow_runs_finished_total", (*run[:1], ("phase", "Failed"), run[1]))] == 1
    assert got[("seqflow_run_duration_seconds_sum", (*run[:1], ("phase", "Failed"), run[1]))] == 42
    assert got[("seqflow_task_retries_total", (*run[:1], ("task", "Pay"), run[1]))] == 1
    failed = (("namespace", "shop"), ("outcome", "failed"), ("task", "Pay"), ("workflow", "orders"))
    assert got[("seqflow_task_attempt_duration_seconds_count", failed)] == 1


def test_a_run_that_ends_before_it_started_has_no_duration():
    metrics = Metrics(CollectorRegistry())
    metrics.count(
        namespace="shop",
        workflow="orders",
        started_at=None,
        records=[record(1, HistoryEvent.WORKFLOW_CANCELLED)],
    )
    got = samples(metrics.registry)
    assert (
        got[
            (
                "seqflow_runs_finished_total",
                (("namespace", "shop"), ("phase", "Cancelled"), ("workflow", "orders")),
            )
        ]
        == 1
    )
    assert not any(name.startswith("seqflow_run_duration_seconds") for name, _ in got)


def test_without_the_step_label_the_task_metrics_have_none():
    metrics = Metrics(CollectorRegistry(), step_label=False)
    metrics.attempt(namespace="shop", workflow="orders", task="Pay", succeeded=True, seconds=0.2)
    metrics.count(
        namespace="shop",
        workflow="orders",
        started_at=NOW,
        records=[record(1, HistoryEvent.TASK_RETRY, task="Pay")],
    )
    got = samples(metrics.registry)
    assert got[("seqflow_task_retries_total", (("namespace", "shop"), ("workflow", "orders")))] == 1
    ok = (("namespace", "shop"), ("outcome", "succeeded"), ("workflow", "orders"))
    assert got[("seqflow_task_attempt_duration_seconds_count", ok)] == 1


def test_the_sources_are_read_at_each_scrape():
    queue = [
        WorkflowRuns(
            "shop",
            "orders",
            waiting=3,
            oldest_waiting_seconds=12.5,
            running=1,
            longest_without_progress_seconds=4,
        )
    ]
    lapsed = [0]
    metrics = Metrics(CollectorRegistry())
    metrics.watch(
        Sources(
            workflow_runs=lambda: queue,
            pending_history=lambda: 7,
            buckets_held=lambda: 2,
            buckets_expired=lambda: lapsed[0],
        )
    )
    run = (("namespace", "shop"), ("workflow", "orders"))
    got = samples(metrics.registry)
    assert got[("seqflow_runs_waiting", run)] == 3
    assert got[("seqflow_oldest_waiting_run_age_seconds", run)] == 12.5
    assert got[("seqflow_runs_running", run)] == 1
    assert got[("seqflow_longest_run_without_progress_seconds", run)] == 4
    assert got[("seqflow_history_pending_entries", ())] == 7
    assert got[("seqflow_bucket_leases_held", ())] == 2
    assert got[("seqflow_bucket_leases_expired_total", ())] == 0

    queue.clear()
    lapsed[0] = 3
    got = samples(metrics.registry)
    assert not any(name == "seqflow_runs_waiting" for name, _ in got)
    assert got[("seqflow_bucket_leases_expired_total", ())] == 3


def test_one_replica_alone_has_no_lease_metrics():
    metrics = Metrics(CollectorRegistry())
    metrics.watch(Sources(workflow_runs=list, pending_history=lambda: 0))
    assert not any(name.startswith("seqflow_bucket_leases") for name, _ in samples(metrics.registry))
