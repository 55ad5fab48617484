"""One run's rounds: observe it, `plan()`, write the new status (guarded by the resourceVersion
it was planned from), act, and again while a round finds more to do. A run being deleted has
what runs of it stopped and goes once its history is in the store (its finalizer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from seqflow.api.bodies import Key, deleting, finalizers_of, uid_of
from seqflow.api.models import JsonObject, Reason
from seqflow.clock import Clock
from seqflow.cluster.kube import EntityTooLarge
from seqflow.engine import (
    CancelHandler,
    ControlChildRun,
    Decision,
    DeleteJob,
    EngineOptions,
    Observations,
    RunView,
    WorkflowView,
    fail_internal,
    hold,
    plan,
)
from seqflow.runs.actuator import Actuator
from seqflow.runs.admission import Admission
from seqflow.runs.cache import RunCache
from seqflow.runs.fast import FastSteps
from seqflow.runs.flush import FINALIZER, HistoryFlush
from seqflow.runs.observe import Observer
from seqflow.runs.ownership import Ownership
from seqflow.runs.progress import ALL_RETRIES, Progress
from seqflow.runs.state import RunStates
from seqflow.runs.values import Values, ValuesNotStored
from seqflow.runs.view import UnreadableStatus, run_view
from seqflow.runs.workflows import Workflows
from seqflow.runs.writes import RunWriter, Written

logger = logging.getLogger(__name__)
ORPHAN = "orphan"  # the finalizer of a deletion that leaves the object's dependents alone


@dataclass(frozen=True)
class Planner:
    """`plan()` with the operator's options and the time now; when it raises (a defect), the run
    failed with reason InternalError and the traceback logged once: no run is left without a
    status, retried for ever."""

    engine: EngineOptions
    clock: Clock

    def plan(self, key: Key, run: RunView, observed: Observations) -> Decision:
        try:
            return plan(run=run, observed=observed, now=self.clock.now(), options=self.engine)
        except Exception as error:
            if run.status.finished:  # nothing runs any more: leave its status as it is
                logger.exception("planning finished run %s/%s failed; leaving it as it is", *key)
                return Decision(run.status, ())
            logger.exception("planning run %s/%s failed; the run fails with reason InternalError", *key)
            message = f"seqflow could not plan this run: {type(error).__name__}: {error}"
            return fail_internal(run, message=message, now=self.clock.now())


@dataclass(frozen=True)
class Reconciler:
    runs: RunCache
    states: RunStates
    ownership: Ownership
    progress: Progress
    admission: Admission
    workflows: Workflows
    observer: Observer
    planner: Planner
    fast: FastSteps
    writer: RunWriter
    flush: HistoryFlush
    actuator: Actuator
    values: Values

    async def reconcile(self, key: Key) -> None:
        body = self.runs.get(key)
        if body is not None and self.runs.is_slim(key) and self.ownership.serves(key):
            body = await self.writer.reread(key)  # finished and cached in part: the whole of it
        uid = uid_of(body) if body is not None else None
        while body is not None and self.ownership.serves(key):
            body = await self._round(key, body)
        if uid is not None and key not in self.runs:  # gone meanwhile: nothing of it stays here
            self.progress.forget(uid, self.states.forget(uid), retried=ALL_RETRIES)

    async def _round(self, key: Key, body: JsonObject) -> JsonObject | None:
        """One round: plan, write, act. Returns the body for another round, or None when the
        run needs nothing more for now."""
        finalizers = finalizers_of(body)
        gone = deleting(body)
        if FINALIZER not in finalizers:
            if gone:
                return None  # nothing of ours holds it any more
            try:
                return await self.writer.set_finalizers(key, body, [*finalizers, FINALIZER])
            except EntityTooLarge as error:
                self.writer.give_up_too_large(key, body, error)
                return None
        try:
            run = run_view(body)
        except UnreadableStatus as problem:
            self.progress.forget(uid_of(body), self.states.get(uid_of(body)), retried=ALL_RETRIES)
            return await self.writer.fail_unreadable(key, body, str(problem))
        written = await self._plan_and_write(key, body, run, deleted=gone)
        if written is None:
            return None
        body, decision = written
        if decision is None:  # a conflict: plan again on what is there now
            return body
        if gone:  # what runs is stopped now, not left to the garbage collector
            kinds: tuple[type, ...] = (CancelHandler, ControlChildRun, DeleteJob)
            if ORPHAN in finalizers:  # `--cascade=orphan`: its Jobs and child runs stay as they are
                kinds = (CancelHandler,)
            stops = tuple(a for a in decision.actions if isinstance(a, kinds))
            await self.actuator.act(key, body, replace(decision, actions=stops))
            await self.flush.finalize(key, body)
            return None
        self.flush.in_background(key, body, replace(run, status=decision.status))
        return body if await self.actuator.act(key, body, decision) else None

    async def _plan_and_write(self, key: Key, body: JsonObject, run: RunView, *, deleted: bool) -> Written:
        """Plan the run and write its new status (see `RunWriter.write`). Runs of a Workflow
        with a concurrency limit are admitted one at a time."""
        workflow = await self.workflows.of_run(key[0], run)
        limited = not run.status.started and workflow is not None and workflow.spec.concurrency
        if not limited:
            return await self._plan_and_write_observed(
                key, body, run, workflow, deleted=deleted, fast=not deleted
            )
        async with self.admission.lock(key[0], run.spec.workflow_ref.identity):
            return await self._plan_and_write_observed(key, body, run, workflow, deleted=deleted, fast=False)

    async def _plan_and_write_observed(
        self,
        key: Key,
        body: JsonObject,
        run: RunView,
        workflow: WorkflowView | None,
        *,
        deleted: bool,
        fast: bool,
    ) -> Written:
        uid = uid_of(body)
        observed, results = await self.observer.observe(key, body, run, workflow, deleted=deleted)
        decision = self.planner.plan(key, run, observed)
        if fast and self.fast.write_delay_seconds > 0:
            decision = await self.fast.run(key, body, run, observed, decision, seen=results)
        if decision.status != run.status:
            journaled = self.progress.available  # (false: nothing is journaled before the next write)
            if decision.status.progress_journaled != journaled:
                status = decision.status.model_copy(update={"progress_journaled": journaled})
                decision = replace(decision, status=status)
            decision = await self._keep_values(key, uid, run, decision)
            written = await self.writer.write(key, body, run, decision)
            if written is None or written[1] is None:
                return written
            body, decision = written[0], written[1]  # (a run failed as too large: what failed it)
        state = self.states.of(uid, key)
        if not decision.held:
            for attempt in results:  # in the status now (or stale): no longer needed
                state.results.pop(attempt, None)
        if decision.status.finished and not run.status.finished:
            self.admission.finished(key[0], run.spec.workflow_ref.identity)
            self.progress.forget(uid, state, retried=decision.status.retried)
        return body, decision

    async def _keep_values(self, key: Key, uid: str, run: RunView, decision: Decision) -> Decision:
        """Store the decision's new values before its status names them; when the store does
        not take them, the decision that holds the run instead (its results wait here, its
        Jobs' in the Jobs)."""
        try:
            await self.values.keep(key[0], uid, self.states.of(uid, key), run, decision)
        except ValuesNotStored as error:
            logger.warning("values of run %s/%s not stored: %s", *key, error)
            now = self.planner.clock.now()
            message = f"Waiting to store values in the history store, which does not take them: {error}"
            until = now + self.planner.engine.value_recheck
            return hold(run, reason=Reason.VALUE_UNAVAILABLE, message=message, now=now, until=until)
        return decision
