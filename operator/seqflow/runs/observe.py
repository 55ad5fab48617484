"""What the engine is told of a run besides its own object: the results of its attempts (in
process, or read from their Jobs and pods), which of them still run, its child runs, its place
in its Workflow's queue, what blocks it, how far its history is written, and whether it is being
handed over or its progress is unknown, the stored values it may read, and before it starts, the
input its inputFrom names."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass

from seqflow.api.artifacts import AttemptId
from seqflow.api.bodies import Key, uid_of
from seqflow.api.models import HistoryEvent, HistoryRecord, InputFrom, JsonObject, NodePhase, NodeType
from seqflow.api.values import digests_in, ref_of
from seqflow.cluster.kube import ApiError, Forbidden, KubeApi, NotFound
from seqflow.engine import (
    AttemptResult,
    ChildRun,
    InputRead,
    Observations,
    RetrySource,
    RunView,
    ValueMissing,
    WorkflowView,
)
from seqflow.engine.compaction import expanded
from seqflow.executors.children import child_run
from seqflow.executors.jobs import owned_by, pod_of_job
from seqflow.executors.managed import managed
from seqflow.executors.outcomes import (
    attempt_times,
    job_finished,
    keeping,
    pod_finished,
    read_outcome,
    sent_elsewhere,
)
from seqflow.metrics import Metrics
from seqflow.runs.admission import Admission
from seqflow.runs.cache import Cache
from seqflow.runs.flush import HistorySink
from seqflow.runs.managed import ManagedJobs
from seqflow.runs.ownership import Ownership
from seqflow.runs.progress import Progress
from seqflow.runs.state import Attempt, RunStates
from seqflow.runs.steplogs import StepLogs
from seqflow.runs.traces import RunSpans
from seqflow.runs.values import Values, new_to_plan
from seqflow.runs.view import UnreadableStatus, run_view


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
    history: HistorySink
    logs: StepLogs
    spans: RunSpans
    managed: ManagedJobs

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
        cached = await self._look_up_cached(key[0], run)
        new = new_to_plan(taken_in, children.values()) | digests_in(cached.values())
        observed = Observations(
            workflow=workflow,
            workflows=self.cache.workflows_in(key[0]) if not run.status.started else {},
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
            values=await self.values.read_for_plan(key[0], run, new),
            input_from=await self._read_input(key[0], run),
            retry_source=await self._read_retry_source(key[0], run),
            cached=cached,
        )
        return observed, results

    async def _read_input(self, namespace: str, run: RunView) -> InputRead | None:
        """The input the run's inputFrom names, read while it has not started (None: not read)."""
        source = run.spec.input_from
        if source is None or run.status.started or run.status.input is not None:
            return None
        try:
            if source.config_map_key_ref is not None:
                ref = source.config_map_key_ref
                found = await self.api.get_config_map(namespace, ref.name)
                text = (found.get("data") or {}).get(ref.key)
            else:
                assert source.secret_key_ref is not None
                ref = source.secret_key_ref
                found = await self.api.get_secret(namespace, ref.name)
                encoded = (found.get("data") or {}).get(ref.key)
                text = None if encoded is None else base64.b64decode(encoded, validate=True).decode()
        except NotFound:
            return InputRead(missing=f"{_kind(source)} not found")
        except Forbidden:
            return InputRead(missing=f"the operator may not read the {_kind(source)} (RBAC: get)")
        except ApiError:
            return None  # looked at again
        except (binascii.Error, UnicodeDecodeError):
            return InputRead(problem="its data is not UTF-8 text")
        if text is None:
            return InputRead(missing=f"the {_kind(source)} has no key {ref.key!r}")
        return _parsed_input(text)

    async def _look_up_cached(self, namespace: str, run: RunView) -> dict[str, JsonObject | None]:
        """The outputs kept under the keys of the cached steps about to start (those the store
        does not answer for now are left out: looked up again)."""
        found: dict[str, JsonObject | None] = {}
        for node in run.status.nodes:
            if node.cache_key is None or node.phase != NodePhase.PENDING or node.attempts != node.budget_from:
                continue
            answered, output = await self.history.cached(
                namespace, run.spec.workflow_ref.identity, node.cache_key
            )
            if answered:
                found[node.id] = output
        return found

    async def _read_retry_source(self, namespace: str, run: RunView) -> RetrySource | None:
        """The run that spec.retryFrom names, read while this one has not started (None: not
        now, look again): its task list and nodes (with those folded into the store), its input,
        and the input its task to retry from had (from its activity log)."""
        retry = run.spec.retry_from
        if retry is None or run.status.started:
            return None
        try:
            body = await self.api.get_run(namespace, retry.run)
            source = run_view(body)
        except NotFound:
            return RetrySource(problem="no such run in this namespace")
        except ApiError:
            return None
        except UnreadableStatus as error:
            return RetrySource(problem=f"its status cannot be read: {error}")
        status = source.status
        folded = {r.ref for r in [*status.earlier_nodes, *filter(None, [status.pinned_tasks_ref])]}
        activity = await self.history.activity(namespace, retry.run, uid=uid_of(body))
        try:
            whole, _ = expanded(status, known=await self.values.read(namespace, folded))
        except ValueMissing:
            return None
        if activity is None:  # the store is away
            return None
        if whole.pinned_tasks is None:
            return RetrySource(problem="it has not started")
        step_input = _first_input(retry.step, activity, status.pending_history)
        if step_input is not None and (ref := ref_of(step_input)) is not None:
            step_input = (await self.values.read(namespace, {ref.digest})).get(ref.digest)
            if step_input is None:
                return None
        spec = source.spec
        run_input = status.input or (spec.input_ref.to_wire() if spec.input_ref else spec.input)
        return RetrySource(
            pinned_tasks=whole.pinned_tasks,
            nodes=whole.nodes,
            run_input=run_input,
            step_input=step_input,
            output_schema=status.output_schema,
        )

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
                if pod is None and managed(job) and not job_finished(job):  # not made yet, or gone
                    state = self.states.of(uid, key)
                    if await self.managed.start_pod(job, state=state, node=node.id):
                        running.add(node.id)
                    continue
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
            if keeping(pod):  # the task has ended; its files are being kept
                running.add(node.id)
                continue
            if job is not None and sent_elsewhere(job, pod):  # its output's annotation not seen yet?
                with contextlib.suppress(NotFound):
                    job = self.cache.jobs[(key[0], node.job)] = await self.api.get_job(key[0], node.job)
            attempt = AttemptId(namespace=key[0], run_uid=uid, node=node.id, attempt=node.attempts)
            outcome = read_outcome(job=job, pod=pod, attempt=attempt)
            if managed(job) and job is not None and pod is not None and not job_finished(job):
                await self.managed.finish(job, pod, outcome)
            if pod is not None and pod_finished(pod):
                self.logs.keep_pod_log(key[0], run_uid=uid, node=node.id, attempt=node.attempts, pod=pod)
            times = attempt_times(job=job, pod=pod)
            if times is not None:
                began, ended = times
                self.metrics.attempt(
                    namespace=key[0],
                    workflow=run.spec.workflow_ref.identity,
                    task=node.id,
                    succeeded=outcome.succeeded,
                    seconds=(ended - began).total_seconds(),
                )
                self.spans.attempt(
                    body, node=node.id, attempt=node.attempts, start=began, end=ended, error=outcome.error
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


def _kind(source: InputFrom) -> str:
    return "ConfigMap" if source.config_map_key_ref is not None else "Secret"


def _first_input(step: str, activity: list[JsonObject], pending: list[HistoryRecord]) -> JsonObject | None:
    """The input a task's first attempt had, from a run's activity log (stored, then pending)."""
    entries = [
        *((e["event"], e["task"], e["details"]) for e in activity),
        *((r.type, r.task, r.details) for r in pending),
    ]
    for event, task, details in entries:
        if event == HistoryEvent.TASK_STARTED and task == step:
            found: JsonObject | None = details.get("input")
            return found
    return None


def _parsed_input(text: str) -> InputRead:
    try:
        value = json.loads(text)
    except ValueError as error:
        return InputRead(problem=f"not JSON ({error})")
    if isinstance(value, dict):
        return InputRead(value=value)
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return InputRead(problem=f"it is {kinds.get(type(value), 'null')}")
