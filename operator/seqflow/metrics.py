"""Prometheus metrics of the operator, registered on a registry passed in (never at import).

Run and task counters are fed from the activity log entries of each status the reconciler
writes, so they count exactly the transitions the history records. The gauges of each
Workflow's runs are computed when scraped, from the runs this replica serves. Labels name
namespaces, Workflows and steps, never runs, so their number is bounded by the definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from seqflow.api.models import HistoryEvent, HistoryRecord

ATTEMPT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
RUN_BUCKETS = (0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
RUN_ENDINGS = {
    HistoryEvent.WORKFLOW_COMPLETED: "Succeeded",
    HistoryEvent.WORKFLOW_FAILED: "Failed",
    HistoryEvent.WORKFLOW_CANCELLED: "Cancelled",
}


@dataclass(frozen=True)
class WorkflowRuns:
    """One Workflow's unfinished runs in one namespace, as a scrape reads them."""

    namespace: str
    workflow: str
    waiting: int  # not started yet (queued behind a concurrency limit, or not yet taken up)
    oldest_waiting_seconds: float  # 0 when none waits
    running: int  # started and not finished (suspended ones left out)
    longest_without_progress_seconds: float  # of the running ones not waiting on a timer or signal


@dataclass(frozen=True)
class Sources:
    """What the scrape-time metrics read: the runs of each Workflow, and the bucket Leases."""

    workflow_runs: Callable[[], Iterable[WorkflowRuns]]
    pending_history: Callable[[], int]
    buckets_held: Callable[[], int] | None = None  # None: one replica alone, no Leases
    buckets_expired: Callable[[], int] | None = None


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, step_label: bool = True) -> None:
        """`step_label` False leaves the step label out of the task metrics (for Workflows with
        very many steps)."""
        self.registry = registry
        self._step_label = step_label
        task = ["task"] if step_label else []
        self.runs_started = Counter(
            "seqflow_runs_started", "WorkflowRuns started.", ["namespace", "workflow"], registry=registry
        )
        self.runs_finished = Counter(
            "seqflow_runs_finished",
            "WorkflowRuns finished, by phase (Succeeded, Failed, Cancelled).",
            ["namespace", "workflow", "phase"],
            registry=registry,
        )
        self.run_durations = Histogram(
            "seqflow_run_duration_seconds",
            "From a WorkflowRun's start to its end, by phase.",
            ["namespace", "workflow", "phase"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.task_attempts = Histogram(
            "seqflow_task_attempt_duration_seconds",
            "Duration of task attempts, by outcome (succeeded, failed).",
            ["namespace", "workflow", *task, "outcome"],
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.task_retries = Counter(
            "seqflow_task_retries",
            "Failed task attempts that will be retried.",
            ["namespace", "workflow", *task],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "seqflow_reconcile_errors", "Reconciliations that failed and will be retried.", registry=registry
        )
        self.api_requests = Histogram(
            "seqflow_kubernetes_api_request_duration_seconds",
            "Kubernetes API requests made by seqflow's own client, by verb, resource and status code.",
            ["verb", "resource", "code"],
            buckets=API_BUCKETS,
            registry=registry,
        )

    def watch(self, sources: Sources) -> None:
        """Register the metrics computed when scraped."""
        self.registry.register(_Sampled(sources))

    def count(
        self, *, namespace: str, workflow: str, started_at: datetime | None, records: Iterable[HistoryRecord]
    ) -> None:
        """Count a written status's new activity log entries (a run ended: its duration)."""
        for record in records:
            if record.type == HistoryEvent.WORKFLOW_STARTED:
                self.runs_started.labels(namespace, workflow).inc()
            elif (phase := RUN_ENDINGS.get(record.type)) is not None:
                self.runs_finished.labels(namespace, workflow, phase).inc()
                if started_at is not None:
                    seconds = max((record.at - started_at).total_seconds(), 0.0)
                    self.run_durations.labels(namespace, workflow, phase).observe(seconds)
            elif record.type == HistoryEvent.TASK_RETRY:
                self.task_retries.labels(namespace, workflow, *self._task(record.task or "")).inc()

    def attempt(self, *, namespace: str, workflow: str, task: str, succeeded: bool, seconds: float) -> None:
        outcome = "succeeded" if succeeded else "failed"
        self.task_attempts.labels(namespace, workflow, *self._task(task), outcome).observe(seconds)

    def _task(self, task: str) -> tuple[str, ...]:
        return (task,) if self._step_label else ()


class _Sampled(Collector):
    """The gauges (and the Lease counter) read from the operator's state at each scrape."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        labels = ["namespace", "workflow"]
        waiting = GaugeMetricFamily(
            "seqflow_runs_waiting", "WorkflowRuns not started yet (the queue), by Workflow.", labels=labels
        )
        oldest = GaugeMetricFamily(
            "seqflow_oldest_waiting_run_age_seconds",
            "Age of the oldest WorkflowRun not started yet, by Workflow.",
            labels=labels,
        )
        running = GaugeMetricFamily(
            "seqflow_runs_running", "WorkflowRuns started and not finished, by Workflow.", labels=labels
        )
        stalled = GaugeMetricFamily(
            "seqflow_longest_run_without_progress_seconds",
            "Of a Workflow's running runs not waiting on a sleep, a signal or a retry's backoff, the "
            "longest time since one of a run's steps started or ended.",
            labels=labels,
        )
        for runs in self._sources.workflow_runs():
            values = [runs.namespace, runs.workflow]
            waiting.add_metric(values, runs.waiting)
            oldest.add_metric(values, runs.oldest_waiting_seconds)
            running.add_metric(values, runs.running)
            stalled.add_metric(values, runs.longest_without_progress_seconds)
        yield from (waiting, oldest, running, stalled)
        yield GaugeMetricFamily(
            "seqflow_history_pending_entries",
            "Activity log entries waiting in run statuses to be written to the history store.",
            value=self._sources.pending_history(),
        )
        if self._sources.buckets_held is not None:
            yield GaugeMetricFamily(
                "seqflow_bucket_leases_held",
                "Run buckets whose Lease this replica holds.",
                value=self._sources.buckets_held(),
            )
        if self._sources.buckets_expired is not None:
            yield CounterMetricFamily(
                "seqflow_bucket_leases_expired",
                "Run buckets this replica lost because it could not renew their Lease in time "
                "(not the ones it handed over).",
                value=self._sources.buckets_expired(),
            )
