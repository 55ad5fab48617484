"""The seqflow pytest plugin: the `seqflow_local` fixture runs Workflows from their YAML files
against real handlers on a virtual clock, through the operator's engine (seqflow.local), and
returns what the run ended as (a `seqflow.local.LocalResult`) to assert on.

Registered by the `pytest11` entry point of the seqflow package (name `seqflow.testing`), or
with `pytest_plugins = ["seqflow.testing"]`:

    def test_order(seqflow_local):
        result = seqflow_local.run(
            "workflows/order-process.yaml",
            input={"order_id": "ORD-1", "amount": 10},
            handlers=["seqflow.examples.orders"],
        )
        assert result.succeeded
        assert result.steps["DeductMoney"].attempts == 1
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import pytest

from seqflow.api.models import JsonObject
from seqflow.local import GivenSignals, LocalOptions, LocalResult, UsageError, load_workflows, run_local
from seqflow.local.options import JobMode, import_modules, unknown_stubs


class LocalHarness:
    """Runs Workflows locally (files relative to `root`, pytest's rootdir, unless absolute)."""

    def __init__(self, *, root: Path) -> None:
        self.root = root

    def run(
        self,
        *files: str | Path,
        input: JsonObject | None = None,
        handlers: Sequence[str] = (),
        stubs: Mapping[str, JsonObject] | None = None,
        signals: Mapping[str, JsonObject] | None = None,
        on_wait: Mapping[str, JsonObject] | None = None,
        jobs: JobMode = "stub",
        job_environment: Mapping[str, str] | None = None,
        real_time: bool = False,
        start: datetime | None = None,
    ) -> LocalResult:
        """Run the first Workflow of `files` (the others serve its sub-workflow steps) to its end.

        `handlers` are modules to import (they register handlers); `stubs` give steps' outputs
        by id instead of running them; `signals` are given from the start, `on_wait` ones once
        a step waits for them; Job steps are stubbed (their output is their input) unless
        `jobs="local"` runs their command as a process (in `job_environment`)."""
        workflows = load_workflows(self.root / path for path in files)
        unknown = unknown_stubs(workflows, stubs or {})
        if unknown:
            raise UsageError(f"stubs: no step {unknown[0]} in the Workflows")
        import_modules(handlers)
        options = LocalOptions(
            workflows=workflows,
            input=dict(input or {}),
            stubs=dict(stubs or {}),
            signals=dict(signals or {}),
            jobs=jobs,
            job_environment=dict(job_environment or {}),
            real_time=real_time,
            start=start,
        )
        return asyncio.run(run_local(options, signals=GivenSignals(on_wait or {})))


@pytest.fixture
def seqflow_local(request: pytest.FixtureRequest) -> LocalHarness:
    """Runs Workflows from their files on a virtual clock (see `LocalHarness.run`)."""
    return LocalHarness(root=request.config.rootpath)
