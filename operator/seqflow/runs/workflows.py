"""The Workflows as the runs' shell knows them: taken from their watch events (or read from the
API server when a run needs one not seen yet), their Ready condition and their revisions (the
one a run about to start takes). Each Workflow is checked when it comes or changes, and when
another of its namespace does (handlers, `when` expressions, the schemas, sub-workflows and
their loops: found now, not when a run reaches them), and its revision kept and its status
written when they changed, by the replica that serves it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from seqflow.api.bodies import Key, generation_of, key_of, spec_of, status_of, uid_of
from seqflow.api.models import JsonObject, WorkflowSpec, WorkflowStatus
from seqflow.clock import Clock
from seqflow.cluster.kube import ApiError, KubeApi, NotFound
from seqflow.controller.worker import Background
from seqflow.engine import RunView, WorkflowView, workflow_problem, workflow_status
from seqflow.runs.cache import Cache, workflow_key, workflow_named
from seqflow.runs.ownership import Ownership
from seqflow.runs.revisions import Revisions

logger = logging.getLogger(__name__)


Changed = Callable[[Key, bool], None]  # a Workflow came, changed or went (and its limit with it)


@dataclass(frozen=True, kw_only=True)
class Workflows:
    api: KubeApi
    cache: Cache
    ownership: Ownership
    revisions: Revisions
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
            self.cache.workflow_uids.pop(key, None)
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
        self.cache.workflow_uids[key] = uid_of(body)
        self.report(key)
        self.report_others(key)
        self.changed(key, limited_before != (spec.concurrency is not None))

    async def of_run(self, namespace: str, run: RunView) -> WorkflowView | None:
        """The run's Workflow: once it has started, as it is now (the run has its task list);
        before, the revision it names, else the latest Ready one (None: not found). A miss in
        the cache is checked with the API server (at start-up the Workflows' watch may not have
        delivered it yet)."""
        key = workflow_key(namespace, run.spec.workflow_ref.identity)
        current = self.cache.workflows.get(key)
        if run.status.started or run.status.finished:
            return current
        if current is None:
            try:
                self.on_event("ADDED", await self.api.get_workflow(*key))
            except NotFound:
                return None
            current = self.cache.workflows.get(key)
            if current is None:
                return None
        wanted = run.spec.workflow_ref.revision or self._ready_revision(key, current)
        if wanted in (None, current.generation):
            return current
        spec = await self.revisions.spec_of(key, uid=self.cache.workflow_uids[key], revision=wanted)
        if spec is None:
            return None
        # (a queue is one per Workflow: its limit is the Workflow's as it is now)
        return WorkflowView(
            spec=spec.model_copy(update={"concurrency": current.spec.concurrency}), generation=wanted
        )

    def _ready_revision(self, key: Key, current: WorkflowView) -> int | None:
        """The revision a run that names none takes, when not the current one: the latest
        Ready, while the current spec cannot run (a broken edit does not stop new runs)."""
        problem = workflow_problem(
            current.spec,
            name=workflow_named(key),
            handlers=self.handler_names,
            workflows=self.cache.workflows_in(key[0]),
        )
        status = self.cache.workflow_statuses.get(key)
        return status.ready_revision if problem is not None and status is not None and key[0] else None

    def report(self, key: Key) -> None:
        """Check the Workflow and write its Ready condition when it changed."""
        if not self.ownership.owns_workflow(key):
            return
        view = self.cache.workflows[key]
        previous = self.cache.workflow_statuses.get(key, WorkflowStatus())
        status = workflow_status(
            view.spec,
            name=workflow_named(key),
            generation=view.generation,
            handlers=self.handler_names,
            workflows=self.cache.workflows_in(key[0]),
            previous=previous,
            now=self.clock.now(),
        )
        if not key[0]:  # a ClusterWorkflow: no revisions kept
            status = status.model_copy(update={"ready_revision": None})
        kept = previous.revision == view.generation or not key[0]
        if status == previous and kept:
            return
        if key[0]:
            status = status.model_copy(update={"revision": view.generation})
        self.cache.workflow_statuses[key] = status
        uid = self.cache.workflow_uids[key]

        async def write() -> None:
            try:
                if not kept:
                    await self.revisions.keep(key, uid=uid, spec=view.spec, revision=view.generation)
                await self.api.patch_workflow_status(*key, {"status": status.to_wire()})
            except ApiError as error:
                logger.warning("could not write the status of Workflow %s/%s: %s", *key, error)
                self.cache.workflow_statuses.pop(key, None)  # written again at its next event

        self.background.spawn(write())

    def report_others(self, key: Key) -> None:
        """A Workflow came, changed or went: check its namespace's other Workflows again (one
        may run it as a sub-workflow, directly or through others); for a ClusterWorkflow, all."""
        for other in [k for k in self.cache.workflows if key[0] in ("", k[0]) and k != key]:
            self.report(other)

    def report_all(self) -> None:
        for key in list(self.cache.workflows):
            self.report(key)
