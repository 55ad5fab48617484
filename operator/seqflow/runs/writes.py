"""Writing a run: its status as planned (a merge patch guarded by the resourceVersion it was
planned from), its finalizers, and the failure paths of a status that cannot be written (too
large for etcd) or read (edited by hand). Each written status is logged and counted by the
transitions it made, and wakes the run's parent when its phase changed."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from seqflow.api.bodies import (
    Key,
    deleting,
    finalizers_of,
    key_of,
    run_finished,
    run_phase,
    status_of,
    version_of,
)
from seqflow.api.models import HistoryRecord, JsonObject, Reason, WorkflowRunStatus
from seqflow.clock import Clock
from seqflow.cluster.events import EventRecorder
from seqflow.cluster.kube import Conflict, EntityTooLarge, KubeApi, NotFound
from seqflow.controller.queue import WorkQueue
from seqflow.engine import Decision, EventType, PostEvent, RunView, fail_unrecordable
from seqflow.executors.jobs import run_of
from seqflow.metrics import Metrics
from seqflow.runs.cache import RunCache
from seqflow.runs.traces import RunSpans
from seqflow.runs.view import run_view

logger = logging.getLogger(__name__)
Written = tuple[JsonObject, Decision | None] | None  # the body and decision written; see `write`


def status_patch(old: JsonObject, new: JsonObject) -> JsonObject:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`."""
    patch: JsonObject = {key: None for key in old.keys() - new.keys()}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = status_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before or key not in old:
            patch[key] = value
    return patch


def wake_parent(queue: WorkQueue[Key], child: JsonObject, before: JsonObject | None) -> None:
    """A child run whose phase changed (as seen, or as written): its parent has news."""
    parent = run_of(child)
    if parent is not None and (before is None or run_phase(before) != run_phase(child)):
        queue.add((key_of(child)[0], parent), urgent=run_finished(child))


@dataclass(frozen=True, kw_only=True)
class RunWriter:
    api: KubeApi
    runs: RunCache
    queue: WorkQueue[Key]
    events: EventRecorder
    metrics: Metrics
    clock: Clock
    spans: RunSpans

    async def write(self, key: Key, body: JsonObject, run: RunView, decision: Decision) -> Written:
        """Write a decision's status. Returns the written body and the decision (when the status
        was too large, the smaller one that failed the run instead); the body as it is now and
        no decision after a conflict; None when the run is gone or can take no status at all."""
        try:
            return await self._write_decision(key, body, run, decision)
        except EntityTooLarge as error:
            return await self._fail_too_large(key, body, run, error)

    async def _write_decision(self, key: Key, body: JsonObject, run: RunView, decision: Decision) -> Written:
        if self.spans.on and decision.status.trace_id is None:
            traced = decision.status.model_copy(update={"trace_id": self.spans.trace_id(body)})
            decision = replace(decision, status=traced)
        try:
            written = await self._write_status(key, body, decision.status)
        except NotFound:
            return None
        except Conflict:
            fresh = await self.reread(key)
            return (fresh, None) if fresh is not None else None
        self._report(key, run, decision.status)
        self.spans.written(written, decision.status, _new_entries(run, decision.status))
        return written, decision

    async def _fail_too_large(
        self, key: Key, body: JsonObject, run: RunView, error: EntityTooLarge
    ) -> Written:
        """The planned status did not fit in etcd: fail the run with a smaller one; when even
        that does not fit (the spec alone is too large), say so in an Event and stop."""
        logger.warning("the status of run %s/%s is too large to write: %s", *key, error.message)
        failed = fail_unrecordable(
            run, reason=Reason.RUN_TOO_LARGE, message=_too_large(error), now=self.clock.now()
        )
        try:
            return await self._write_decision(key, body, run, failed)
        except EntityTooLarge:
            self.give_up_too_large(key, body, error)
            return None

    def give_up_too_large(self, key: Key, body: JsonObject, error: EntityTooLarge) -> None:
        """The run object cannot take a single byte more: say so where it can be seen, once."""
        logger.warning("run %s/%s is too large to take any change; giving up on it", *key)
        self.events.post(body, PostEvent(EventType.WARNING, Reason.RUN_TOO_LARGE, _too_large(error)))

    async def fail_unreadable(self, key: Key, body: JsonObject, problem: str) -> JsonObject | None:
        """Replace a status seqflow cannot read with one that says so: the run has failed."""
        logger.warning("run %s/%s has a status seqflow cannot read: %s", *key, problem)
        seq = status_of(body).get("historySeq")
        fresh = WorkflowRunStatus(history_seq=seq if isinstance(seq, int) and seq > 0 else 0)
        decision = fail_unrecordable(
            run_view(body, status=fresh),
            reason=Reason.STATUS_INVALID,
            message=f"The run's status cannot be read: {problem}",
            now=self.clock.now(),
        )
        try:
            written = await self._write_status(key, body, decision.status)
        except NotFound:
            return None
        except Conflict:
            return await self.reread(key)
        for action in decision.actions:
            if isinstance(action, PostEvent):
                self.events.post(written, action)
        return written

    async def reread(self, key: Key) -> JsonObject | None:
        try:
            body = await self.api.get_run(*key)
        except NotFound:
            return None
        self.runs.refresh(body)
        return body

    async def set_finalizers(self, key: Key, body: JsonObject, finalizers: list[str]) -> JsonObject | None:
        """Set the run's finalizers (guarded by its resourceVersion); on a conflict, the run as
        it is now, for another look."""
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": version_of(body)}}
        try:
            written = await self.api.patch_run(*key, patch)
        except NotFound:
            return None
        except Conflict:
            return await self.reread(key)
        if deleting(written) and not finalizers_of(written):
            self.runs.drop(key)  # gone now: its DELETED event may have been taken already
        else:
            self.runs.wrote(written)
        return written

    async def _write_status(self, key: Key, body: JsonObject, new: WorkflowRunStatus) -> JsonObject:
        patch = {
            "metadata": {"resourceVersion": version_of(body)},
            "status": status_patch(status_of(body), new.to_wire()),
        }
        written = await self.api.patch_run_status(*key, patch)
        self.runs.wrote(written)
        wake_parent(self.queue, written, body)  # its echo will not
        return written

    def _report(self, key: Key, run: RunView, written: WorkflowRunStatus) -> None:
        """Log and count the transitions a written status made (its new activity log entries)."""
        workflow = run.spec.workflow_ref.identity
        new = _new_entries(run, written)
        self.metrics.count(namespace=key[0], workflow=workflow, started_at=written.started_at, records=new)
        for entry in new:
            error = entry.details.get("error") or entry.details.get("message")
            logger.info(
                "%s %s",
                entry.type.value,
                workflow,
                extra={
                    "namespace": key[0],
                    "run": key[1],
                    "task": entry.task,
                    "attempt": entry.attempt,
                    "event": entry.type.value,
                    "error": error,
                },
            )


def _new_entries(run: RunView, written: WorkflowRunStatus) -> list[HistoryRecord]:
    return [r for r in written.pending_history if r.seq > run.status.history_seq]


def _too_large(error: EntityTooLarge) -> str:
    return (
        f"The run no longer fits in the object etcd stores ({error.message}): keep the Workflow's "
        "Job templates and the run's inline input and signals small"
    )
