"""Admission under a Workflow's concurrency limit: its runs start in creation order, at most
`limit` at once; the others wait Queued, told their place. One replica serves all of such a
Workflow's runs (see ownership.py), and within it one worker at a time admits them, so that two
never both take the last free slot."""

from __future__ import annotations

import asyncio

from seqflow.api.bodies import Key, created_at, key_of, run_started
from seqflow.controller.queue import WorkQueue
from seqflow.engine import RunView, WorkflowView
from seqflow.runs.cache import Cache


class Admission:
    def __init__(self, cache: Cache, queue: WorkQueue[Key]) -> None:
        self._cache = cache
        self._queue = queue
        self._locks: dict[Key, asyncio.Lock] = {}  # by (namespace, Workflow)

    def lock(self, namespace: str, workflow: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, workflow), asyncio.Lock())

    def place(self, key: Key, run: RunView, workflow: WorkflowView | None) -> tuple[int, int] | None:
        """(position, of how many) of a run that must wait for a slot; None when it may start."""
        if workflow is None or workflow.spec.concurrency is None or run.status.started:
            return None
        runs = self._cache.runs.of_workflow(key[0], run.spec.workflow_ref.identity)
        active = sum(run_started(body) for body in runs)
        waiting = sorted((created_at(body), key_of(body)[1]) for body in runs if not run_started(body))
        me = (run.created_at, key[1])
        if me not in waiting:
            return None
        place = waiting.index(me)
        free = workflow.spec.concurrency.limit - active
        if place < free:
            return None
        return place - max(free, 0) + 1, len(waiting) - max(free, 0)

    def finished(self, namespace: str, workflow: str) -> None:
        """A run of `workflow` finished or went: the runs queued behind it (if it has a limit) may start."""
        if self._cache.limited(namespace, workflow):
            for key in waiting_for(self._cache, namespace, workflow):
                self._queue.add(key)


def waiting_for(cache: Cache, namespace: str, workflow: str) -> list[Key]:
    """The runs of a Workflow that have not started."""
    return [key_of(body) for body in cache.runs.of_workflow(namespace, workflow) if not run_started(body)]
