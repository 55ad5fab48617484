"""Prometheus metrics of the operator, registered on a registry passed in (never at import).

Run and task counters are fed from the activity log entries of each status the reconciler
writes, so they count exactly the transitions the history records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from seqflow.api.models import HistoryEvent, HistoryRecord

ATTEMPT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.runs_started = Counter(
            "seqflow_runs_started", "WorkflowRuns started.", ["workflow"], registry=registry
        )
        self.runs_finished = Counter(
            "seqflow_runs_finished",
            "WorkflowRuns finished, by outcome.",
            ["workflow", "phase"],
            registry=registry,
        )
        self.task_attempts = Histogram(
            "seqflow_task_attempt_duration_seconds",
            "Duration of task attempts, by outcome (succeeded, failed).",
            ["workflow", "task", "outcome"],
            buckets=ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.task_retries = Counter(
            "seqflow_task_retries",
            "Failed task attempts that will be retried.",
            ["workflow", "task"],
            registry=registry,
        )
        self.runs_active = Gauge(
            "seqflow_runs_active",
            "WorkflowRuns started and not finished, as this operator sees them.",
            registry=registry,
        )
        self.history_pending = Gauge(
            "seqflow_history_pending_entries",
            "Activity log entries waiting in run statuses to be written to the history store.",
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

    def watch_runs(self, *, active: Callable[[], int], pending_history: Callable[[], int]) -> None:
        """Gauges computed when scraped, from the operator's cache of runs."""
        self.runs_active.set_function(active)
        self.history_pending.set_function(pending_history)

    def count(self, workflow: str, records: Iterable[HistoryRecord]) -> None:
        for record in records:
            if record.type == HistoryEvent.WORKFLOW_STARTED:
                self.runs_started.labels(workflow).inc()
            elif record.type == HistoryEvent.WORKFLOW_COMPLETED:
                self.runs_finished.labels(workflow, "Succeeded").inc()
            elif record.type == HistoryEvent.WORKFLOW_FAILED:
                self.runs_finished.labels(workflow, "Failed").inc()
            elif record.type == HistoryEvent.WORKFLOW_CANCELLED:
                self.runs_finished.labels(workflow, "Cancelled").inc()
            elif record.type == HistoryEvent.TASK_RETRY:
                self.task_retries.labels(workflow, record.task or "").inc()

    def attempt(self, *, workflow: str, task: str, succeeded: bool, seconds: float) -> None:
        outcome = "succeeded" if succeeded else "failed"
        self.task_attempts.labels(workflow, task, outcome).observe(seconds)
