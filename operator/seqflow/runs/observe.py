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
from seqflow.api.models import InputFrom, JsonObject, NodePhase, NodeType
from seqflow.cluster.kube import ApiError, Forbidden, KubeApi, NotFound
from seqflow.engine import AttemptResult, ChildRun, InputRead, Observations, RunView, WorkflowView
from seqflow.executors.children import child_run
from seqflow.executors.jobs import (
    attempt_duration,
    job_finished,
    keeping,
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
from seqflow.runs.values import Values, new_to_plan


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
            values=await self.values.read_for_plan(key[0], run, new_to_plan(taken_in, children.values())),
            input_from=await self._read_input(key[0], run),
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
            if keeping(pod):  # the task has ended; its files are being kept
                running.add(node.id)
                continue
            if job is not None and sent_elsewhere(job, pod):  # its output's annotation not seen yet?
                with contextlib.suppress(NotFound):
                    job = self.cache.jobs[(key[0], node.job)] = await self.api.get_job(key[0], node.job)
            attempt = AttemptId(namespace=key[0], run_uid=uid, node=node.id, attempt=node.attempts)
            outcome = read_outcome(job=job, pod=pod, attempt=attempt)
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


def _kind(source: InputFrom) -> str:
    return "ConfigMap" if source.config_map_key_ref is not None else "Secret"


def _parsed_input(text: str) -> InputRead:
    try:
        value = json.loads(text)
    except ValueError as error:
        return InputRead(problem=f"not JSON ({error})")
    if isinstance(value, dict):
        return InputRead(value=value)
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return InputRead(problem=f"it is {kinds.get(type(value), 'null')}")
