"""The progress journal: what a run's status does not say yet about its in-process attempts.

With SEQFLOW_WRITE_DELAY_SECONDS above 0, a string of fast in-process steps reaches the run's
status in one write. So that an operator that dies before that write runs no attempt twice and
no step again after a later one, each attempt's start, with the ends of the attempts it follows,
is appended here first, in one short transaction shared by every run that journals at that
moment. An operator reads the journal before it reconciles runs that come to it (at its start, or
with a bucket): an attempt the journal says ended is not run again (its result is taken as it
was), one that only started is interrupted (and retried as a new attempt), as if the status had
said so.

Until the schema has the journal's table (`open`), and while the database is away, `write`
answers False at once and nothing starts before its start is in the status: runs go on at a
status write per step.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from sqlalchemy.exc import SQLAlchemyError

from seqflow.clock import Clock, SystemClock
from seqflow.engine import AttemptResult
from seqflow.history.store import HistoryStore, JournalEntry

logger = logging.getLogger(__name__)

# By run uid: (retried, node, attempt) -> how the attempt ended, or None when it only started.
Journaled = dict[str, dict[tuple[int, str, int], AttemptResult | None]]


class Journal:
    def __init__(
        self, store: HistoryStore, *, pause_seconds: float = 5.0, clock: Clock | None = None
    ) -> None:
        """`pause_seconds`: after a failed write, how long `write` answers False without trying."""
        self._store = store
        self._pause = pause_seconds
        self._clock = clock or SystemClock()
        self.writer = uuid.uuid4().hex  # what this process wrote since it last forgot is not read back
        self._away_until = float("inf")  # until `open`
        self._entries: list[JournalEntry] = []
        self._forget: list[tuple[str, int]] = []
        self._waiting: list[asyncio.Future[bool]] = []
        self._flushing: asyncio.Task[None] | None = None
        # One transaction at a time (entries that come meanwhile go in the next; concurrent ones
        # would deadlock on the index, as those of two replicas may: the store tries again), in a
        # thread of its own (never behind the history's writes).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="seqflow-journal")

    def forget_own(self) -> None:
        """This process dropped what it knew of some runs: from now on it reads back what it
        wrote so far, like another process's entries."""
        self.writer = uuid.uuid4().hex

    @property
    def available(self) -> bool:
        """Whether `write` would try to write (it may still fail)."""
        return self._clock.monotonic() >= self._away_until

    def open(self) -> None:
        """The schema has the journal's table: take entries from now on."""
        self._away_until = 0.0

    async def write(self, entries: Sequence[JournalEntry]) -> bool:
        """Append `entries`: True once they are durable, False when they could not be written."""
        if self._clock.monotonic() < self._away_until:
            return False
        written: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._entries += entries
        self._waiting.append(written)
        self._flush_soon()
        return await written

    def forget(self, run_uid: str, *, retried: int) -> None:
        """The run finished (in its `retried`-th retry) or went: its entries go, with the next
        write (on failure they stay, never read for an attempt again, until the run's history
        is pruned)."""
        self._forget.append((run_uid, retried))
        self._flush_soon()

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def load(self) -> Journaled | None:
        """What other operator processes journaled (their runs' statuses may not say it yet);
        None when the journal cannot be read."""
        try:
            entries = await asyncio.to_thread(self._store.journaled)
        except (SQLAlchemyError, OSError) as error:
            logger.warning("progress journal not read: %s", type(error).__name__)
            return None
        journaled: Journaled = {}
        for entry in entries:
            if entry.writer != self.writer:
                attempts = journaled.setdefault(entry.run_uid, {})
                key = (entry.retried, entry.node, entry.attempt)
                attempts[key] = entry.result or attempts.get(key)
        return journaled

    def _flush_soon(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="seqflow-journal")

    async def _flush(self) -> None:
        """Write what is waiting, all of it in one transaction, until nothing is."""
        waiting: list[asyncio.Future[bool]] = []
        try:
            while self._entries or self._forget:
                entries, forget, waiting = self._entries, self._forget, self._waiting
                self._entries, self._forget, self._waiting = [], [], []
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        self._thread, partial(self._store.journal, entries, forget=forget)
                    )
                    written = True
                except Exception as error:  # (the database away, most likely)
                    written = False
                    self._away_until = self._clock.monotonic() + self._pause
                    logger.warning(
                        "progress journal not written (%s: %s): each start is written to its run's "
                        "status first for %.0f s",
                        type(error).__name__,
                        str(getattr(error, "orig", error))[:200],
                        self._pause,
                    )
                for future in waiting:
                    if not future.done():
                        future.set_result(written)
        finally:  # (no await since the last look: nothing can have come meanwhile)
            self._flushing = None
            for future in waiting:  # cancelled meanwhile: not written
                if not future.done():
                    future.set_result(False)
