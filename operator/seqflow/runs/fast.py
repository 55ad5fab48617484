"""The fast-step path (SEQFLOW_WRITE_DELAY_SECONDS): the in-process attempts a decision starts
run before its status is written, their starts (and the ends before them) journaled first;
those that end within the write delay are planned on at once, and so on, so that one status
write carries a string of fast steps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from seqflow.api.bodies import Key, uid_of
from seqflow.api.models import JsonObject
from seqflow.clock import Clock
from seqflow.engine import AttemptResult, Decision, Observations, PostEvent, RunHandler, RunView, WakeAt
from seqflow.runs.actuator import Actuator
from seqflow.runs.ownership import Ownership
from seqflow.runs.progress import Progress
from seqflow.runs.state import Attempt, RunStates

Planner = Callable[[Key, RunView, Observations], Decision]


@dataclass(frozen=True, kw_only=True)
class FastSteps:
    states: RunStates
    progress: Progress
    ownership: Ownership
    actuator: Actuator
    planner: Planner
    clock: Clock
    write_delay_seconds: float

    async def run(
        self,
        key: Key,
        body: JsonObject,
        run: RunView,
        observed: Observations,
        decision: Decision,
        *,
        seen: dict[Attempt, AttemptResult],
    ) -> Decision:
        """Stops at the first decision that does anything else, or whose attempts outlast the
        delay (they go on running; their start is written now), or that the journal cannot
        take. Returns the decision to write, with the Events of the ones folded into it; `seen`
        gains the results it took in."""
        uid = uid_of(body)
        state = self.states.of(uid, key)
        deadline = self.clock.monotonic() + self.write_delay_seconds
        events: list[PostEvent] = []
        ended = dict(seen)  # what the decision took in (of in-process attempts)
        if not run.status.progress_journaled:
            return decision  # its status says nothing is journaled past it: that status goes first
        while all(isinstance(a, RunHandler | PostEvent | WakeAt) for a in decision.actions):
            if decision.values.keys() - state.held:
                break  # new stored values: they are stored as its status is written, not journaled
            starts = [a for a in decision.actions if isinstance(a, RunHandler)]
            if not starts or self.clock.monotonic() >= deadline or self.ownership.giving_up(key):
                break
            retried = decision.status.retried
            if not await self.progress.journal_starts(
                uid,
                state,
                ended=list(ended.values()),
                ended_in=run.status.retried,
                starts=starts,
                retried=retried,
            ):
                break
            if not self.ownership.serves(key) or self.ownership.giving_up(key):
                break  # handed over meanwhile: its new owner finds the starts journaled
            started = [
                self.actuator.start_handler(key, body, action, retried=retried, awaited=True)
                for action in starts
            ]
            tasks = [task for task in started if task is not None]
            await asyncio.sleep(0)  # a handler that never waits ends in its task's first step
            if not all(task.done() for task in tasks):
                await asyncio.wait(tasks, timeout=max(deadline - self.clock.monotonic(), 0))
            for action in starts:
                state.awaited.discard((action.node, action.attempt))
            if not all(task.done() for task in tasks):
                break  # still running: written as started; each reports its end as usual
            ended = {
                (a.node, a.attempt): state.results[(a.node, a.attempt)]
                for a in starts
                if (a.node, a.attempt) in state.results
            }
            if len(ended) < len(starts) or self.states.get(uid) is not state:
                break  # cancelled meanwhile (the run was deleted)
            events += [a for a in decision.actions if isinstance(a, PostEvent)]
            seen.update(ended)
            run = replace(run, status=decision.status)
            observed = replace(  # what is new since: these results (the rest is in the status now)
                observed,
                results=tuple(ended.values()),
                handlers_running=frozenset(state.running),
                blocked={},
            )
            decision = self.planner(key, run, observed)
        return replace(decision, actions=(*events, *decision.actions)) if events else decision
