"""Carrying out a written decision: one `match` over the engine's actions (Events, timers,
in-process attempts, Jobs or pods, child runs, cancels, deletions), so that none can be ignored.
An in-process attempt runs as a task of its own that posts its result back; a Job or child run
that cannot be created leaves why in the run's state, for the next plan."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import assert_never

from opentelemetry import trace
from opentelemetry.trace import Span

from seqflow.api.artifacts import AttemptId
from seqflow.api.bodies import Key, key_of, uid_of, workflow_of
from seqflow.api.models import JsonObject, PinnedMember, PinnedTask, Reason, StoredArtifact
from seqflow.api.values import ref_of
from seqflow.clock import Clock
from seqflow.cluster.events import EventRecorder
from seqflow.cluster.kube import Conflict, Forbidden, Invalid, KubeApi, NotFound
from seqflow.controller.queue import WorkQueue
from seqflow.engine import (
    AttemptResult,
    CancelHandler,
    ControlChildRun,
    CreateChildRun,
    CreateJob,
    Decision,
    DeleteJob,
    DeleteRun,
    PostEvent,
    RunHandler,
    WakeAt,
)
from seqflow.executors.artifacts import ArtifactStore
from seqflow.executors.attempts import AttemptClaim, AttemptLinks
from seqflow.executors.children import child_run_manifest
from seqflow.executors.http import HttpCaller
from seqflow.executors.inprocess import HandlerRunner, TaskContext
from seqflow.executors.jobs import (
    INLINE_INPUT_BYTES,
    ArtifactLinks,
    AttemptUrls,
    RunRef,
    job_manifest,
    owned_by,
    pod_manifest,
    run_of,
)
from seqflow.executors.managed import MANAGED_JOBS, managed
from seqflow.executors.outcomes import slim_pod
from seqflow.executors.steplogs import capture
from seqflow.history.logs import AttemptLog
from seqflow.metrics import Metrics
from seqflow.runs.cache import Cache
from seqflow.runs.managed import ManagedJobs
from seqflow.runs.ownership import Ownership
from seqflow.runs.progress import Progress
from seqflow.runs.state import RunState, RunStates
from seqflow.runs.steplogs import StepLogs
from seqflow.runs.traces import RunSpans
from seqflow.runs.values import Values
from seqflow.settings import JobStepsAs
from seqflow.tracing import LINK_ANNOTATION


@dataclass(frozen=True)
class StepOptions:
    steps_as: JobStepsAs = "Job"  # a Job step's attempt: a Job, a Job seqflow runs, or a pod alone
    job_ttl_seconds: int | None = None
    links: AttemptLinks | None = None  # where Job steps fetch large inputs and send large outputs
    artifacts: ArtifactStore | None = None  # where Job steps' files are kept
    http: HttpCaller | None = None  # what makes http steps' requests


@dataclass(frozen=True, kw_only=True)
class Actuator:
    api: KubeApi
    cache: Cache
    states: RunStates
    progress: Progress
    ownership: Ownership
    queue: WorkQueue[Key]
    events: EventRecorder
    runner: HandlerRunner
    metrics: Metrics
    values: Values
    clock: Clock
    options: StepOptions
    logs: StepLogs
    spans: RunSpans
    managed: ManagedJobs

    async def act(self, key: Key, body: JsonObject, decision: Decision) -> bool:
        """Carry out a written decision; True when what it found needs another round now."""
        again = False
        for action in decision.actions:
            match action:
                case PostEvent():
                    self.events.post(body, action)
                case WakeAt():
                    self.queue.add_after(key, action.delay_from(self.clock.now()).total_seconds())
                case RunHandler():
                    if self.ownership.serves(key):  # else its new owner finds it interrupted
                        self.start_handler(key, body, action, retried=decision.status.retried)
                case CreateJob():
                    again = await self._create_job(key, body, action) or again
                case CreateChildRun():
                    again = await self._create_child(key, body, action) or again
                case ControlChildRun():
                    await self._control_child(key[0], action)
                case CancelHandler():
                    state = self.states.get(uid_of(body))
                    attempt = state.running.get((action.node, action.attempt)) if state else None
                    if attempt is not None:
                        attempt.cancel()
                case DeleteJob():
                    await self._delete_job(key[0], action.name)
                case DeleteRun():
                    with contextlib.suppress(NotFound):
                        await self.api.delete_run(*key)
                case _:
                    assert_never(action)
        return again

    def start_handler(
        self, key: Key, body: JsonObject, action: RunHandler, *, retried: int, awaited: bool = False
    ) -> asyncio.Task[None] | None:
        """Run an in-process attempt (of the run's `retried`-th retry) as a task of its own that
        posts its result back (so a cancel can stop it and the worker is free meanwhile), unless
        a worker awaits it. An attempt started already, here or by another process (the
        journal says), is not started again: its task, or None when its result waits."""
        uid = uid_of(body)
        state = self.states.of(uid, key)
        attempt = (action.node, action.attempt)
        if attempt in state.running:
            return state.running[attempt]
        if attempt in state.results:
            return None  # it ran (while its start was being written): its result waits
        if self.progress.started_elsewhere(uid, state, action, retried=retried):
            if not awaited:
                self.queue.add(key, urgent=True)
            return None
        if awaited:
            state.awaited.add(attempt)
        task = asyncio.create_task(
            self._attempt(key, body, state, action),
            name=f"seqflow-attempt-{key[1]}-{action.node}-{action.attempt}",
        )
        state.running[attempt] = task
        task.add_done_callback(lambda _: state.running.pop(attempt, None))
        return task

    async def _attempt(self, key: Key, body: JsonObject, state: RunState, action: RunHandler) -> None:
        began, started = time.perf_counter(), self.clock.now()
        span = self.spans.attempt_span(body, node=action.node, attempt=action.attempt)
        context = _context(body, action, span=span)
        with capture(self.logs.limit) as log, trace.use_span(span):  # what the handler's own spans join
            if action.task.http is not None:
                result = await self._call(action, namespace=context.namespace)
            elif _passes_files(action.task):
                result = await self._run_with_files(action, context)
            else:
                result = await self.runner.run(action, context)
        if log.size:
            kept = AttemptLog(uid_of(body), action.node, action.attempt, log.text, log.size)
            self.logs.keep(context.namespace, kept)
        self.metrics.attempt(
            namespace=context.namespace,
            workflow=workflow_of(body),
            task=action.node,
            succeeded=result.succeeded,
            seconds=time.perf_counter() - began,
        )
        self.spans.attempt(
            body,
            node=action.node,
            attempt=action.attempt,
            start=started,
            end=self.clock.now(),
            error=result.error,
        )
        state.results[(action.node, action.attempt)] = result
        if (action.node, action.attempt) not in state.awaited:
            self.queue.add(key, urgent=True)  # the run moves on before new work starts

    async def _call(self, action: RunHandler, *, namespace: str) -> AttemptResult:
        if self.options.http is None:
            error = "http steps are not enabled in this process"
            return AttemptResult(node=action.node, attempt=action.attempt, error=error, permanent=True)
        return await self.options.http.call(action, namespace=namespace)

    async def _run_with_files(self, action: RunHandler, context: TaskContext) -> AttemptResult:
        """An in-process attempt with its files in a directory of its own: the inputs fetched
        before the call, the declared outputs kept after it."""
        store, declared = self.options.artifacts, action.task.artifacts
        assert declared is not None
        if store is None:
            return _no_store(action.node, action.attempt)
        attempt = AttemptId(
            namespace=context.namespace, run_uid=context.run_uid, node=action.node, attempt=action.attempt
        )
        with tempfile.TemporaryDirectory(prefix="seqflow-files-") as directory:
            files = Path(directory)
            for file in action.artifacts:
                try:
                    await store.download(file.key, files / file.name)
                except Exception as error:  # obstore's errors: missing, refused, away
                    message = f'input artifact "{file.name}" could not be fetched: {error}'
                    return AttemptResult(node=action.node, attempt=action.attempt, error=message)
            result = await self.runner.run(action, replace(context, files=files))
            if not result.succeeded:
                return result
            missing = [o.name for o in declared.outputs if not (files / o.name).is_file()]
            if missing:
                absent = (
                    f"the handler did not write its output artifacts {', '.join(missing)} in context.files"
                )
                return replace(result, output=None, error=absent, reason=Reason.ARTIFACT_MISSING)
            kept = []
            for output in declared.outputs:
                key = attempt.artifact_key(output.name)
                try:
                    size, digest = await store.upload(files / output.name, key)
                except Exception as error:  # obstore's errors: refused, away
                    message = f'output artifact "{output.name}" could not be kept: {error}'
                    return replace(result, output=None, error=message)
                kept.append(StoredArtifact(name=output.name, key=key, size=size, sha256=digest))
            return replace(result, artifacts=tuple(kept))

    async def _create_job(self, key: Key, body: JsonObject, action: CreateJob) -> bool:
        """Create an attempt's Job (or its pod alone); True when it cannot be (blocked,
        refused): plan again."""
        run = _ref(body)
        state = self.states.of(run.uid, key)
        prepared = await self._job_input(run, state, action)
        if prepared is None:
            return True
        action, urls = prepared
        if _passes_files(action.task):
            files = await self._artifact_links(run, state, action)
            if files is None:
                return True
            urls = replace(urls, artifacts=files)
        urls = replace(urls, trace=self.spans.pod_environment(body, node=action.node, attempt=action.attempt))
        if self.options.steps_as == "Pod":
            kind, manifest = "Pod", pod_manifest(run=run, action=action, urls=urls)
            create, get = self.api.create_pod, self.api.get_pod
        else:
            ttl = self.options.job_ttl_seconds
            kind, manifest = "Job", job_manifest(run=run, action=action, ttl_seconds=ttl, urls=urls)
            create, get = self.api.create_job, self.api.get_job
            if self.options.steps_as == "ManagedJob":
                manifest["spec"]["managedBy"] = MANAGED_JOBS
        try:
            created = await create(run.namespace, manifest)
        except Conflict:  # created before: by us, for this very attempt?
            created = await get(run.namespace, action.name)
            if not owned_by(created, run.uid):
                owner = run_of(created)
                whose = f"an earlier WorkflowRun {owner}" if owner else "no run (it was orphaned)"
                state.blocked[action.node] = (
                    f"a {kind} named {action.name} already exists and belongs to {whose}; delete it "
                    f"(kubectl delete {kind.lower()} -n {run.namespace} {action.name}) to let this run go on"
                )
                return True
            self.queue.add(key)  # it may have finished while nobody watched
        except Invalid as error:  # the manifest itself is refused: no retry helps
            _refused(state, node=action.node, attempt=action.attempt, what=kind, error=error)
            return True
        except Forbidden as error:
            state.forbidden(
                action.node, what=f"{kind.lower()}s", namespace=run.namespace, message=error.message
            )
            return True
        if kind == "Pod":
            self.cache.pods[(run.namespace, action.name)] = slim_pod(created)
            return False
        self.cache.jobs[(run.namespace, action.name)] = created
        return managed(created) and not await self.managed.start_pod(created, state=state, node=action.node)

    async def _job_input(
        self, run: RunRef, state: RunState, action: CreateJob
    ) -> tuple[CreateJob, AttemptUrls] | None:
        """The attempt with its input whole where it goes in the manifest, and its links; None
        when it cannot be created now (why is in the run's state)."""
        links = self.options.links
        ref = ref_of(action.input)
        claim = AttemptClaim(
            namespace=run.namespace,
            run=run.name,
            run_uid=run.uid,
            node=action.node,
            attempt=action.attempt,
            job=action.name,
            input=ref.digest if ref is not None else None,
        )
        token = links.token(claim) if links is not None else None
        output_url = links.output_url(token) if links is not None and token is not None else None
        if ref is None:
            return action, AttemptUrls(output=output_url)
        if ref.size > INLINE_INPUT_BYTES:
            if links is None or token is None:
                error = (
                    f"the input is {ref.size} bytes, more than the {INLINE_INPUT_BYTES} a Job's manifest "
                    "takes: set SEQFLOW_API_URL (the operator's HTTP API as pods reach it) so that "
                    "Job steps fetch large inputs"
                )
                state.results[(action.node, action.attempt)] = AttemptResult(
                    node=action.node, attempt=action.attempt, error=error, permanent=True
                )
                return None
            return action, AttemptUrls(input=links.input_url(token), output=output_url)
        found = await self.values.read(run.namespace, {ref.digest})
        if ref.digest not in found:
            state.blocked[action.node] = (
                f"its input, stored value {ref.digest}, cannot be read from the history store now"
            )
            return None
        return replace(action, input=found[ref.digest]), AttemptUrls(output=output_url)

    async def _artifact_links(self, run: RunRef, state: RunState, action: CreateJob) -> ArtifactLinks | None:
        """The links to an attempt's files; None when it cannot be created now (why is in the
        run's state)."""
        declared = action.task.artifacts
        assert declared is not None
        store = self.options.artifacts
        if store is None or not store.image:  # (a Job's pod moves its files with seqflow's image)
            state.results[(action.node, action.attempt)] = _no_store(action.node, action.attempt)
            return None
        attempt = AttemptId(
            namespace=run.namespace, run_uid=run.uid, node=action.node, attempt=action.attempt
        )
        names = [o.name for o in declared.outputs]
        try:
            gets = await store.links("GET", [f.key for f in action.artifacts])
            puts = await store.links("PUT", [attempt.artifact_key(name) for name in names])
        except Exception as error:  # obstore's errors: a setting it cannot sign with
            state.blocked[action.node] = f"the links to its files cannot be signed: {error}"
            return None
        inputs = tuple(zip([f.name for f in action.artifacts], gets, strict=True))
        return ArtifactLinks(image=store.image, inputs=inputs, outputs=tuple(zip(names, puts, strict=True)))

    async def _create_child(self, key: Key, body: JsonObject, action: CreateChildRun) -> bool:
        """Create a sub-workflow's child run; True when one of its name is not this run's."""
        parent = _ref(body)
        state = self.states.of(parent.uid, key)
        manifest = child_run_manifest(parent=parent, action=action)
        linked = self.spans.traceparent(body, node=action.node, attempt=action.attempt)
        if linked is not None:
            manifest["metadata"]["annotations"][LINK_ANNOTATION] = linked
        try:
            child = await self.api.create_run(parent.namespace, manifest)
        except Conflict:  # created before: by us, for this very attempt?
            child = await self.api.get_run(parent.namespace, action.name)
            if not owned_by(child, parent.uid):
                state.blocked[action.node] = (
                    f"a WorkflowRun named {action.name} already exists and is not this run's child; "
                    f"delete it (kubectl delete workflowrun -n {parent.namespace} {action.name}) "
                    "to let this run go on"
                )
                return True
            self.queue.add(key)  # it may have finished while nobody watched
        except Invalid as error:  # the child itself is refused: no retry helps
            _refused(state, node=action.node, attempt=action.attempt, what="child run", error=error)
            return True
        except Forbidden as error:
            state.forbidden(
                action.node, what="workflowruns", namespace=parent.namespace, message=error.message
            )
            return True
        self.cache.runs.refresh(child)
        return False

    async def _control_child(self, namespace: str, action: ControlChildRun) -> None:
        spec = {"suspend": action.suspend} if action.suspend is not None else {}
        if action.cancel is not None:
            spec["cancel"] = action.cancel
        with contextlib.suppress(NotFound):
            await self.api.patch_run(namespace, action.name, {"spec": spec})

    async def _delete_job(self, namespace: str, name: str) -> None:
        """Stop an attempt: delete its Job (or its pod, SEQFLOW_JOB_STEPS_AS=Pod)."""
        with contextlib.suppress(NotFound):
            await (self.api.delete_pod if self.options.steps_as == "Pod" else self.api.delete_job)(
                namespace, name
            )
        self.cache.jobs.pop((namespace, name), None)
        self.cache.pods.pop((namespace, name), None)


def _ref(body: JsonObject) -> RunRef:
    namespace, name = key_of(body)
    return RunRef(namespace=namespace, name=name, uid=uid_of(body))


def _passes_files(step: PinnedTask | PinnedMember) -> bool:
    return step.artifacts is not None and bool(step.artifacts.inputs or step.artifacts.outputs)


def _no_store(node: str, attempt: int) -> AttemptResult:
    error = (
        "this step passes files (artifacts) and the operator has no object store for them: set "
        "SEQFLOW_ARTIFACTS_URL and its credentials, and for Job steps SEQFLOW_ARTIFACTS_IMAGE (the "
        "chart's artifacts.* and its own image)"
    )
    return AttemptResult(
        node=node, attempt=attempt, error=error, permanent=True, reason=Reason.ARTIFACTS_UNAVAILABLE
    )


def _refused(state: RunState, *, node: str, attempt: int, what: str, error: Invalid) -> None:
    """An attempt whose Job or child run the API server refuses fails for good."""
    state.results[(node, attempt)] = AttemptResult(
        node=node, attempt=attempt, error=f"the {what} was refused: {error.message}", permanent=True
    )


def _context(body: JsonObject, action: RunHandler, *, span: Span) -> TaskContext:
    namespace, name = key_of(body)
    return TaskContext(
        namespace=namespace,
        run=name,
        run_uid=uid_of(body),
        task=action.node,
        attempt=action.attempt,
        span=span,
    )
