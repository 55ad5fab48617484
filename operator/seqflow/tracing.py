"""OpenTelemetry traces of runs, exported over OTLP (HTTP) when SEQFLOW_TRACING_ENDPOINT is set.

A run is a trace and a span; each step attempt, sleep, wait for a signal, backoff wait, group and
sub-workflow step is a span under it (a group's members and a forEach's items under theirs), and
a child run is a trace of its own linked to its parent's step. Spans are recorded once what they
stand for has ended, from the times the status and the activity log hold; their ids are derived
from the run's uid, the step and the attempt, so a restarted operator or another replica goes on
with the same trace, and an attempt's handler (or its pod, as TRACEPARENT) is given its span's
context before that span ends. A run's trace id is the caller's when it was started with a W3C
`traceparent` (HTTP starts and webhooks keep it in the run's `seqflow.io/traceparent`
annotation), else its uid's 128 bits; its status says which (`status.traceId`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

CALLER_ANNOTATION = "seqflow.io/traceparent"  # the caller's span a run was started under
LINK_ANNOTATION = "seqflow.io/linked-traceparent"  # a child run's: its parent step's attempt
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
AttributeValue = str | int | float | bool
REMEMBERED = 100_000  # spans recorded lately, not recorded again


@dataclass(frozen=True)
class RunTrace:
    """Where a run's spans go: its trace, its own span, and what that span hangs from."""

    trace_id: int
    run_uid: str
    parent: SpanContext | None = None  # the caller's span (a traceparent it was started with)
    link: SpanContext | None = None  # a child run's: its parent run's step attempt

    @property
    def span_id(self) -> int:
        return span_id_of(self.run_uid, "")

    def context(self, span_id: int) -> SpanContext:
        return SpanContext(self.trace_id, span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))

    def step_parent(self, node: str) -> int:
        """The span a node's hangs from: its group's or forEach's (a member or an item), or the run's."""
        return span_id_of(self.run_uid, node.rsplit("/", 1)[0]) if "/" in node else self.span_id


def span_id_of(run_uid: str, node: str, attempt: int | None = None) -> int:
    """The span id of a run (node ""), of a node as a whole (a group, a sleep), or of one attempt."""
    key = f"{run_uid}/{node}" + (f"#{attempt}" if attempt is not None else "")
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") or 1


def parsed_traceparent(value: str | None) -> SpanContext | None:
    """The span a W3C traceparent names, or None when it is absent or not one."""
    found = TRACEPARENT.fullmatch((value or "").strip().lower())
    if found is None or set(found.group(1)) == {"0"} or set(found.group(2)) == {"0"}:
        return None
    flags = TraceFlags(TraceFlags.SAMPLED)
    return SpanContext(int(found.group(1), 16), int(found.group(2), 16), is_remote=True, trace_flags=flags)


def caller_annotations(traceparent: str | None) -> dict[str, str]:
    """The annotation that makes a run started by a request join the request's trace (none when
    the request names none, or not a valid one)."""
    caller = parsed_traceparent(traceparent)
    return {CALLER_ANNOTATION: traceparent_of(caller)} if caller is not None else {}


def traceparent_of(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


def trace_of(*, run_uid: str, status_trace_id: str | None, caller: str | None, link: str | None) -> RunTrace:
    """A run's trace: the one its status names, else its caller's, else its uid's."""
    parent = parsed_traceparent(caller)
    if status_trace_id:
        trace_id = int(status_trace_id, 16)
    elif parent is not None:
        trace_id = parent.trace_id
    else:
        trace_id = int(run_uid.replace("-", ""), 16)
    return RunTrace(trace_id=trace_id, run_uid=run_uid, parent=parent, link=parsed_traceparent(link))


class Tracing:
    """Spans recorded after the fact, batched to the exporter; the process's tracer provider
    too, so that handlers' own spans (and their clients') go the same way."""

    def __init__(self, exporter: SpanExporter, *, endpoint: str = "", service: str = "seqflow") -> None:
        """`endpoint`: where the exporter sends (OTLP over HTTP), for Job steps' pods to send too."""
        self.endpoint = endpoint
        self._provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self._processor = BatchSpanProcessor(exporter, schedule_delay_millis=500)
        self._provider.add_span_processor(self._processor)
        self._recorded: OrderedDict[tuple[int, int], None] = OrderedDict()  # a span once, however often seen
        trace.set_tracer_provider(self._provider)

    @classmethod
    def over_otlp(cls, endpoint: str) -> Tracing:
        base = endpoint.rstrip("/").removesuffix("/v1/traces")
        return cls(OTLPSpanExporter(endpoint=f"{base}/v1/traces"), endpoint=base)

    def record(
        self,
        run: RunTrace,
        *,
        name: str,
        span_id: int,
        parent: SpanContext | None,
        start: datetime,
        end: datetime,
        attributes: Mapping[str, AttributeValue | None],
        error: str | None = None,
        links: Sequence[SpanContext] = (),
    ) -> None:
        if (run.trace_id, span_id) in self._recorded:
            return
        self._recorded[(run.trace_id, span_id)] = None
        if len(self._recorded) > REMEMBERED:
            self._recorded.popitem(last=False)
        status = Status(StatusCode.ERROR, error) if error else Status(StatusCode.UNSET)
        span = ReadableSpan(
            name=name,
            context=run.context(span_id),
            parent=parent,
            resource=self._provider.resource,
            attributes={k: v for k, v in attributes.items() if v is not None},
            links=[Link(context) for context in links],
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=_nanoseconds(start),
            end_time=_nanoseconds(max(end, start)),
        )
        self._processor.on_end(span)

    def flush(self) -> None:
        self._provider.force_flush()

    def close(self) -> None:
        self._provider.shutdown()


@contextlib.contextmanager
def joined_span(
    name: str, *, traceparent: str | None, endpoint: str | None, attributes: Mapping[str, AttributeValue]
) -> Iterator[Span]:
    """A span of this process (a Job step's pod) under the span it was given as a traceparent,
    exported to `endpoint` when it ends; INVALID_SPAN when either is missing."""
    parent = parsed_traceparent(traceparent)
    if parent is None or not endpoint:
        yield INVALID_SPAN
        return
    provider = TracerProvider(resource=Resource.create({"service.name": "seqflow-step"}))
    base = endpoint.rstrip("/").removesuffix("/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    trace.set_tracer_provider(provider)  # the handler's own spans too
    under = trace.set_span_in_context(NonRecordingSpan(parent))
    try:
        with provider.get_tracer("seqflow").start_as_current_span(
            name, context=under, attributes=attributes
        ) as span:
            yield span
    finally:
        provider.shutdown()


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
