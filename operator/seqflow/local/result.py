"""What a local run ended as (`LocalResult`: phase, reason, output, its steps and their child
runs, the activity log, the Events), and the transitions of its steps as it went
(`Transition`, printed one a line)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from seqflow.api.models import HistoryRecord, JsonObject, NodePhase, RunPhase
from seqflow.engine import PostEvent


@dataclass(frozen=True)
class Transition:
    """A step that changed phase or attempt: `path` is its id, after those of the sub-workflow
    steps whose child runs it is in."""

    offset: float  # seconds of virtual time since the run started
    path: tuple[str, ...]
    phase: NodePhase
    attempt: int
    error: str | None = None

    def line(self) -> str:
        indent = "  " * (len(self.path) - 1)
        step = indent + " > ".join(self.path)
        offset = f"+{self.offset:.2f}s"
        text = f"{offset:>11}  {step:<28} {self.phase.value:<11} attempt {self.attempt}"
        return f"{text}  {self.error}" if self.error else text


@dataclass(frozen=True)
class StepResult:
    """One step (or forEach item, or parallel member, or compensation) as the run left it."""

    id: str
    phase: NodePhase
    attempts: int
    output: JsonObject | None  # of its last successful attempt
    error: str | None  # of its last failed attempt, while it did not succeed
    run: LocalResult | None = None  # a sub-workflow step's child run (of its last attempt)


@dataclass(frozen=True)
class LocalResult:
    name: str
    uid: str
    workflow: str
    phase: RunPhase | None
    reason: str  # of its Succeeded condition
    message: str
    output: JsonObject | None
    steps: Mapping[str, StepResult]  # by id, in the order they started
    history: tuple[HistoryRecord, ...]  # the activity log, whole
    events: tuple[PostEvent, ...]
    transitions: tuple[Transition, ...]  # of its steps and those of its child runs
    virtual_seconds: float  # from its start to its end, as the run saw the time
    wall_seconds: float
    stuck: str | None = None  # why it stopped before it finished (a signal nobody sent)

    @property
    def succeeded(self) -> bool:
        return self.phase == RunPhase.SUCCEEDED

    def step(self, path: str) -> StepResult:
        """A step by its id, or through child runs by `Step > Child step` (KeyError if none)."""
        first, _, rest = path.partition(" > ")
        step = self.steps[first]
        if not rest:
            return step
        if step.run is None:
            raise KeyError(f"step {first} has no child run")
        return step.run.step(rest)

    def history_of(self, step: str) -> list[HistoryRecord]:
        return [record for record in self.history if record.task == step]

    def summary(self) -> str:
        phase = self.phase.value if self.phase else "not started"
        text = f"run {self.name}: {phase} ({self.reason or '-'}) {self.message}".rstrip()
        text += f" in {self.virtual_seconds:.2f} s of virtual time, {self.wall_seconds:.2f} s of wall time"
        return f"{text}; stopped: {self.stuck}" if self.stuck else text
