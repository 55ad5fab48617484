"""A run's history to the store: written in the background after each status write (the run
comes back to trim the entries written from its status, or later, to try again), and wholly
before a deleted run goes (its finalizer holds it until then)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from seqflow.api.bodies import Key, finalizers_of, uid_of
from seqflow.api.models import JsonObject
from seqflow.controller.queue import WorkQueue
from seqflow.controller.worker import Background
from seqflow.engine import RunView
from seqflow.runs.state import RunStates
from seqflow.runs.view import run_view
from seqflow.runs.writes import RunWriter

FINALIZER = "seqflow.io/history"  # a run is not deleted before its history is written


class HistorySink(Protocol):
    """Where a run's activity log goes (seqflow.history.sync.HistoryWriter, or a test's fake)."""

    async def flush(self, body: JsonObject, run: RunView) -> int | None:
        """The last seq now in the store (0: nothing was pending); None when it is away."""
        ...

    def retry_delay(self, body: JsonObject) -> float: ...

    async def activity(self, namespace: str, name: str, *, uid: str) -> list[JsonObject] | None:
        """The entries the store has of that run ([]: none), or None when it is away."""
        ...

    async def cached(self, namespace: str, workflow: str, key: str) -> tuple[bool, JsonObject | None]:
        """(whether the store answered, the output kept under a cached step's key or None)."""
        ...


@dataclass(frozen=True, kw_only=True)
class HistoryFlush:
    history: HistorySink
    states: RunStates
    queue: WorkQueue[Key]
    writer: RunWriter
    background: Background

    def in_background(self, key: Key, body: JsonObject, run: RunView) -> None:
        """Write the history a written status holds (`run`: the run as written) without holding
        up the run's next task."""
        state = self.states.of(uid_of(body), key)
        pending = run.status.pending_history
        if state.flushing or not pending or pending[-1].seq <= state.flushed:
            return
        state.flushing = True

        async def flush() -> None:
            try:
                written = await self.history.flush(body, run)
            finally:
                state.flushing = False
            if written is None:
                self.queue.add_after(key, self.history.retry_delay(body))
            else:
                state.flushed = max(state.flushed, written)
                self.queue.add(key)

        self.background.spawn(flush())

    async def finalize(self, key: Key, body: JsonObject) -> None:
        """A deleted run goes once the store has its whole history."""
        if await self.history.flush(body, run_view(body)) is None:
            self.queue.add_after(key, self.history.retry_delay(body))
            return  # the store is away: the finalizer holds the run until it is back
        finalizers = [f for f in finalizers_of(body) if f != FINALIZER]
        written = await self.writer.set_finalizers(key, body, finalizers)
        if written is not None and FINALIZER in finalizers_of(written):
            self.queue.add(key)  # changed meanwhile: look again
