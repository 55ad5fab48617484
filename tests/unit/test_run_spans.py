"""A run's spans as seqflow records them (into the SDK's in-memory exporter): attempts as siblings
under the run's span, a group's members under the group, backoff waits, the run's own span at
its end, ids derived so that they are the same wherever they are recorded, a caller's trace
continued, a child run's link, and nothing at all with tracing off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, StatusCode

from seqflow.api.models import HistoryEvent, HistoryRecord, NodeStatus, RunPhase, WorkflowRunStatus
from seqflow.runs.traces import RunSpans, run_trace
from seqflow.tracing import CALLER_ANNOTATION, LINK_ANNOTATION, Tracing, caller_annotations, span_id_of

T0 = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
UID = "3f2b8c1e-0d4a-4e55-9a61-7c2d9e0b1a42"
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    return Tracing(exporter)


@pytest.fixture
def spans(tracing: Tracing, exporter: InMemorySpanExporter) -> RunSpans:
    exporter.clear()
    return RunSpans(tracing)


def body(uid: str = UID, **annotations: str) -> dict:
    meta = {"name": "r1", "namespace": "shop", "uid": uid, "annotations": annotations}
    return {"metadata": meta, "spec": {"workflowRef": {"name": "orders"}}, "status": {}}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def recorded(tracing: Tracing, exporter: InMemorySpanExporter) -> dict[str, object]:
    tracing.flush()
    return {span.name: span for span in exporter.get_finished_spans()}


def test_a_runs_attempts_group_backoff_and_end(spans: RunSpans, tracing: Tracing, exporter):
    run = body()
    spans.attempt(run, node="Pay", attempt=1, start=at(0), end=at(1), error="card declined")
    spans.attempt(run, node="Pay", attempt=1, start=at(0), end=at(1), error="card declined")  # seen twice
    spans.attempt(run, node="Pay", attempt=2, start=at(3), end=at(4), error=None)
    spans.attempt(run, node="Ship/Label", attempt=1, start=at(4), end=at(5), error=None)
    status = WorkflowRunStatus(
        phase=RunPhase.SUCCEEDED,
        started_at=at(0),
        nodes=[
            NodeStatus(id="Pay", type="handler", attempts=2, started_at=at(3), next_retry_at=at(3)),
            NodeStatus(id="Ship", type="parallel", started_at=at(4)),
            NodeStatus(id="Nap", type="sleep", started_at=at(5)),
        ],
    )
    entries = [
        HistoryRecord(seq=1, type=HistoryEvent.TASK_RETRY, at=at(1), task="Pay", attempt=1),
        HistoryRecord(seq=2, type=HistoryEvent.TASK_COMPLETED, at=at(6), task="Ship"),
        HistoryRecord(seq=3, type=HistoryEvent.TASK_COMPLETED, at=at(65), task="Nap"),
        HistoryRecord(seq=4, type=HistoryEvent.WORKFLOW_COMPLETED, at=at(66)),
    ]
    spans.written(run, status, entries)

    tracing.flush()
    finished = exporter.get_finished_spans()
    assert sorted(s.name for s in finished) == sorted(
        ["Pay", "Pay", "Pay backoff", "Ship/Label", "Ship", "Nap", "run orders"]
    )
    trace_id = int(UID.replace("-", ""), 16)
    assert {s.context.trace_id for s in finished} == {trace_id}
    root = next(s for s in finished if s.name == "run orders")
    assert root.parent is None and root.context.span_id == span_id_of(UID, "")
    assert (root.end_time - root.start_time) / 1e9 == 66
    pays = sorted((s for s in finished if s.name == "Pay"), key=lambda s: s.start_time)
    assert [s.parent.span_id for s in pays] == [root.context.span_id] * 2  # siblings under the run
    assert [s.attributes["seqflow.attempt"] for s in pays] == [1, 2]
    assert pays[0].status.status_code == StatusCode.ERROR and pays[0].status.description == "card declined"
    group = next(s for s in finished if s.name == "Ship")
    label = next(s for s in finished if s.name == "Ship/Label")
    assert label.parent.span_id == group.context.span_id and group.parent.span_id == root.context.span_id
    backoff = next(s for s in finished if s.name == "Pay backoff")
    assert (backoff.start_time, backoff.end_time) == (
        int(at(1).timestamp() * 1e9),
        int(at(3).timestamp() * 1e9),
    )
    assert root.attributes["seqflow.workflow"] == "orders" and root.attributes["seqflow.namespace"] == "shop"


def test_an_attempts_span_is_known_before_it_ends(spans: RunSpans):
    context = spans.attempt_span(body(), node="Pay", attempt=2).get_span_context()
    assert context.span_id == span_id_of(UID, "Pay", 2)
    assert (
        spans.traceparent(body(), node="Pay", attempt=2)
        == f"00-{UID.replace('-', '')}-{context.span_id:016x}-01"
    )


def test_a_callers_trace_is_continued_and_a_child_links_to_its_parents_step(spans, tracing, exporter):
    started = body(**caller_annotations(CALLER))
    assert started["metadata"]["annotations"] == {CALLER_ANNOTATION: CALLER}
    status = WorkflowRunStatus(phase=RunPhase.FAILED, started_at=at(0))
    spans.written(started, status, [HistoryRecord(seq=1, type=HistoryEvent.WORKFLOW_FAILED, at=at(2))])
    (root,) = recorded(tracing, exporter).values()
    assert f"{root.context.trace_id:032x}" == CALLER.split("-")[1]
    assert f"{root.parent.span_id:016x}" == CALLER.split("-")[2]
    assert root.status.status_code == StatusCode.ERROR

    exporter.clear()
    parent_step = spans.traceparent(body(), node="Ship", attempt=1)
    child = body("8e1d2c3b-4a59-4687-b0a1-c2d3e4f50617", **{LINK_ANNOTATION: parent_step})
    spans.written(child, status, [HistoryRecord(seq=1, type=HistoryEvent.WORKFLOW_FAILED, at=at(2))])
    (root,) = recorded(tracing, exporter).values()
    assert root.context.trace_id == int("8e1d2c3b4a594687b0a1c2d3e4f50617", 16)  # a trace of its own
    (link,) = root.links
    assert link.context.span_id == span_id_of(UID, "Ship", 1)


@pytest.mark.parametrize("header", [None, "", "garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01"])
def test_no_valid_traceparent_no_annotation(header):
    assert caller_annotations(header) == {}


def test_a_status_that_names_its_trace_keeps_it():
    kept = body(**caller_annotations(CALLER))
    kept["status"]["traceId"] = "ab" * 16
    assert run_trace(kept).trace_id == int("ab" * 16, 16)


def test_with_tracing_off_nothing_is_recorded_or_given(exporter):
    exporter.clear()
    off = RunSpans.off()
    off.attempt(body(), node="Pay", attempt=1, start=at(0), end=at(1), error=None)
    off.written(
        body(), WorkflowRunStatus(), [HistoryRecord(seq=1, type=HistoryEvent.WORKFLOW_COMPLETED, at=at(1))]
    )
    assert off.attempt_span(body(), node="Pay", attempt=1) is INVALID_SPAN
    assert off.traceparent(body(), node="Pay", attempt=1) is None and off.trace_id(body()) is None
    assert not exporter.get_finished_spans()
