"""Where a local run's signals come from while its steps wait: none (`NoSignals`), given ahead
for when a step waits (`GivenSignals`, the pytest plugin's), or typed on the terminal
(`TerminalSignals`, `NAME JSON` lines). Signals given before the start are in the run's spec
from the beginning and need none of these."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Protocol, TextIO

from seqflow.api.models import JsonObject


class SignalSource(Protocol):
    async def answer(self, *, waiting: Mapping[str, str]) -> Mapping[str, JsonObject]:
        """Signals, by name, for a run whose steps wait for them (`waiting`: the signal by the
        step's path) while nothing else is under way; {} to let the clock run on (to a wait's
        timeout, if it has one)."""
        ...


class NoSignals:
    async def answer(self, *, waiting: Mapping[str, str]) -> Mapping[str, JsonObject]:
        return {}


class GivenSignals:
    """Each signal sent once a step waits for it (not before: the wait has begun)."""

    def __init__(self, signals: Mapping[str, JsonObject]) -> None:
        self._signals = dict(signals)

    async def answer(self, *, waiting: Mapping[str, str]) -> Mapping[str, JsonObject]:
        return {name: self._signals.pop(name) for name in waiting.values() if name in self._signals}


class TerminalSignals:
    """Asks for the signals on `prompt` and reads them from `lines`, one `NAME JSON` a line; an
    empty line sends none, and once `lines` ends it asks no more."""

    def __init__(self, *, lines: TextIO, prompt: TextIO) -> None:
        self._lines = lines
        self._prompt = prompt
        self._ended = False

    async def answer(self, *, waiting: Mapping[str, str]) -> Mapping[str, JsonObject]:
        steps = "; ".join(f"step {step} waits for signal {signal}" for step, signal in waiting.items())
        while not self._ended:
            print(f"{steps}: type NAME JSON (an empty line: none)", file=self._prompt)
            line = await asyncio.to_thread(self._lines.readline)
            self._ended = not line
            if not line.strip():
                return {}
            signal = self._signal(line)
            if signal is not None:
                return signal
        return {}

    def _signal(self, line: str) -> dict[str, JsonObject] | None:
        name, _, text = line.strip().partition(" ")
        try:
            payload = json.loads(text or "{}")
        except ValueError as error:
            print(f"not JSON: {error}", file=self._prompt)
            return None
        if not isinstance(payload, dict):
            print(f"a JSON object is needed, got {type(payload).__name__}", file=self._prompt)
            return None
        return {name: payload}
