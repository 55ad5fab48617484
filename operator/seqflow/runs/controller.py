"""The WorkflowRun controller assembled: Kopf's watch events land in `on_*_event`, which only
update the caches and enqueue the run's key; a bounded pool of workers takes keys from the
de-duplicating `WorkQueue` and reconciles one run at a time (runs/reconciler.py). Backoff is a
delayed re-add of the key; nothing polls. Runs that come to this replica (a restart, a bucket
taken over) are reconciled only once the progress journal has been read."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from seqflow.api.bodies import Key, key_of, labels_of, uid_of, workflow_of
from seqflow.api.models import JsonObject
from seqflow.clock import Clock, SystemClock
from seqflow.cluster.events import EventRecorder
from seqflow.cluster.kube import KubeApi
from seqflow.controller.queue import WorkQueue
from seqflow.controller.worker import Background, Workers
from seqflow.engine import EngineOptions
from seqflow.executors.inprocess import HandlerRunner
from seqflow.executors.jobs import LABEL_RUN, run_of, step_of_pod
from seqflow.executors.managed import managed
from seqflow.executors.outcomes import job_finished, pod_finished, slim_pod
from seqflow.metrics import Metrics, WorkflowRuns
from seqflow.runs.actuator import Actuator, StepOptions
from seqflow.runs.admission import Admission, waiting_for
from seqflow.runs.cache import Cache, workflow_named
from seqflow.runs.census import census
from seqflow.runs.fast import FastSteps
from seqflow.runs.flush import HistoryFlush, HistorySink
from seqflow.runs.managed import ManagedJobs
from seqflow.runs.observe import Observer
from seqflow.runs.ownership import Ownership, Owns, hands_over_nothing, owns_everything
from seqflow.runs.progress import ALL_RETRIES, Journal, Progress
from seqflow.runs.reconciler import Planner, Reconciler
from seqflow.runs.revisions import Revisions
from seqflow.runs.state import RunStates
from seqflow.runs.steplogs import LogStore, StepLogs
from seqflow.runs.traces import RunSpans
from seqflow.runs.values import Values
from seqflow.runs.workflows import Workflows
from seqflow.runs.writes import RunWriter, wake_parent


@dataclass(frozen=True)
class RunOptions:
    workers: int
    event_queue_size: int
    engine: EngineOptions
    steps: StepOptions = field(default_factory=StepOptions)
    write_delay_seconds: float = 0.0  # how long progress through in-process steps may go unwritten
    journal_read_seconds: float = 10.0  # how long runs that came here wait for an unreadable journal
    drain_seconds: float = 2.0  # how long work under way may go on when its bucket is handed over
    step_log_bytes: int = 0  # the tail kept of each attempt's log; 0: none


class RunController:
    def __init__(
        self,
        *,
        api: KubeApi,
        runner: HandlerRunner,
        history: HistorySink,
        journal: Journal,
        values: Values,
        log_store: LogStore,
        metrics: Metrics,
        handler_names: frozenset[str],
        options: RunOptions,
        owns: Owns = owns_everything,
        handing_over: Owns = hands_over_nothing,
        clock: Clock | None = None,
        spans: RunSpans | None = None,
    ) -> None:
        """`owns` says which runs this replica serves, `handing_over` which of them it is giving
        up (their work under way ends, nothing new starts): see buckets.py."""
        self._clock = clock = clock or SystemClock()
        spans = spans or RunSpans.off()
        self._options = options
        self._cache = cache = Cache()
        self._states = states = RunStates()
        self._queue = queue = WorkQueue[Key]()
        self._ownership = ownership = Ownership(cache, owns=owns, handing_over=handing_over)
        self._events = events = EventRecorder(api, queue_size=options.event_queue_size, clock=clock)
        self._background = background = Background()
        self._progress = progress = Progress(
            journal, clock=clock, on_known=self._progress_known, read_seconds=options.journal_read_seconds
        )
        self._workflows = Workflows(
            api=api,
            cache=cache,
            ownership=ownership,
            revisions=Revisions(api=api, cache=cache),
            handler_names=handler_names,
            clock=clock,
            background=background,
            changed=self._workflow_changed,
        )
        self._admission = admission = Admission(cache, queue)
        logs = StepLogs(api=api, store=log_store, background=background, limit=options.step_log_bytes)
        managed = ManagedJobs(api=api, cache=cache, clock=clock)
        writer = RunWriter(
            api=api, runs=cache.runs, queue=queue, events=events, metrics=metrics, clock=clock, spans=spans
        )
        actuator = Actuator(
            api=api,
            cache=cache,
            states=states,
            progress=progress,
            ownership=ownership,
            queue=queue,
            events=events,
            runner=runner,
            metrics=metrics,
            values=values,
            clock=clock,
            options=options.steps,
            logs=logs,
            spans=spans,
            managed=managed,
        )
        planner = Planner(engine=options.engine, clock=clock)
        reconciler = Reconciler(
            runs=cache.runs,
            states=states,
            ownership=ownership,
            progress=progress,
            admission=admission,
            workflows=self._workflows,
            observer=Observer(
                api=api,
                cache=cache,
                states=states,
                progress=progress,
                admission=admission,
                ownership=ownership,
                metrics=metrics,
                values=values,
                handler_names=handler_names,
                history=history,
                logs=logs,
                spans=spans,
                managed=managed,
            ),
            planner=planner,
            fast=FastSteps(
                states=states,
                progress=progress,
                ownership=ownership,
                actuator=actuator,
                planner=planner.plan,
                clock=clock,
                write_delay_seconds=options.write_delay_seconds,
            ),
            writer=writer,
            flush=HistoryFlush(
                history=history, states=states, queue=queue, writer=writer, background=background
            ),
            actuator=actuator,
            values=values,
        )
        self._workers = Workers(
            queue=queue,
            reconcile=reconciler.reconcile,
            what="run",
            on_error=metrics.reconcile_errors.inc,
            ready=progress.wait_read,
        )

    # ----- lifecycle -----

    def start(self) -> None:
        self._progress.read()
        self._workers.start(self._options.workers, name="seqflow-worker")
        self._events.start()

    async def stop(self) -> None:
        await self._workers.stop()
        attempts = self._states.tasks()
        for attempt in attempts:
            attempt.cancel()
        await asyncio.gather(*attempts, return_exceptions=True)
        await self._background.stop()
        await self._progress.stop()
        await self._events.stop()

    # ----- ownership (active-active replicas) -----

    def take_owned(self) -> None:
        """Runs came to this replica: look at each of them (their timers were the old owner's),
        once the journal has been read."""
        self._progress.read()
        self._enqueue_served()
        self._workflows.report_all()

    def drop_unowned(self) -> None:
        """Runs went to another replica: stop their attempts under way at once (the new owner
        finds them interrupted); what this process journaled of them is read back like another's."""
        self._progress.forget_own()
        for state in self._states:
            if not self._ownership.serves(state.key):
                state.progress_known = False  # (its next owner may journal past its status)
                state.stop_attempts()

    async def drain_handed_over(self) -> None:
        """Before runs are handed over (they start nothing new meanwhile): let the rounds and the
        attempts under way on them end and their results be written, for at most a while."""
        deadline = self._clock.monotonic() + self._options.drain_seconds
        while self._clock.monotonic() < deadline and (
            any(self._ownership.giving_up(key) for key in self._workers.reconciling())
            or any(self._ownership.giving_up(s.key) for s in self._states if s.busy)
        ):
            await asyncio.sleep(0.02)

    def _progress_known(self) -> None:
        """The journal can be read again: the runs held meanwhile go on."""
        for state in self._states:
            state.progress_known = False
        self._enqueue_served()

    def _enqueue_served(self) -> None:
        for key in [key_of(body) for body in self._cache.runs.values()]:
            if self._ownership.serves(key):
                self._queue.add(key)

    # ----- the run cache, for the read API -----

    def census(self) -> list[WorkflowRuns]:
        """The unfinished runs this replica serves, by namespace and Workflow (for the metrics)."""
        return census(self._cache.runs.values(), now=self._clock.now(), serves=self._ownership.serves)

    def pending_history(self) -> int:
        """Activity log entries in the cached statuses, not yet in the history store."""
        return self._cache.runs.pending_history()

    def live_run(self, namespace: str, name: str) -> JsonObject | None:
        return self._cache.runs.get((namespace, name))

    def live_runs(self) -> list[JsonObject]:
        return self._cache.runs.values()

    # ----- events from Kopf -----

    def on_run_event(self, event_type: str | None, body: JsonObject) -> None:
        key = key_of(body)
        if event_type == "DELETED":
            uid = uid_of(body)
            self._cache.runs.drop(key)
            self._workers.forget(key)
            self._progress.forget(uid, self._states.forget(uid), retried=ALL_RETRIES)
            self._admission.finished(key[0], workflow_of(body))
            parent = run_of(body)
            if parent is not None:  # a child gone: its parent looks again
                self._queue.add((key[0], parent))
            return
        before = self._cache.runs.get(key)
        if self._cache.runs.observe(body):
            self._queue.add(key)
            wake_parent(self._queue, body, before)

    def on_workflow_event(self, event_type: str | None, body: JsonObject) -> None:
        self._workflows.on_event(event_type, body)

    def _workflow_changed(self, workflow: Key, limit_changed: bool) -> None:
        for key in waiting_for(self._cache, workflow[0], workflow_named(workflow)):
            self._queue.add(key)
        if limit_changed:
            self.take_owned()  # its runs may be served by another replica now (see ownership.py)

    def on_job_event(self, event_type: str | None, body: JsonObject) -> None:
        key = key_of(body)
        if event_type == "DELETED":
            self._cache.jobs.pop(key, None)
        else:
            self._cache.jobs[key] = body
        # Its run, or (for a Job orphaned by a deleted run) a run of the same name it may block.
        run = run_of(body) or labels_of(body).get(LABEL_RUN)
        if run is not None and (key[0], run) in self._cache.runs:
            self._queue.add((key[0], run), urgent=job_finished(body))

    def on_pod_event(self, event_type: str | None, body: JsonObject) -> None:
        """A pod of one of our Jobs, or a step's own pod: its end is the attempt's, read without
        waiting for a Job. A step's own pod deleted before it ended is created again."""
        step = step_of_pod(body)
        if step is None:
            return
        key = (key_of(body)[0], step)
        job = self._cache.jobs.get(key)
        run = run_of(job) if job is not None else run_of(body)
        if event_type == "DELETED":
            known = self._cache.pods.get(key)
            if known is not None and uid_of(known) == uid_of(body):
                del self._cache.pods[key]
                if (job is None or managed(job)) and run is not None and (key[0], run) in self._cache.runs:
                    self._queue.add((key[0], run))
            return
        self._cache.pods[key] = slim_pod(body)
        if run is not None and pod_finished(body) and (key[0], run) in self._cache.runs:
            self._queue.add((key[0], run), urgent=True)
