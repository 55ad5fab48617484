"""What a local run is given: its Workflows, input, stubs, signals and how Job steps run
(`LocalOptions`), and the parsing of the command line's values into them (`UsageError` for a
value that is not what it must be)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from seqflow.api.models import JsonObject, WorkflowSpec
from seqflow.engine import EngineOptions
from seqflow.engine.plan import COMPENSATION
from seqflow.executors.inprocess import HandlerRegistry, registry
from seqflow.local.files import Workflows

JobMode = Literal["local", "stub"]


class UsageError(Exception):
    """A value given to a local run that is not what it must be (bad JSON, an unknown step)."""


@dataclass(frozen=True, kw_only=True)
class LocalOptions:
    """One local run: the Workflows (the main one is run), its input and what replaces the world.

    `stubs` give the output of steps by id (a step's name, or `Step/Member`): a stub of a step
    also stands for its forEach items and parallel members, in the run and in its
    sub-workflows' runs. `signals` are in every run's spec from its start. Job steps run as
    local processes of their command and args (`jobs="local"`, in `job_environment` and the
    SEQFLOW_* variables of the Job contract) or are stubbed (`"stub"`: their output is their
    input, unless a stub gives it)."""

    workflows: Workflows
    input: JsonObject = field(default_factory=dict)
    stubs: Mapping[str, JsonObject] = field(default_factory=dict)
    signals: Mapping[str, JsonObject] = field(default_factory=dict)
    jobs: JobMode = "stub"
    job_environment: Mapping[str, str] = field(default_factory=dict)
    real_time: bool = False
    handlers: HandlerRegistry = registry
    start: datetime | None = None  # the virtual time the run starts at (None: now)
    run_name: str = "local"
    namespace: str = "local"
    engine: EngineOptions = field(default_factory=EngineOptions)

    def stub_for(self, node: str) -> JsonObject | None:
        """The stubbed output of a step's attempt (its own, or its step's), or None."""
        if node in self.stubs:
            return self.stubs[node]
        step = node.split("/", 1)[0]
        return None if node.endswith(COMPENSATION) else self.stubs.get(step)


def step_ids(spec: WorkflowSpec) -> list[str]:
    """The ids a stub may name in a Workflow: its tasks, members, compensations, finally tasks."""
    ids = [task.name for task in spec.tasks]
    ids += [f"{task.name}/{member.name}" for task in spec.tasks for member in task.parallel or []]
    ids += [f"{task.name}{COMPENSATION}" for task in spec.tasks if task.compensate is not None]
    return ids + [final.name for final in spec.finally_ or []]


def handlers_of(spec: WorkflowSpec) -> list[tuple[str, str]]:
    """(step id, handler) of a Workflow's in-process steps."""
    named = [(t.name, t.handler) for t in spec.tasks]
    named += [(f"{t.name}/{m.name}", m.handler) for t in spec.tasks for m in t.parallel or []]
    named += [(f"{t.name}{COMPENSATION}", c.handler) for t in spec.tasks if (c := t.compensate)]
    named += [(t.name, f.step.handler) for t in spec.tasks if (f := t.for_each)]
    named += [(f.name, f.handler) for f in spec.finally_ or []]
    return [(id, handler) for id, handler in named if handler is not None]


def unknown_stubs(workflows: Workflows, stubs: Iterable[str]) -> list[str]:
    """The stubbed ids that are no step of any of the Workflows."""
    known = {id for spec in workflows.specs.values() for id in step_ids(spec)}
    return [id for id in stubs if id not in known]


def json_object(text: str, *, what: str) -> JsonObject:
    """`text` as a JSON object (`UsageError` when it is not one)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UsageError(f"{what}: not JSON: {error}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what}: a JSON object is needed, got {type(value).__name__}")
    return value


def assignments(values: Iterable[str], *, what: str) -> dict[str, JsonObject]:
    """`NAME=JSON` values by name (`UsageError` for one without `=` or with bad JSON)."""
    found: dict[str, JsonObject] = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not equals or not name:
            raise UsageError(f"{what} {value!r}: NAME=JSON is needed")
        found[name] = json_object(text, what=f"{what} {name}")
    return found


def import_modules(modules: Iterable[str]) -> None:
    """Import the modules that register handlers (`UsageError` naming one that fails)."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # whatever the module raised, the user must see which one
            raise UsageError(f"--handlers: cannot import {module}: {type(error).__name__}: {error}") from None
