"""What the engine is told of a run besides its own object: the results of its attempts (in
process, or read from their Jobs and pods), which of them still run, its child runs, its place
in its Workflow's queue, what blocks it, how far its history is written, and whether it is being
handed over or its progress is unknown, and the stored values it may read."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from seqflow.api.bodies import Key, uid_of
from seqflow.api.models import JsonObject, NodePhase, NodeType
from seqflow.cluster.kube import KubeApi, NotFound
from seqflow.engine import AttemptResult, ChildRun, Observations, RunView, WorkflowView
from seqflow.executors.children import child_run
from seqflow.executors.jobs import (
    attempt_duration,
    job_finished,
    owned_by,
    pod_finished,
    pod_of_job,
    read_outcome,
    sent_elsewhere,
)
from seqflow.metrics import Metrics
from seqflow.runs.admission import Admission
from seqflow.runs.cache import Cache
from seqflow.runs.ownership import Ownership
from seqflow.runs.progress import Progress
from seqflow.runs.state import Attempt, RunStates
from seqflow.runs.values import Values, new_to_plan, read_by_plan


@dataclass(frozen=True, kw_only=True)
class Observer:
    api: KubeApi
    cache: Cache
    states: RunStates
    progress: Progress
    admission: Admission
    ownership: Ownership
    metrics: Metrics
    values: Values
    handler_names: frozenset[str]

    async def observe(
        self, key: Key, body: JsonObject, run: RunView, workflow: WorkflowView | None, *, deleted: bool
    ) -> tuple[Observations, dict[Attempt, AttemptResult]]:
        """The observations, and the in-process results among them (to drop once written)."""
        uid = uid_of(body)
        state = self.states.of(uid, key)
        self.progress.take_ends(uid, state, run.status)
        results = dict(state.results)
        blocked, state.blocked = state.blocked, {}
        job_results, jobs_running = await self._observe_jobs(key, body, run)
        children = self._observe_children(key, body, run)
        taken_in = [*results.values(), *job_results]
        readable = read_by_plan(run.spec, run.status) | new_to_plan(taken_in, children.values())
        observed = Observations(
            workflow=workflow,
            workflows=self.cache.workflows_in(key[0]) if run.status.pinned_tasks is None else {},
            children=children,
            queued=self.admission.place(key, run, workflow),
            handlers=self.handler_names,
            results=tuple(taken_in),
            handlers_running=frozenset(state.running),
            jobs_running=jobs_running,
            blocked=blocked,
            history_written_through=state.flushed,
            deleted=deleted,
            hold=self.ownership.giving_up(key),
            progress_unknown=self.progress.unknown_for(state, run.status),
            values=await self.values.read(key[0], readable),
        )
        return observed, results

    async def _observe_jobs(
        self, key: Key, body: JsonObject, run: RunView
    ) -> tuple[list[AttemptResult], frozenset[str]]:
        """The outcomes of the running Job steps whose pods or Jobs have finished, and the steps
        whose Jobs run (only Jobs of this very run count)."""
        results: list[AttemptResult] = []
        running: set[str] = set()
        uid = uid_of(body)
        for node in run.status.nodes:
            if node.type != NodeType.JOB or node.phase != NodePhase.RUNNING or node.job is None:
                continue
            job = self.cache.jobs.get((key[0], node.job))
            pod = self.cache.pods.get((key[0], node.job))
            if job is not None and owned_by(job, uid):
                pod = pod if pod_of_job(pod, job) else None
                if not job_finished(job) and not pod_finished(pod):
                    running.add(node.id)
                    continue
                if not pod_finished(pod):  # its end not seen yet (the Job's came first), or gone: ask
                    pods = await self.api.pods_of_job(key[0], uid_of(job))
                    pod = pods[0] if pods else None
            elif job is None and pod is not None and owned_by(pod, uid):
                if not pod_finished(pod):  # the step's own pod (SEQFLOW_JOB_STEPS_AS=Pod)
                    running.add(node.id)
                    continue
            else:
                continue
            if job is not None and sent_elsewhere(job, pod):  # its output's annotation not seen yet?
                with contextlib.suppress(NotFound):
                    job = self.cache.jobs[(key[0], node.job)] = await self.api.get_job(key[0], node.job)
            outcome = read_outcome(job=job, pod=pod, node=node.id, attempt=node.attempts)
            seconds = attempt_duration(job=job, pod=pod)
            if seconds is not None:
                self.metrics.attempt(
                    workflow=run.spec.workflow_ref.name,
                    task=node.id,
                    succeeded=outcome.succeeded,
                    seconds=seconds,
                )
            results.append(outcome)
        return results, frozenset(running)

    def _observe_children(self, key: Key, body: JsonObject, run: RunView) -> dict[str, ChildRun]:
        """The child runs of the running sub-workflow steps, by step (only this run's own)."""
        children = {}
        for node in run.status.nodes:
            if node.type != NodeType.WORKFLOW or node.phase != NodePhase.RUNNING or node.child is None:
                continue
            child = self.cache.runs.get((key[0], node.child))
            if child is not None and owned_by(child, uid_of(body)):
                children[node.id] = child_run(child)
        return children
