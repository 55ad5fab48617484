"""What the metrics read of the runs this replica serves, at each scrape: per Workflow, how many
wait to start and since when, how many run, and how long the stillest of those has gone without
a step starting or ending (the ones waiting on a sleep, a signal or a backoff wait by design)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from seqflow.api.bodies import (
    Key,
    created_at,
    deleting,
    key_of,
    run_finished,
    run_started,
    status_of,
    workflow_of,
)
from seqflow.api.models import JsonObject, NodePhase, RunPhase
from seqflow.metrics import WorkflowRuns

WAITING_BY_DESIGN = {NodePhase.WAITING.value, NodePhase.RETRYING.value}


@dataclass
class _Tally:
    waiting: int = 0
    oldest_waiting_seconds: float = 0.0
    running: int = 0
    longest_without_progress_seconds: float = 0.0


def census(
    bodies: Iterable[JsonObject], *, now: datetime, serves: Callable[[Key], bool]
) -> list[WorkflowRuns]:
    """The unfinished runs of `bodies` that this replica serves, by namespace and Workflow."""
    tallies: dict[tuple[str, str], _Tally] = {}
    for body in bodies:
        if run_finished(body) or deleting(body) or not serves(key_of(body)):
            continue
        tally = tallies.setdefault((key_of(body)[0], workflow_of(body)), _Tally())
        if not run_started(body):
            tally.waiting += 1
            age = (now - created_at(body)).total_seconds()
            tally.oldest_waiting_seconds = max(tally.oldest_waiting_seconds, age)
        elif status_of(body).get("phase") != RunPhase.SUSPENDED.value:
            tally.running += 1
            since = last_progress(status_of(body))
            if since is not None:
                still = (now - since).total_seconds()
                tally.longest_without_progress_seconds = max(tally.longest_without_progress_seconds, still)
    return [
        WorkflowRuns(namespace=namespace, workflow=workflow, **vars(tally))
        for (namespace, workflow), tally in sorted(tallies.items())
    ]


def last_progress(status: JsonObject) -> datetime | None:
    """When a step of the run last started or ended (or the run started); None while one of its
    steps waits by design."""
    nodes = status.get("nodes") or []
    if any(node.get("phase") in WAITING_BY_DESIGN for node in nodes):
        return None
    moments = [status.get("startedAt")]
    moments += [node.get(field) for node in nodes for field in ("startedAt", "finishedAt")]
    return max((datetime.fromisoformat(moment) for moment in moments if moment), default=None)
