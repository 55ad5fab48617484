"""The Workflows as the runs' shell knows them: taken from their watch events (or read from the
API server when a run needs one not seen yet), and their Ready condition. Each Workflow is
checked when it comes or changes, and when another of its namespace does (handlers, `when`
expressions, the input schema, sub-workflows and their loops: found now, not when a run
reaches them), and its status written when it changed, by the replica that serves it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from seqflow.api.bodies import Key, generation_of, key_of, spec_of, status_of
from seqflow.api.models import JsonObject, WorkflowSpec, WorkflowStatus
from seqflow.clock import Clock
from seqflow.cluster.kube import ApiError, KubeApi, NotFound
from seqflow.controller.worker import Background
from seqflow.engine import RunView, WorkflowView, workflow_status
from seqflow.runs.cache import Cache
from seqflow.runs.ownership import Ownership

logger = logging.getLogger(__name__)


Changed = Callable[[Key, bool], None]  # a Workflow came, changed or went (and its limit with it)


@dataclass(frozen=True, kw_only=True)
class Workflows:
    api: KubeApi
    cache: Cache
    ownership: Ownership
    handler_names: frozenset[str]
    clock: Clock
    background: Background
    changed: Changed

    def on_event(self, event_type: str | None, body: JsonObject) -> None:
        key = key_of(body)
        limited_before = self.cache.limited(*key)
        if event_type == "DELETED":
            self.cache.workflows.pop(key, None)
            self.cache.workflow_statuses.pop(key, None)
            self.report_others(key)
            self.changed(key, limited_before)
            return
        try:
            spec = WorkflowSpec.model_validate(spec_of(body))
        except ValidationError as error:
            logger.warning("ignoring Workflow %s/%s: %s", *key, error)
            return
        try:
            self.cache.workflow_statuses[key] = WorkflowStatus.model_validate(status_of(body))
        except ValidationError:
            self.cache.workflow_statuses[key] = WorkflowStatus()
        self.cache.workflows[key] = WorkflowView(spec=spec, generation=generation_of(body))
        self.report(key)
        self.report_others(key)
        self.changed(key, limited_before != (spec.concurrency is not None))

    async def of_run(self, namespace: str, run: RunView) -> WorkflowView | None:
        """The run's Workflow from the cache; before a run starts, a miss is checked with the API
        server (at start-up the Workflows' watch may not have delivered it yet)."""
        key = (namespace, run.spec.workflow_ref.name)
        cached = self.cache.workflows.get(key)
        if cached is not None or run.status.started or run.status.finished:
            return cached
        try:
            body = await self.api.get_workflow(*key)
        except NotFound:
            return None
        self.on_event("ADDED", body)
        return self.cache.workflows.get(key)

    def report(self, key: Key) -> None:
        """Check the Workflow and write its Ready condition when it changed."""
        if not self.ownership.owns_workflow(key):
            return
        view = self.cache.workflows[key]
        previous = self.cache.workflow_statuses.get(key, WorkflowStatus())
        status = workflow_status(
            view.spec,
            name=key[1],
            generation=view.generation,
            handlers=self.handler_names,
            workflows=self.cache.workflows_in(key[0]),
            previous=previous,
            now=self.clock.now(),
        )
        if status == previous:
            return
        self.cache.workflow_statuses[key] = status

        async def write() -> None:
            try:
                await self.api.patch_workflow_status(*key, {"status": status.to_wire()})
            except ApiError as error:
                logger.warning("could not write the status of Workflow %s/%s: %s", *key, error)
                self.cache.workflow_statuses.pop(key, None)  # written again at its next event

        self.background.spawn(write())

    def report_others(self, key: Key) -> None:
        """A Workflow came, changed or went: check its namespace's other Workflows again (one
        may run it as a sub-workflow, directly or through others)."""
        for other in [k for k in self.cache.workflows if k[0] == key[0] and k != key]:
            self.report(other)

    def report_all(self) -> None:
        for key in list(self.cache.workflows):
            self.report(key)
