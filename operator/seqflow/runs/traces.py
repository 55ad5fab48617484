"""A run's spans (see seqflow.tracing), recorded from what the shell learns: a handler, http or
Job attempt's when it ends (the actuator's and the observer's times), the run's, its sleeps',
waits', backoff waits', groups', forEach steps' and sub-workflow steps' from the activity log
entries each status write adds. With tracing off, `RunSpans.off()` records nothing and costs a
check."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, Span

from seqflow.api.bodies import annotations_of, key_of, status_of, uid_of, workflow_of
from seqflow.api.models import (
    HistoryEvent,
    HistoryRecord,
    JsonObject,
    NodeStatus,
    NodeType,
    WorkflowRunStatus,
)
from seqflow.tracing import (
    CALLER_ANNOTATION,
    LINK_ANNOTATION,
    RunTrace,
    Tracing,
    span_id_of,
    trace_of,
    traceparent_of,
)

ENDINGS = {
    HistoryEvent.WORKFLOW_COMPLETED: None,
    HistoryEvent.WORKFLOW_FAILED: "Failed",
    HistoryEvent.WORKFLOW_CANCELLED: "Cancelled",
}
NODE_ENDINGS = {HistoryEvent.TASK_COMPLETED, HistoryEvent.TASK_FAILED, HistoryEvent.TASK_CANCELLED}
WHOLE_NODES = {NodeType.SLEEP, NodeType.WAIT, NodeType.PARALLEL, NodeType.FOR_EACH}  # a span per node


def run_trace(body: JsonObject) -> RunTrace:
    annotations = annotations_of(body)
    return trace_of(
        run_uid=uid_of(body),
        status_trace_id=status_of(body).get("traceId"),
        caller=annotations.get(CALLER_ANNOTATION),
        link=annotations.get(LINK_ANNOTATION),
    )


class RunSpans:
    def __init__(self, tracing: Tracing | None) -> None:
        self._tracing = tracing

    @classmethod
    def off(cls) -> RunSpans:
        return cls(None)

    @property
    def on(self) -> bool:
        return self._tracing is not None

    def trace_id(self, body: JsonObject) -> str | None:
        """What a run's status keeps of its trace (None with tracing off)."""
        return f"{run_trace(body).trace_id:032x}" if self._tracing is not None else None

    def attempt_span(self, body: JsonObject, *, node: str, attempt: int) -> Span:
        """The span of an attempt as its handler is given it (current while it runs)."""
        if self._tracing is None:
            return INVALID_SPAN
        return NonRecordingSpan(run_trace(body).context(span_id_of(uid_of(body), node, attempt)))

    def pod_environment(self, body: JsonObject, *, node: str, attempt: int) -> tuple[tuple[str, str], ...]:
        """What a Job step's pod is given to join the trace: its attempt's span (TRACEPARENT) and
        where to send its own (the standard OTEL_EXPORTER_OTLP_ENDPOINT)."""
        if self._tracing is None:
            return ()
        traceparent = traceparent_of(self.attempt_span(body, node=node, attempt=attempt).get_span_context())
        return (("TRACEPARENT", traceparent), ("OTEL_EXPORTER_OTLP_ENDPOINT", self._tracing.endpoint))

    def traceparent(self, body: JsonObject, *, node: str, attempt: int) -> str | None:
        """An attempt's span as a W3C traceparent (for a child run's link), or None."""
        if self._tracing is None:
            return None
        return traceparent_of(self.attempt_span(body, node=node, attempt=attempt).get_span_context())

    def attempt(
        self, body: JsonObject, *, node: str, attempt: int, start: datetime, end: datetime, error: str | None
    ) -> None:
        if self._tracing is None:
            return
        run = run_trace(body)
        self._tracing.record(
            run,
            name=node,
            span_id=span_id_of(run.run_uid, node, attempt),
            parent=run.context(run.step_parent(node)),
            start=start,
            end=end,
            attributes={**_attributes(body), "seqflow.step": node, "seqflow.attempt": attempt},
            error=error,
        )

    def written(self, body: JsonObject, status: WorkflowRunStatus, records: Iterable[HistoryRecord]) -> None:
        """The spans that a written status's new activity log entries end."""
        if self._tracing is None:
            return
        nodes = {node.id: node for node in status.nodes}
        for record in records:
            node = nodes.get(record.task or "")
            if record.type in ENDINGS:
                self._run(body, status, record)
            elif node is None or node.started_at is None:
                continue
            elif record.type == HistoryEvent.TASK_RETRY and node.next_retry_at is not None:
                name = f"{node.id} backoff"
                span_id = span_id_of(uid_of(body), name, node.attempts)
                self._span(body, node, name=name, span_id=span_id, start=record.at, end=node.next_retry_at)
            elif record.type not in NODE_ENDINGS:
                continue
            elif node.type in WHOLE_NODES:
                error = _error_of(record)
                span_id = span_id_of(uid_of(body), node.id)
                self._span(
                    body,
                    node,
                    name=node.id,
                    span_id=span_id,
                    start=node.started_at,
                    end=record.at,
                    error=error,
                )
            elif node.type == NodeType.WORKFLOW or record.type == HistoryEvent.TASK_CANCELLED:
                # a sub-workflow step's attempt (its child run links to it), or an attempt stopped
                attempt = record.attempt or node.attempts
                error = _error_of(record)
                self.attempt(
                    body, node=node.id, attempt=attempt, start=node.started_at, end=record.at, error=error
                )

    def _run(self, body: JsonObject, status: WorkflowRunStatus, record: HistoryRecord) -> None:
        assert self._tracing is not None
        run = run_trace(body)
        error = ENDINGS[record.type]
        message = status.conditions[0].message if error and status.conditions else None
        self._tracing.record(
            run,
            name=f"run {workflow_of(body)}",
            span_id=run.span_id,
            parent=run.parent,
            start=status.started_at or record.at,
            end=record.at,
            attributes={**_attributes(body), "seqflow.phase": status.phase.value if status.phase else None},
            error=message or error,
            links=[run.link] if run.link is not None else [],
        )

    def _span(
        self,
        body: JsonObject,
        node: NodeStatus,
        *,
        name: str,
        span_id: int,
        start: datetime,
        end: datetime,
        error: str | None = None,
    ) -> None:
        assert self._tracing is not None
        run = run_trace(body)
        self._tracing.record(
            run,
            name=name,
            span_id=span_id,
            parent=run.context(run.step_parent(node.id)),
            start=start,
            end=end,
            attributes={**_attributes(body), "seqflow.step": node.id, "seqflow.kind": node.type.value},
            error=error,
        )


def _error_of(record: HistoryRecord) -> str | None:
    if record.type == HistoryEvent.TASK_COMPLETED:
        return None
    return str(record.details.get("error") or record.details.get("reason") or record.type.value)


def _attributes(body: JsonObject) -> dict[str, str]:
    namespace, name = key_of(body)
    return {"seqflow.namespace": namespace, "seqflow.run": name, "seqflow.workflow": workflow_of(body)}
