"""What this process holds of each run between its rounds: one `RunState` per run uid, so that
forgetting a run is one `pop` and nothing of it is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from seqflow.api.bodies import Key
from seqflow.engine import AttemptResult

Attempt = tuple[str, int]  # (node, attempt)


@dataclass
class RunState:
    key: Key
    results: dict[Attempt, AttemptResult] = field(default_factory=dict)  # not yet in a written status
    running: dict[Attempt, asyncio.Task[None]] = field(default_factory=dict)  # in-process, under way
    awaited: set[Attempt] = field(default_factory=set)  # a worker waits for these (fast steps)
    blocked: dict[str, str] = field(default_factory=dict)  # by node: why its Job could not be created
    flushing: bool = False  # its history is being written to the store now
    flushed: int = 0  # the store has its activity log entries up to this seq
    journaled: bool = False  # the progress journal has entries of it
    progress_known: bool = False  # while the journal cannot be read: none journaled past its status
    held: set[str] = field(default_factory=set)  # digests of the stored values it holds (as written)

    @property
    def busy(self) -> bool:
        """Attempts under way here, or results not yet written."""
        return bool(self.running or self.results)

    def forbidden(self, node: str, *, what: str, namespace: str, message: str) -> None:
        """The API server forbids creating a step's Job, pod or child run (RBAC, a quota, an
        admission policy): the run waits, saying why, and looks again (that may change meanwhile)."""
        self.blocked[node] = (
            f"creating {what} in namespace {namespace} is forbidden: {message} (RBAC: the Helm "
            "chart's role grants what seqflow needs)"
        )

    def stop_attempts(self) -> None:
        """Its in-process attempts stop at once, and their results are dropped."""
        for task in self.running.values():
            task.cancel()
        self.results.clear()


class RunStates:
    def __init__(self) -> None:
        self._states: dict[str, RunState] = {}

    def of(self, uid: str, key: Key) -> RunState:
        state = self._states.get(uid)
        if state is None:
            state = self._states[uid] = RunState(key=key)
        return state

    def get(self, uid: str) -> RunState | None:
        return self._states.get(uid)

    def forget(self, uid: str) -> RunState | None:
        """The run is gone: its attempts stop, and nothing of it stays."""
        state = self._states.pop(uid, None)
        if state is not None:
            state.stop_attempts()
        return state

    def __iter__(self) -> Iterator[RunState]:
        return iter(list(self._states.values()))

    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for state in self._states.values() for task in state.running.values()]
