"""The progress journal as the runs' shell uses it (seqflow.history.journal writes it): fast
in-process steps run ahead of a run's written status, each start journaled first, so that a
process that gets the run next (after a restart, or a hand-over between replicas) knows what
was started and how it ended. No run is reconciled before the journal has been read; while it
cannot be, in-process attempts of runs that may have been journaled past their status wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from seqflow.api.models import NodePhase, WorkflowRunStatus
from seqflow.clock import Clock
from seqflow.controller.queue import backoff
from seqflow.engine import INTERRUPTED, AttemptResult, RunHandler
from seqflow.history.journal import Journaled
from seqflow.history.store import JournalEntry
from seqflow.runs.state import RunState

logger = logging.getLogger(__name__)
ALL_RETRIES = 2**31 - 1  # forget the entries of every retry of a run


class Journal(Protocol):
    """The progress journal (seqflow.history.journal.Journal, or a test's fake)."""

    writer: str  # who this process is in the journal

    @property
    def available(self) -> bool: ...

    async def write(self, entries: Sequence[JournalEntry]) -> bool: ...

    def forget(self, run_uid: str, *, retried: int) -> None: ...

    def forget_own(self) -> None: ...

    async def load(self) -> Journaled | None: ...


class Progress:
    def __init__(
        self, journal: Journal, *, clock: Clock, on_known: Callable[[], None], read_seconds: float = 10.0
    ) -> None:
        """`on_known` is called when the journal can be read again after `read_seconds` of
        failures (the runs held meanwhile may go on)."""
        self._journal = journal
        self._clock = clock
        self._on_known = on_known
        self._read_seconds = read_seconds
        self._entries: Journaled = {}  # what other processes journaled of runs that came here
        self._read = asyncio.Event()
        self.unknown = False  # the journal could not be read for `read_seconds`
        self._reading: asyncio.Task[None] | None = None
        self._read_again = False

    @property
    def available(self) -> bool:
        """Whether the journal takes entries now (if not, nothing is journaled past a status)."""
        return self._journal.available

    def read(self) -> None:
        """Runs come to this process: none is reconciled before the journal has been read."""
        if not self.unknown:
            self._read.clear()
        if self._reading is not None:
            self._read_again = True  # read it once more when this read is done
            return
        self._reading = asyncio.create_task(self._read_all(), name="seqflow-journal-read")

    async def wait_read(self) -> None:
        while not self._read.is_set():  # (cleared again while a worker woke up)
            await self._read.wait()

    async def stop(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)

    async def _read_all(self) -> None:
        try:
            again = True
            while again:
                self._read_again = False
                self._entries = await self._load()
                again = self._read_again
        finally:
            self._reading = None
            self._read.set()

    async def _load(self) -> Journaled:
        """The journal, once it can be read. After `read_seconds` of failures the runs go on,
        with their in-process attempts held until it has been read."""
        deadline = self._clock.monotonic() + self._read_seconds
        failures = 0
        while (journaled := await self._journal.load()) is None:
            failures += 1
            if not self.unknown and self._clock.monotonic() >= deadline:
                logger.warning(
                    "the progress journal cannot be read: in-process attempts wait until it can "
                    "(condition ProgressUnknown); the rest goes on"
                )
                self.unknown = True
                self._read.set()
            delay = backoff(failures, first=0.5, limit=self._read_seconds)
            if not self.unknown:  # the runs go on at the deadline, not a backoff past it
                delay = min(delay, max(deadline - self._clock.monotonic(), 0.0))
            await asyncio.sleep(delay)
        if self.unknown:
            self.unknown = False
            logger.info("the progress journal has been read: in-process attempts go on")
            self._on_known()
        return journaled

    def unknown_for(self, state: RunState, status: WorkflowRunStatus) -> bool:
        """Whether another process may have journaled the run's progress past its status while the
        journal cannot be read: not once its status said nothing was (what this process does
        with it from then on it knows)."""
        if not self.unknown:
            return False
        if not status.progress_journaled:
            state.progress_known = True
        return not state.progress_known

    def take_ends(self, uid: str, state: RunState, status: WorkflowRunStatus) -> None:
        """Running attempts that nobody here executes, and that the journal says ended: ended so."""
        journaled = self._entries.get(uid)
        if not journaled:
            return
        for node in status.nodes:
            attempt = (node.id, node.attempts)
            ended = journaled.get((status.retried, *attempt))
            if node.phase == NodePhase.RUNNING and ended is not None and attempt not in state.running:
                state.results.setdefault(attempt, ended)

    def started_elsewhere(self, uid: str, state: RunState, action: RunHandler, *, retried: int) -> bool:
        """Whether the journal has the attempt (another process started it): then its result
        waits as if it had run here, how it ended or, when it did not, interrupted."""
        journaled = self._entries.get(uid, {})
        entry = (retried, action.node, action.attempt)
        if entry not in journaled:
            return False
        ended = journaled.pop(entry)
        interrupted = AttemptResult(node=action.node, attempt=action.attempt, error=INTERRUPTED)
        state.results[(action.node, action.attempt)] = ended or interrupted
        return True

    async def journal_starts(
        self,
        uid: str,
        state: RunState,
        *,
        ended: list[AttemptResult],
        ended_in: int,
        starts: list[RunHandler],
        retried: int,
    ) -> bool:
        """Journal the attempts about to start before their status is written, with the ends
        that lead to them; False when the journal cannot take them (write the status first)."""
        writer = self._journal.writer
        entries = [
            JournalEntry(
                run_uid=uid, retried=ended_in, node=r.node, attempt=r.attempt, writer=writer, result=r
            )
            for r in ended
        ]
        entries += [
            JournalEntry(run_uid=uid, retried=retried, node=a.node, attempt=a.attempt, writer=writer)
            for a in starts
        ]
        if not await self._journal.write(entries):
            return False
        state.journaled = True
        return True

    def forget(self, uid: str, state: RunState | None, *, retried: int) -> None:
        """The run finished (its retries up to `retried`) or went: its entries are not needed."""
        if (state is not None and state.journaled) or uid in self._entries:
            if state is not None:
                state.journaled = False
            self._entries.pop(uid, None)
            self._journal.forget(uid, retried=retried)

    def forget_own(self) -> None:
        """Runs went to another replica: what this process journaled is read back like another's."""
        self._journal.forget_own()
