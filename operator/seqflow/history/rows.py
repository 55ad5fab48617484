"""The history store's rows as activity log entries make them and as the read API gives them:
the columns of the run, attempt and activity log rows that a batch of entries sets, and the JSON
of the rows read. Times are stored as naive UTC and given in ISO 8601 with a Z."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from seqflow.api.models import HistoryEvent, HistoryRecord, JsonObject, NodePhase, RunPhase
from seqflow.history.tables import RunRow


def naive_utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment is not None else None


def _aware(moment: datetime | None) -> str | None:
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z") if moment else None


_RUN_ENDS = {
    HistoryEvent.WORKFLOW_FAILED: RunPhase.FAILED,
    HistoryEvent.WORKFLOW_CANCELLED: RunPhase.CANCELLED,
}


_RUN_PAUSES = {
    HistoryEvent.RUN_SUSPENDED: RunPhase.SUSPENDED,
    HistoryEvent.RUN_RESUMED: RunPhase.RUNNING,
    HistoryEvent.COMPENSATION_STARTED: RunPhase.COMPENSATING,
    HistoryEvent.FINALLY_STARTED: RunPhase.RUNNING,
}


def run_changes(records: list[HistoryRecord]) -> JsonObject:
    """The run row's columns after applying `records` (in order, at least one)."""
    changes: JsonObject = {"history_seq": records[-1].seq}
    for record in records:
        if record.type == HistoryEvent.WORKFLOW_STARTED:
            changes.update(
                phase=RunPhase.RUNNING.value,
                started_at=naive_utc(record.at),
                workflow_generation=record.details.get("generation"),
                input=record.details.get("input"),  # (a large one: its reference)
            )
        elif record.type == HistoryEvent.WORKFLOW_COMPLETED:
            changes.update(
                phase=RunPhase.SUCCEEDED.value,
                finished_at=naive_utc(record.at),
                output=record.details.get("output"),
            )
        elif record.type in _RUN_ENDS:
            changes.update(
                phase=_RUN_ENDS[record.type].value,
                finished_at=naive_utc(record.at),
                error=record.details.get("message"),
            )
        elif record.type == HistoryEvent.RUN_RETRIED:
            changes.update(phase=RunPhase.RUNNING.value, finished_at=None, error=None)
        elif record.type in _RUN_PAUSES:
            changes.update(phase=_RUN_PAUSES[record.type].value)
    return changes


def attempt_values(run_uid: str, records: list[HistoryRecord]) -> list[JsonObject]:
    """The attempt rows touched by `records`, each with the columns the entries tell."""
    attempts: dict[tuple[str, int], JsonObject] = {}
    for record in records:
        if record.task is None or record.task_index is None or record.attempt is None:
            continue
        row = attempts.setdefault(
            (record.task, record.attempt),
            {
                "run_uid": run_uid,
                "task_index": record.task_index,
                "task": record.task,
                "attempt": record.attempt,
                "phase": NodePhase.RUNNING.value,
            },
        )
        if record.type == HistoryEvent.TASK_STARTED:
            row.update(
                started_at=naive_utc(record.at),
                input=record.details.get("input"),
                executor=record.details.get("executor"),
            )
        elif record.type == HistoryEvent.TASK_COMPLETED:
            row.update(
                phase=NodePhase.SUCCEEDED.value,
                finished_at=naive_utc(record.at),
                output=record.details.get("output"),
            )
        elif record.type in (HistoryEvent.TASK_RETRY, HistoryEvent.TASK_FAILED):
            row.update(
                phase=NodePhase.FAILED.value,
                finished_at=naive_utc(record.at),
                error=record.details.get("error"),
            )
        elif record.type == HistoryEvent.TASK_CANCELLED:
            row.update(phase=NodePhase.CANCELLED.value, finished_at=naive_utc(record.at))
    return list(attempts.values())


def activity_values(run_uid: str, record: HistoryRecord) -> JsonObject:
    return {
        "run_uid": run_uid,
        "seq": record.seq,
        "event": record.type.value,
        "task": record.task,
        "attempt": record.attempt,
        "details": record.details,
        "occurred_at": naive_utc(record.at),
    }


SUMMARY_COLUMNS = (
    RunRow.id,
    RunRow.uid,
    RunRow.namespace,
    RunRow.name,
    RunRow.workflow,
    RunRow.workflow_generation,
    RunRow.phase,
    RunRow.error,
    RunRow.created_at,
    RunRow.started_at,
    RunRow.finished_at,
)


def summary_json(row: Any) -> JsonObject:
    return {
        "uid": row.uid,
        "namespace": row.namespace,
        "name": row.name,
        "workflow": row.workflow,
        "workflowGeneration": row.workflow_generation,
        "phase": row.phase,
        "error": row.error,
        "createdAt": _aware(row.created_at),
        "startedAt": _aware(row.started_at),
        "finishedAt": _aware(row.finished_at),
    }


def run_json(row: Any) -> JsonObject:
    return {**summary_json(row), "input": row.input, "output": row.output}


def attempt_json(row: Any) -> JsonObject:
    return {
        "task": row.task,
        "taskIndex": row.task_index,
        "attempt": row.attempt,
        "executor": row.executor,
        "phase": row.phase,
        "input": row.input,
        "output": row.output,
        "error": row.error,
        "startedAt": _aware(row.started_at),
        "finishedAt": _aware(row.finished_at),
    }


def activity_json(row: Any) -> JsonObject:
    return {
        "seq": row.seq,
        "event": row.event,
        "task": row.task,
        "attempt": row.attempt,
        "details": row.details,
        "at": _aware(row.occurred_at),
    }
