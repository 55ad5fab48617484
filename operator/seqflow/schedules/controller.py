"""The WorkflowSchedule controller: the I/O shell around `plan_schedule()`.

Watch events of schedules and of their runs (labelled `seqflow.io/schedule`) update a cache and
enqueue the schedule; one worker (seqflow.controller.worker) decides and acts: start the run
that is due (named from its scheduled time: creating it twice finds the first), cancel runs a
Replace supersedes (their spec.cancel, as a user would), delete finished runs beyond the
history limits, write the status, and wake again at the next time. Nothing polls.

A time under Forbid or Replace is decided on the runs the API server lists at that moment, not
on the cache (see `Scheduler._runs_listed`): the cache may not hold a run yet.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from seqflow.api.bodies import run_phase, spec_of, status_of
from seqflow.api.manifests import owner_reference, workflow_run
from seqflow.api.models import (
    ConcurrencyPolicy,
    JsonObject,
    WorkflowScheduleSpec,
    WorkflowScheduleStatus,
    shortened_name,
)
from seqflow.clock import Clock, SystemClock
from seqflow.cluster.events import EventRecorder
from seqflow.cluster.kube import ApiError, Conflict, Forbidden, Invalid, KubeApi, NotFound
from seqflow.controller.queue import WorkQueue
from seqflow.controller.worker import Permanent, Workers
from seqflow.engine import EventType, PostEvent
from seqflow.engine.schedule import ScheduleDecision, ScheduledRun, plan_schedule
from seqflow.executors.jobs import MANAGED_BY

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, schedule name)
LABEL_SCHEDULE = "seqflow.io/schedule"  # for users' selectors; the owner reference decides
SCHEDULED_AT = "seqflow.io/scheduled-at"  # annotation of a run: the time it was due


@dataclass
class _Schedule:
    body: JsonObject
    runs: dict[str, ScheduledRun]


class Scheduler:
    def __init__(
        self,
        *,
        api: KubeApi,
        events: EventRecorder,
        owns: Callable[[str, str], bool] = lambda ns, name: True,
        clock: Clock | None = None,
    ) -> None:
        self._api = api
        self._events = events
        self._owns = owns  # whether this replica serves the schedule (namespace, name)
        self._clock = clock or SystemClock()
        self._schedules: dict[Key, _Schedule] = {}
        self._orphans: dict[Key, dict[str, ScheduledRun]] = {}  # runs seen before their schedule
        self._queue: WorkQueue[Key] = WorkQueue()
        self._workers = Workers(queue=self._queue, reconcile=self._reconcile, what="schedule")

    def start(self) -> None:
        """One worker: one schedule at a time (their decisions are small)."""
        self._workers.start(1, name="seqflow-scheduler")

    async def stop(self) -> None:
        await self._workers.stop()

    def take_owned(self) -> None:
        """Schedules came to this replica: look at each (their timers were the old owner's)."""
        for key in self._schedules:
            if self._owns(*key):
                self._queue.add(key)

    # ----- events from Kopf -----

    def on_schedule_event(self, event_type: str | None, body: JsonObject) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self._schedules.pop(key, None)
            self._workers.forget(key)
            return
        known = self._schedules.get(key)
        runs = known.runs if known else self._orphans.pop(key, {})
        self._schedules[key] = _Schedule(body=body, runs=runs)
        self._queue.add(key)

    def on_run_event(self, event_type: str | None, body: JsonObject) -> None:
        owned = _scheduled_run(body)
        if owned is None:
            return
        name, run = owned
        key = (body["metadata"]["namespace"], name)
        schedule = self._schedules.get(key)
        if event_type == "DELETED":
            (schedule.runs if schedule else self._orphans.get(key, {})).pop(run.name, None)
        else:
            (schedule.runs if schedule else self._orphans.setdefault(key, {}))[run.name] = run
        if schedule is not None:
            self._queue.add(key)

    # ----- deciding and acting -----

    async def _reconcile(self, key: Key) -> None:
        schedule = self._schedules.get(key)
        if schedule is None or not self._owns(*key):
            return
        body = schedule.body
        try:
            spec = WorkflowScheduleSpec.model_validate(spec_of(body))
            status = WorkflowScheduleStatus.model_validate(status_of(body))
        except ValidationError as error:
            raise Permanent(f"its spec or status is not one seqflow reads: {error}") from None
        now = self._clock.now()
        decision = _decide(body, spec, status, runs=list(schedule.runs.values()), now=now)
        if decision.due is not None and spec.concurrency_policy != ConcurrencyPolicy.ALLOW:
            decision = _decide(body, spec, status, runs=await self._runs_listed(key), now=now)
        await self._act(key, body, spec, decision)
        if decision.status != status:
            await self._write_status(key, decision.status)
        if decision.wake_at is not None:
            delay = (decision.wake_at - self._clock.now()).total_seconds()
            self._queue.add_after(key, max(delay, 0.0))

    async def _runs_listed(self, key: Key) -> list[ScheduledRun]:
        """The schedule's runs as the API server lists them now (its label, then its owner
        reference), for deciding a time under Forbid or Replace.

        Whether a run is active is what those policies rest on, and the cache cannot vouch for
        it: after a start (a restart, a replica taking a bucket over) the schedules' watch may
        deliver before the runs' watch has. Waiting for the runs' first list instead would need
        a signal Kopf does not give, and would still trust a watch that lags. A consistent list
        (no resourceVersion) is exact whatever the cache holds, and cheap: it is made only when
        a time is due, once per scheduled time of such a schedule. Allow needs no list: runs may
        overlap, and a time started twice finds its run by name."""
        namespace, name = key
        selector = f"{LABEL_SCHEDULE}={shortened_name(name)}"
        runs = await self._api.list_runs(namespace, label_selector=selector)
        return [run for owner, run in filter(None, map(_scheduled_run, runs)) if owner == name]

    async def _act(
        self, key: Key, body: JsonObject, spec: WorkflowScheduleSpec, decision: ScheduleDecision
    ) -> None:
        namespace = key[0]
        if decision.warning is not None:
            self._events.post(body, PostEvent(EventType.WARNING, *decision.warning))
        for name in decision.cancel:
            with contextlib.suppress(NotFound):
                await self._api.patch_run(namespace, name, {"spec": {"cancel": True}})
            self._events.post(body, PostEvent(EventType.NORMAL, "Replaced", f"Cancelled {name} (Replace)"))
        if decision.start is not None:
            name, at = decision.start
            try:
                await self._api.create_run(namespace, _run_manifest(body, spec, name=name, at=at))
                self._events.post(body, PostEvent(EventType.NORMAL, "Started", f"Started {name}"))
            except Conflict:  # started before: the name is the time's
                pass
            except (Invalid, Forbidden) as error:  # no retry helps: say so, and go on to the next time
                message = f"The run {name} was refused: {error.message}"
                self._events.post(body, PostEvent(EventType.WARNING, "RunRefused", message))
        for name in decision.delete:
            with contextlib.suppress(NotFound):
                await self._api.delete_run(namespace, name)

    async def _write_status(self, key: Key, status: WorkflowScheduleStatus) -> None:
        wire = status.to_wire()
        wire.setdefault("active", [])  # a merge patch replaces the list; an empty one too
        for field in ("lastScheduleTime", "nextScheduleTime"):
            wire.setdefault(field, None)
        try:
            written = await self._api.patch_schedule_status(*key, {"status": wire})
        except NotFound:
            return
        except ApiError as error:
            logger.warning("could not write the status of WorkflowSchedule %s/%s: %s", *key, error)
            raise
        schedule = self._schedules.get(key)
        if schedule is not None:
            schedule.body = written


def _decide(
    body: JsonObject,
    spec: WorkflowScheduleSpec,
    status: WorkflowScheduleStatus,
    *,
    runs: list[ScheduledRun],
    now: datetime,
) -> ScheduleDecision:
    meta = body["metadata"]
    return plan_schedule(
        name=meta["name"],
        spec=spec,
        status=status,
        runs=runs,
        created_at=datetime.fromisoformat(meta["creationTimestamp"]),
        generation=meta.get("generation", 1),
        now=now,
    )


def _scheduled_run(body: JsonObject) -> tuple[str, ScheduledRun] | None:
    """(the name of the schedule that owns the run, the run as observed), or None for a run no
    schedule started."""
    meta = body["metadata"]
    owners = meta.get("ownerReferences") or []
    name = next((o["name"] for o in owners if o.get("kind") == "WorkflowSchedule"), None)
    at = (meta.get("annotations") or {}).get(SCHEDULED_AT)
    if name is None or at is None:
        return None
    run = ScheduledRun(
        name=meta["name"],
        scheduled_at=datetime.fromisoformat(at),
        phase=run_phase(body),
        cancelled=bool(spec_of(body).get("cancel")),
    )
    return name, run


def _run_manifest(schedule: JsonObject, spec: WorkflowScheduleSpec, *, name: str, at: datetime) -> JsonObject:
    meta = schedule["metadata"]
    template = spec.run_template
    metadata = {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {**(template.labels or {}), **MANAGED_BY, LABEL_SCHEDULE: shortened_name(meta["name"])},
        "annotations": {SCHEDULED_AT: at.isoformat()},
        "ownerReferences": [owner_reference(kind="WorkflowSchedule", name=meta["name"], uid=meta["uid"])],
    }
    return workflow_run(workflow=template.workflow_ref, input=template.input, metadata=metadata)
