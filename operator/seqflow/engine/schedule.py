"""Schedule decisions: `plan_schedule()` turns a WorkflowSchedule, its runs and the time into its
new status and what to do (start a run, cancel or delete runs, wake up later).

Cron expressions are read by `cronsim` (5 fields; the @ macros are its fields spelled out), in
the schedule's time zone: a time that does not exist on a DST change runs at the next moment
that does, a repeated hour runs once. Missed times follow CronJob: only the most recent one
starts, and only within `startingDeadlineSeconds` when that is set. Runs are named from their
scheduled time, so deciding twice (a restart) never starts a time twice. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from seqflow.api.models import (
    FINISHED,
    ConcurrencyPolicy,
    ConditionStatus,
    RunPhase,
    WorkflowScheduleSpec,
    WorkflowScheduleStatus,
    shortened_name,
)
from seqflow.engine.plan import READY, set_condition

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_MISSED = 100  # more missed times than this: CronJob's warning, and only the last one starts


@dataclass(frozen=True)
class ScheduledRun:
    """A run of the schedule, as observed."""

    name: str
    scheduled_at: datetime
    phase: RunPhase | None
    cancelled: bool = False


@dataclass(frozen=True)
class ScheduleDecision:
    status: WorkflowScheduleStatus
    due: datetime | None = None  # the time decided on (started now, skipped, or started before)
    start: tuple[str, datetime] | None = None  # (run name, scheduled time)
    cancel: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    wake_at: datetime | None = None
    warning: tuple[str, str] | None = None  # (reason, message) for an Event


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be read."""


def next_times(spec: WorkflowScheduleSpec, after: datetime, *, reverse: bool = False) -> CronSim:
    """The schedule's times after `after` (before it, with `reverse`), in its time zone."""
    try:
        zone = ZoneInfo(spec.time_zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"timeZone {spec.time_zone!r} is not an IANA time zone") from None
    expression = MACROS.get(spec.schedule.strip(), spec.schedule)
    try:
        return CronSim(expression, after.astimezone(zone), reverse=reverse)
    except CronSimError as error:
        raise ScheduleError(f"schedule {spec.schedule!r} is not a cron expression: {error}") from None


def run_name(schedule: str, at: datetime) -> str:
    """`<schedule>-<minutes since 1970>` (CronJob's naming): one name per scheduled time."""
    return shortened_name(f"{schedule}-{int(at.timestamp()) // 60}", limit=253)


def plan_schedule(
    *,
    name: str,
    spec: WorkflowScheduleSpec,
    status: WorkflowScheduleStatus,
    runs: Sequence[ScheduledRun],
    created_at: datetime,
    generation: int,
    now: datetime,
) -> ScheduleDecision:
    """Decide what the schedule does now."""
    try:
        due, missed, upcoming = _times(spec, since=status.last_schedule_time or created_at, now=now)
    except ScheduleError as error:
        conditions = set_condition(
            status.conditions, ConditionStatus.FALSE, "InvalidSchedule", str(error), now, type=READY
        )
        new = status.model_copy(update={"conditions": conditions, "observed_generation": generation})
        return ScheduleDecision(status=new)
    active = [r for r in runs if r.phase not in FINISHED]
    start: tuple[str, datetime] | None = None
    cancel: tuple[str, ...] = ()
    warning: tuple[str, str] | None = None
    last = status.last_schedule_time
    if missed > MAX_MISSED and not spec.suspend:
        warning = (
            "TooManyMissedTimes",
            f"more than {MAX_MISSED} times were missed; only the last one starts",
        )
    if due is not None and not spec.suspend:
        last = due
        name_due = run_name(name, due)
        if any(r.name == name_due for r in runs):
            pass  # started before (a decision taken twice)
        elif spec.concurrency_policy == ConcurrencyPolicy.FORBID and active:
            warning = ("Skipped", f"{_at(due)} skipped: {', '.join(r.name for r in active)} still running")
        else:
            if spec.concurrency_policy == ConcurrencyPolicy.REPLACE:
                cancel = tuple(r.name for r in active if not r.cancelled)
            start = (name_due, due)
    keep = _kept(spec, runs)
    delete = tuple(r.name for r in runs if r.phase in FINISHED and r.name not in keep)
    names = [r.name for r in active] + ([start[0]] if start else [])
    reason, message = ("Suspended", "Suspended: no run starts") if spec.suspend else ("Scheduled", "")
    if not spec.suspend and upcoming is not None:
        message = f"Next run at {_at(upcoming)}"
    conditions = set_condition(status.conditions, ConditionStatus.TRUE, reason, message, now, type=READY)
    new = status.model_copy(
        update={
            "last_schedule_time": last,
            "next_schedule_time": upcoming,
            "active": names,
            "conditions": conditions,
            "observed_generation": generation,
        }
    )
    return ScheduleDecision(
        status=new,
        due=due if not spec.suspend else None,
        start=start,
        cancel=cancel,
        delete=delete,
        wake_at=upcoming,
        warning=warning,
    )


def _times(
    spec: WorkflowScheduleSpec, *, since: datetime, now: datetime
) -> tuple[datetime | None, int, datetime | None]:
    """(the most recent time in (since, now], within the starting deadline; how many times there
    were in that span, counted up to just past MAX_MISSED; the next time after now).

    Times fall on whole seconds, and cronsim's reverse walk yields those before the second it
    starts from: starting from the second after `now`'s own, the latest is never after `now`,
    so a worker woken a moment early neither starts a time early nor names it as the next."""
    earliest = since
    if spec.starting_deadline_seconds is not None:
        earliest = max(earliest, now - timedelta(seconds=spec.starting_deadline_seconds))
    latest = next(next_times(spec, now.replace(microsecond=0) + timedelta(seconds=1), reverse=True), None)
    upcoming = next(next_times(spec, now), None)
    due = latest if latest is not None and latest > earliest else None
    missed = 0
    if due is not None:
        for time in next_times(spec, earliest):
            if time > now or missed > MAX_MISSED:
                break
            missed += 1
    return _utc(due), missed, _utc(upcoming)


def _utc(time: datetime | None) -> datetime | None:
    return time.astimezone(UTC) if time is not None else None


def _kept(spec: WorkflowScheduleSpec, runs: Sequence[ScheduledRun]) -> set[str]:
    newest = sorted((r for r in runs if r.phase in FINISHED), key=lambda r: r.scheduled_at, reverse=True)
    succeeded = [r.name for r in newest if r.phase == RunPhase.SUCCEEDED]
    failed = [r.name for r in newest if r.phase != RunPhase.SUCCEEDED]
    return set(succeeded[: spec.successful_runs_history_limit]) | set(
        failed[: spec.failed_runs_history_limit]
    )


def _at(time: datetime) -> str:
    return time.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
