"""Table tests of schedule decisions: a schedule, its last time, its runs and the time, and what
`plan_schedule()` must decide (time zones, DST changes, missed times, Forbid and Replace); and
the controller deciding a Forbid or Replace time on the runs the API server lists, not on its
cache (a fake of the API client, the seam it talks through)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from seqflow.api.models import RunPhase, WorkflowScheduleSpec, WorkflowScheduleStatus
from seqflow.engine import PostEvent
from seqflow.engine.schedule import ScheduledRun, plan_schedule, run_name
from seqflow.schedules.controller import SCHEDULED_AT, Scheduler
from tests.clocks import FixedClock


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def spec(**fields: Any) -> WorkflowScheduleSpec:
    return WorkflowScheduleSpec.model_validate(
        {"schedule": "* * * * *", "runTemplate": {"workflowRef": {"name": "wf"}}, **fields}
    )


def run(at: str, phase: RunPhase | None = RunPhase.RUNNING) -> ScheduledRun:
    return ScheduledRun(name=run_name("nightly", utc(at)), scheduled_at=utc(at), phase=phase)


@dataclass(frozen=True)
class Row:
    now: str
    schedule: dict[str, Any] = field(default_factory=dict)
    last: str | None = "2026-11-23 10:00:00"
    runs: tuple[ScheduledRun, ...] = ()
    # expected
    start: str | None = None  # the scheduled time of the run started
    next: str | None = None
    cancel: tuple[str, ...] = ()
    warning: str | None = None
    reason: str = "Scheduled"


ROWS = {
    "a time that came starts its run": Row(
        "2026-11-23 10:01:00.5", start="2026-11-23 10:01", next="2026-11-23 10:02"
    ),
    "not yet": Row("2026-11-23 10:00:45", next="2026-11-23 10:01"),
    "woken a moment before the time: it does not start early, and it is the next one": Row(
        "2026-11-23 10:00:59.998", next="2026-11-23 10:01"
    ),
    "a time already started is not started again": Row(
        "2026-11-23 10:01:02", runs=(run("2026-11-23 10:01"),), next="2026-11-23 10:02"
    ),
    "Allow: runs overlap": Row(
        "2026-11-23 10:01:01",
        runs=(run("2026-11-23 10:00"),),
        start="2026-11-23 10:01",
        next="2026-11-23 10:02",
    ),
    "Forbid: skipped while one runs": Row(
        "2026-11-23 10:01:01",
        {"concurrencyPolicy": "Forbid"},
        runs=(run("2026-11-23 10:00"),),
        next="2026-11-23 10:02",
        warning="Skipped",
    ),
    "Forbid: starts once the other finished": Row(
        "2026-11-23 10:01:01",
        {"concurrencyPolicy": "Forbid"},
        runs=(run("2026-11-23 10:00", RunPhase.SUCCEEDED),),
        start="2026-11-23 10:01",
        next="2026-11-23 10:02",
    ),
    "Replace: the active run is cancelled": Row(
        "2026-11-23 10:01:01",
        {"concurrencyPolicy": "Replace"},
        runs=(run("2026-11-23 10:00"),),
        start="2026-11-23 10:01",
        next="2026-11-23 10:02",
        cancel=(run_name("nightly", utc("2026-11-23 10:00")),),
    ),
    "missed times: only the last one starts": Row(
        "2026-11-23 10:10:20", start="2026-11-23 10:10", next="2026-11-23 10:11"
    ),
    "missed past the starting deadline: none starts": Row(
        "2026-11-23 10:10:40", {"startingDeadlineSeconds": 30}, next="2026-11-23 10:11"
    ),
    "missed within the starting deadline: it starts late": Row(
        "2026-11-23 10:10:20",
        {"startingDeadlineSeconds": 30},
        start="2026-11-23 10:10",
        next="2026-11-23 10:11",
    ),
    "more than 100 missed: a warning, and the last one starts": Row(
        "2026-11-23 12:00:10", start="2026-11-23 12:00", next="2026-11-23 12:01", warning="TooManyMissedTimes"
    ),
    "suspended: nothing starts": Row(
        "2026-11-23 10:05:00.5", {"suspend": True}, next="2026-11-23 10:06", reason="Suspended"
    ),
    "a macro": Row(
        "2026-11-23 11:00:00.5", {"schedule": "@hourly"}, start="2026-11-23 11:00", next="2026-11-23 12:00"
    ),
    "a time zone": Row(
        "2026-06-01 07:00:30",
        {"schedule": "0 9 * * *", "timeZone": "Europe/Amsterdam"},
        last="2026-05-31 07:00",
        start="2026-06-01 07:00",
        next="2026-06-02 07:00",
    ),
    "DST forward: 02:30 does not exist that night, it runs at 03:00": Row(
        "2026-03-29 01:00:30",
        {"schedule": "30 2 * * *", "timeZone": "Europe/Amsterdam"},
        last="2026-03-28 01:30",
        start="2026-03-29 01:00",
        next="2026-03-30 00:30",
    ),
    "DST back: 02:30 comes twice that night, it runs once": Row(
        "2026-10-25 02:00:00",
        {"schedule": "30 2 * * *", "timeZone": "Europe/Amsterdam"},
        last="2026-10-24 00:30",
        start="2026-10-25 00:30",
        next="2026-10-26 01:30",
    ),
    "not a cron expression": Row(
        "2026-11-23 10:01:01", {"schedule": "every minute"}, reason="InvalidSchedule"
    ),
    "not a time zone": Row("2026-11-23 10:01:01", {"timeZone": "Mars/Olympus"}, reason="InvalidSchedule"),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_schedule_decisions(row: Row):
    status = WorkflowScheduleStatus(last_schedule_time=utc(row.last) if row.last else None)
    decision = plan_schedule(
        name="nightly",
        spec=spec(**row.schedule),
        status=status,
        runs=row.runs,
        created_at=utc("2026-01-01 00:00"),
        generation=2,
        now=utc(row.now),
    )
    started = decision.start[1] if decision.start else None
    assert started == (utc(row.start) if row.start else None)
    if decision.start:
        assert decision.start[0] == run_name("nightly", started)  # type: ignore[arg-type]
        assert decision.due == started <= utc(row.now)  # type: ignore[operator]
    assert decision.status.next_schedule_time == (utc(row.next) if row.next else None)
    if row.next:  # the next time is always to come, whatever the moment of the decision
        assert utc(row.next) > utc(row.now)
    assert decision.wake_at == decision.status.next_schedule_time
    assert decision.cancel == row.cancel
    assert (decision.warning[0] if decision.warning else None) == row.warning
    (ready,) = decision.status.conditions
    assert ready.reason == row.reason and decision.status.observed_generation == 2


def test_a_new_schedule_counts_from_its_creation_and_names_runs_by_minute():
    decision = plan_schedule(
        name="nightly", spec=spec(), status=WorkflowScheduleStatus(), runs=(),
        created_at=utc("2026-11-23 10:00:30"), generation=1, now=utc("2026-11-23 10:00:50"),
    )  # fmt: skip
    assert decision.start is None and decision.status.next_schedule_time == utc("2026-11-23 10:01")
    assert (
        run_name("nightly", utc("2026-11-23 10:01"))
        == f"nightly-{int(utc('2026-11-23 10:01').timestamp()) // 60}"
    )


def test_active_runs_are_listed_and_old_finished_ones_deleted_beyond_the_limits():
    base = utc("2026-11-23 09:00")
    phases = (
        [RunPhase.SUCCEEDED] * 5 + [RunPhase.FAILED, RunPhase.CANCELLED, RunPhase.FAILED] + [RunPhase.RUNNING]
    )
    runs = tuple(
        ScheduledRun(name=f"r{i}", scheduled_at=base + timedelta(minutes=i), phase=p)
        for i, p in enumerate(phases)
    )
    decision = plan_schedule(
        name="nightly", spec=spec(successfulRunsHistoryLimit=3, failedRunsHistoryLimit=1),
        status=WorkflowScheduleStatus(last_schedule_time=base + timedelta(minutes=8)), runs=runs,
        created_at=base, generation=1, now=base + timedelta(minutes=8, seconds=30),
    )  # fmt: skip
    assert sorted(decision.delete) == ["r0", "r1", "r5", "r6"]  # the oldest beyond 3 succeeded and 1 failed
    assert decision.status.active == ["r8"] and decision.start is None


def test_the_time_decided_on_is_named_whether_it_starts_or_not():
    def due(now: str, **fields: Any) -> datetime | None:
        runs = (run("2026-11-23 10:00"),)
        return plan_schedule(
            name="nightly", spec=spec(**fields), runs=runs, created_at=utc("2026-01-01 00:00"),
            status=WorkflowScheduleStatus(last_schedule_time=utc("2026-11-23 10:00")), generation=1,
            now=utc(now),
        ).due  # fmt: skip

    assert due("2026-11-23 10:01:01", concurrencyPolicy="Forbid") == utc("2026-11-23 10:01")  # skipped
    assert due("2026-11-23 10:00:30", concurrencyPolicy="Forbid") is None  # none is due
    assert due("2026-11-23 10:01:01", suspend=True) is None


class FakeApi:
    """The API server as the scheduler sees it: the runs it lists, and the writes it is sent."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        self.created: list[str] = []
        self.created_specs: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.statuses: list[dict[str, Any]] = []

    async def list_runs(self, namespace: str, *, label_selector: str) -> list[dict[str, Any]]:
        assert label_selector == "seqflow.io/schedule=nightly"
        return self.runs

    async def create_run(self, namespace: str, run: dict[str, Any]) -> dict[str, Any]:
        self.created.append(run["metadata"]["name"])
        self.created_specs.append(run["spec"])
        return run

    async def patch_run(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        assert patch == {"spec": {"cancel": True}}
        self.cancelled.append(name)
        return {}

    async def patch_schedule_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.statuses.append(patch["status"])
        return {"metadata": {"name": name, "namespace": namespace}, **patch}


class Events:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def post(self, body: dict[str, Any], action: PostEvent) -> None:
        self.reasons.append(str(action.reason))


@pytest.mark.parametrize("policy", ["Forbid", "Replace"])
def test_a_time_under_forbid_or_replace_is_decided_on_the_runs_listed_not_on_the_cache(policy: str):
    """Just after a start, the schedules' watch delivered and the runs' watch has not: the
    cache knows no run, the API server lists one that is still running."""
    now = datetime(2026, 11, 21, 10, 0, 30, tzinfo=UTC)
    previous = now.replace(second=0) - timedelta(minutes=1)
    owner = {"apiVersion": "seqflow.io/v1alpha1", "kind": "WorkflowSchedule", "name": "nightly", "uid": "u1"}
    active = {
        "metadata": {
            "name": run_name("nightly", previous),
            "namespace": "ns",
            "annotations": {SCHEDULED_AT: previous.isoformat()},
            "ownerReferences": [owner],
        },
        "spec": {"workflowRef": {"name": "wf"}},
        "status": {"phase": "Running"},
    }
    schedule = {
        "kind": "WorkflowSchedule",
        "metadata": {
            "name": "nightly",
            "namespace": "ns",
            "uid": "u1",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": policy,
            "runTemplate": {"workflowRef": {"kind": "ClusterWorkflow", "name": "wf"}},
        },
        "status": {"lastScheduleTime": previous.isoformat()},
    }
    api, events = FakeApi([active]), Events()

    async def main() -> None:
        scheduler = Scheduler(api=api, events=events, clock=FixedClock(now))  # type: ignore[arg-type]
        scheduler.start()
        scheduler.on_schedule_event(None, schedule)  # no run event yet
        while not api.statuses:
            await asyncio.sleep(0.01)
        await scheduler.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    name = active["metadata"]["name"]
    if policy == "Forbid":
        assert api.created == [] and "Skipped" in events.reasons
        assert api.statuses[-1]["active"] == [name]
    else:
        assert api.cancelled == [name] and len(api.created) == 1
        assert api.created_specs[0]["workflowRef"] == {"kind": "ClusterWorkflow", "name": "wf"}
