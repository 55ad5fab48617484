"""What the runs' shell holds of each run: forgetting a run is one call that stops its
attempts and leaves nothing of it."""

from __future__ import annotations

import asyncio

from seqflow.engine import AttemptResult
from seqflow.runs.state import RunStates


def test_forgetting_a_run_stops_its_attempts_and_keeps_nothing():
    async def scenario():
        states = RunStates()
        state = states.of("uid-r", ("ns", "r"))
        attempt = asyncio.create_task(asyncio.sleep(3600))
        state.running[("A", 1)] = attempt
        state.results[("B", 1)] = AttemptResult(node="B", attempt=1, output={})
        state.blocked["C"] = "a Job of its name exists"
        assert state.busy and states.get("uid-r") is state
        assert states.forget("uid-r") is state
        await asyncio.sleep(0)
        assert attempt.cancelled() and not state.results
        assert states.get("uid-r") is None and list(states) == [] and states.tasks() == []
        assert states.forget("uid-r") is None  # (a second DELETED event)
        again = states.of("uid-r", ("ns", "r"))
        assert again is not state and not again.busy and not again.blocked

    asyncio.run(scenario())
