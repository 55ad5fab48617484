"""The I/O shell around the engine: observe a run, `plan()`, act, patch the status.

Kopf's watch events land in `on_run_event` / `on_workflow_event`, which only update the caches
and enqueue the run's key. A bounded pool of workers takes keys from the de-duplicating
`WorkQueue` and reconciles one run at a time: plan, write the status (guarded by the
resourceVersion it was planned from), post Events, run the next handler, plan again with its
result. Backoff is a delayed re-add of the key; nothing polls.

With a write delay, fast in-process steps run ahead of the status, each start journaled first
(seqflow.history.journal); runs that come to this process are reconciled only once the journal
has been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, assert_never

from pydantic import ValidationError

from seqflow.api.models import (
    FINISHED,
    MAX_DATA_BYTES,
    JsonObject,
    NodePhase,
    NodeType,
    Reason,
    RunPhase,
    WorkflowRunSpec,
    WorkflowRunStatus,
    WorkflowSpec,
    WorkflowStatus,
    upgrade_status,
)
from seqflow.engine import (
    INTERRUPTED,
    AttemptResult,
    CancelHandler,
    ChildRun,
    ControlChildRun,
    CreateChildRun,
    CreateJob,
    Decision,
    DeleteJob,
    DeleteRun,
    EngineOptions,
    EventType,
    Observations,
    PostEvent,
    RunHandler,
    RunView,
    WakeAt,
    WorkflowView,
    fail_internal,
    fail_unrecordable,
    plan,
    workflow_status,
)
from seqflow.events import EventRecorder
from seqflow.executors.children import child_run, child_run_manifest, depth_of, max_descendants_of
from seqflow.executors.inprocess import HandlerRunner, TaskContext
from seqflow.executors.jobs import (
    LABEL_RUN,
    RunRef,
    attempt_duration,
    job_finished,
    job_manifest,
    owned_by,
    pod_finished,
    pod_manifest,
    pod_of_job,
    read_outcome,
    run_of,
    slim_pod,
    step_of_pod,
)
from seqflow.history.journal import Journal, Journaled
from seqflow.history.store import JournalEntry
from seqflow.history.sync import HistoryWriter
from seqflow.kube import ApiError, Conflict, EntityTooLarge, Forbidden, Invalid, KubeApi, NotFound
from seqflow.metrics import Metrics
from seqflow.workqueue import WorkQueue, backoff

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
Owns = Callable[[str, str], bool]  # whether this replica reconciles the run (namespace, name)
DRAIN_SECONDS = 2.0  # how long work under way may go on when its bucket is handed over
JOURNAL_READ_SECONDS = 10.0  # how long runs that came here wait for an unreadable journal
JOURNAL_ALL_RETRIES = 2**31 - 1
FINALIZER = "seqflow.io/history"  # a run is not deleted before its history is written
FINISHED_PHASES = {phase.value for phase in FINISHED}


ORPHAN = "orphan"  # the finalizer of a deletion that leaves the object's dependents alone


def key_of(body: JsonObject) -> Key:
    meta = body["metadata"]
    return meta["namespace"], meta["name"]


def now() -> datetime:
    return datetime.now(UTC)


def status_patch(old: JsonObject, new: JsonObject) -> JsonObject:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`."""
    patch: JsonObject = {key: None for key in old.keys() - new.keys()}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = status_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before or key not in old:
            patch[key] = value
    return patch


class UnreadableStatus(Exception):
    """The run's status is not one seqflow can read (edited by hand, or corrupted)."""


def run_view(body: JsonObject, *, status: WorkflowRunStatus | None = None) -> RunView:
    """The run as the engine sees it (with `status` instead of its own, when given);
    `UnreadableStatus` when its status cannot be parsed (the CRD schema guarantees the spec's
    shape). A status written by an earlier seqflow is converted on the way."""
    meta = body["metadata"]
    if status is None:
        try:
            raw = upgrade_status(body.get("status") or {}, run=meta["name"])
            status = WorkflowRunStatus.model_validate(raw)
        except ValidationError as error:
            raise UnreadableStatus(_first_problem(error)) from None
    return RunView(
        name=meta["name"],
        spec=WorkflowRunSpec.model_validate(body.get("spec") or {}),
        status=status,
        generation=meta.get("generation", 1),
        created_at=datetime.fromisoformat(meta["creationTimestamp"]),
        namespace=meta["namespace"],
        labels=meta.get("labels") or {},
        depth=depth_of(body),
        max_descendants=max_descendants_of(body),
    )


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"status.{where}: {problem['msg']} (input: {str(problem.get('input'))[:200]})"


SLIM_STATUS = ("phase", "conditions", "output", "finishedAt")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def cached_form(body: JsonObject) -> tuple[JsonObject, bool]:
    """What the cache keeps of a run, and whether that is less than the whole of it: never its
    managedFields nor kubectl's last-applied copy of it; of a finished run whose history is
    written, only what other runs and the metrics read of it (its phase, conditions and output,
    for a parent) and no input."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    annotations = meta.get("annotations") or {}
    if LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    status = body.get("status") or {}
    if status.get("phase") not in FINISHED_PHASES or status.get("pendingHistory"):
        return {**body, "metadata": meta}, False
    spec = {k: v for k, v in (body.get("spec") or {}).items() if k != "input"}
    return {
        **body,
        "metadata": meta,
        "spec": spec,
        "status": {k: status[k] for k in SLIM_STATUS if k in status},
    }, True


class RunCache:
    """The newest known body of every run (in its `cached_form`), fed by watch events and by our
    own writes.

    Our writes come back as watch events; their resourceVersions are remembered so that those
    echoes neither replace a newer cached body nor wake a worker for nothing.
    """

    def __init__(self) -> None:
        self._bodies: dict[Key, JsonObject] = {}
        self._slim: set[Key] = set()  # keys whose body is not whole: read it before reconciling
        self._written: dict[Key, set[str]] = {}

    def get(self, key: Key) -> JsonObject | None:
        return self._bodies.get(key)

    def is_slim(self, key: Key) -> bool:
        return key in self._slim

    def __contains__(self, key: Key) -> bool:
        return key in self._bodies

    def values(self) -> list[JsonObject]:
        return list(self._bodies.values())

    def observe(self, body: JsonObject) -> bool:
        """Take a watched body; True when it is news (not the echo of our own write)."""
        key = key_of(body)
        version = body["metadata"]["resourceVersion"]
        written = self._written.get(key)
        if written and version in written:
            written.discard(version)
            return False
        self._keep(key, body)
        return True

    def refresh(self, body: JsonObject) -> None:
        """Take a body read from the API (not our write: its watch event still counts)."""
        self._keep(key_of(body), body)

    def wrote(self, body: JsonObject) -> None:
        key = key_of(body)
        self._keep(key, body)
        self._written.setdefault(key, set()).add(body["metadata"]["resourceVersion"])

    def _keep(self, key: Key, body: JsonObject) -> None:
        self._bodies[key], slim = cached_form(body)
        if slim:
            self._slim.add(key)
        else:
            self._slim.discard(key)

    def drop(self, key: Key) -> None:
        self._bodies.pop(key, None)
        self._slim.discard(key)
        self._written.pop(key, None)

    def active(self) -> int:
        active = (RunPhase.PENDING, RunPhase.RUNNING, RunPhase.COMPENSATING)
        return sum((b.get("status") or {}).get("phase") in active for b in self._bodies.values())

    def pending_history(self) -> int:
        return sum(len((b.get("status") or {}).get("pendingHistory") or ()) for b in self._bodies.values())


@dataclass(frozen=True)
class ReconcilerOptions:
    workers: int
    event_queue_size: int
    job_ttl_seconds: int | None
    engine: EngineOptions
    step_pods: bool = False  # a Job step's attempt is a pod of its own, not a Job
    write_delay_seconds: float = 0.0  # how long progress through in-process steps may go unwritten


class Reconciler:
    def __init__(
        self,
        *,
        api: KubeApi,
        runner: HandlerRunner,
        history: HistoryWriter,
        journal: Journal,
        metrics: Metrics,
        handler_names: frozenset[str],
        options: ReconcilerOptions,
        owns: Owns = lambda namespace, name: True,
        handing_over: Owns = lambda namespace, name: False,
    ) -> None:
        """`owns` says which runs this replica serves, `handing_over` which of them it is giving
        up (their work under way ends, nothing new starts): see buckets.py."""
        self._api = api
        self._owns = owns
        self._handing_over = handing_over
        self._runner = runner
        self._history = history
        self._journal = journal
        self._metrics = metrics
        self._handler_names = handler_names
        self._options = options
        self._runs = RunCache()
        metrics.watch_runs(active=self._runs.active, pending_history=self._runs.pending_history)
        self._workflows: dict[Key, WorkflowView] = {}
        self._workflow_statuses: dict[Key, WorkflowStatus] = {}  # as last written or seen
        self._jobs: dict[Key, JsonObject] = {}
        self._pods: dict[Key, JsonObject] = {}  # by (namespace, Job name): its pod, or a step's own, slim
        self._queue: WorkQueue[Key] = WorkQueue()
        self._events = EventRecorder(api, queue_size=options.event_queue_size)
        # By run uid: attempts that ended and are not yet in a written status; in-process
        # attempts under way; why a Job could not be created.
        self._results: dict[str, dict[tuple[str, int], AttemptResult]] = {}
        self._running: dict[str, dict[tuple[str, int], asyncio.Task[None]]] = {}
        self._awaited: set[tuple[str, str, int]] = set()  # (uid, node, attempt) a worker waits for
        self._run_keys: dict[str, Key] = {}  # uid -> key of the runs with attempts under way or unwritten
        self._reconciling: set[Key] = set()
        self._blocked: dict[str, dict[str, str]] = {}
        self._admissions: dict[Key, asyncio.Lock] = {}  # by (namespace, Workflow) with a limit
        self._flushing: set[str] = set()  # uids of runs whose history is being written now
        self._flushed: dict[str, int] = {}  # by run uid: the store has its entries up to this seq
        self._errors: dict[Key, int] = {}
        # What other processes journaled of runs that came here; the runs with journal entries.
        self._journaled: Journaled = {}
        self._journal_uids: set[str] = set()
        self._journal_read = asyncio.Event()
        self._progress_unknown = False  # the journal could not be read for JOURNAL_READ_SECONDS
        self._progress_known: dict[str, Key] = {}  # meanwhile: runs no other process journaled past
        self._reading: asyncio.Task[None] | None = None
        self._read_again = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    # ----- lifecycle -----

    def start(self) -> None:
        self._read_journal()
        self._tasks = [
            asyncio.create_task(self._work(), name=f"seqflow-worker-{i}")
            for i in range(self._options.workers)
        ]
        self._tasks += self._events.posters()

    async def stop(self) -> None:
        attempts = [t for running in self._running.values() for t in running.values()]
        reading = [self._reading] if self._reading is not None else []
        tasks = [*self._tasks, *self._background, *attempts, *reading]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ----- ownership (active-active replicas) -----

    def _owner_key(self, key: Key) -> Key:
        """What decides which replica serves a run: the run, or, when its Workflow has a
        concurrency limit, the Workflow (one replica admits all of its runs, in order)."""
        body = self._runs.get(key)
        workflow = ((body or {}).get("spec") or {}).get("workflowRef", {}).get("name")
        view = self._workflows.get((key[0], workflow)) if workflow else None
        return (key[0], workflow) if view is not None and workflow and view.spec.concurrency else key

    def _serves(self, key: Key) -> bool:
        return self._owns(*self._owner_key(key))

    def _giving_up(self, key: Key) -> bool:
        return self._handing_over(*self._owner_key(key))

    def take_owned(self) -> None:
        """Runs came to this replica: look at each of them (their timers were the old owner's),
        once the journal has been read."""
        self._read_journal()
        for key in [key_of(body) for body in self._runs.values()]:
            if self._serves(key):
                self._queue.add(key)
        for key in list(self._workflows):
            self._report_workflow(key)

    def drop_unowned(self) -> None:
        """Runs went to another replica: stop their attempts under way at once (the new owner
        finds them interrupted); what this process journaled of them is read back like another's."""
        self._journal.forget_own()
        for uid, key in list(self._progress_known.items()):
            if not self._serves(key):
                del self._progress_known[uid]  # (its next owner may journal past its status)
        for uid, key in list(self._run_keys.items()):
            if not self._serves(key):
                for task in self._running.pop(uid, {}).values():
                    task.cancel()
                self._results.pop(uid, None)
                self._run_keys.pop(uid, None)

    async def drain_handed_over(self) -> None:
        """Before runs are handed over (they start nothing new meanwhile): let the rounds and the
        attempts under way on them end and their results be written, for at most DRAIN_SECONDS."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline and (
            any(self._giving_up(key) for key in self._reconciling)
            or any(self._giving_up(key) for key in self._run_keys.values())
        ):
            await asyncio.sleep(0.02)

    # ----- the progress journal -----

    def _read_journal(self) -> None:
        """Runs come to this process: no run is reconciled before the journal has been read
        (while it cannot be, in-process attempts wait: `_progress_unknown`)."""
        if not self._progress_unknown:
            self._journal_read.clear()
        if self._reading is not None:
            self._read_again = True  # read it once more when this read is done
            return
        self._reading = asyncio.create_task(self._read(), name="seqflow-journal-read")

    async def _read(self) -> None:
        try:
            again = True
            while again:
                self._read_again = False
                journaled = await self._load_journal()
                self._journaled = journaled
                self._journal_uids |= journaled.keys()
                again = self._read_again
        finally:
            self._reading = None
            self._journal_read.set()

    async def _load_journal(self) -> Journaled:
        """The journal, once it can be read. After JOURNAL_READ_SECONDS of failures the runs go
        on, with their in-process attempts held until it has been read."""
        deadline = time.monotonic() + JOURNAL_READ_SECONDS
        failures = 0
        while (journaled := await self._journal.load()) is None:
            failures += 1
            if not self._progress_unknown and time.monotonic() >= deadline:
                logger.warning(
                    "the progress journal cannot be read: in-process attempts wait until it can "
                    "(condition ProgressUnknown); the rest goes on"
                )
                self._progress_unknown = True
                self._journal_read.set()
            delay = backoff(failures, first=0.5, limit=JOURNAL_READ_SECONDS)
            if not self._progress_unknown:  # the runs go on at the deadline, not a backoff past it
                delay = min(delay, max(deadline - time.monotonic(), 0.0))
            await asyncio.sleep(delay)
        if self._progress_unknown:
            self._progress_unknown = False
            self._progress_known.clear()
            logger.info("the progress journal has been read: in-process attempts go on")
            for key in [key_of(body) for body in self._runs.values()]:
                if self._serves(key):
                    self._queue.add(key)
        return journaled

    def _progress_unknown_of(self, key: Key, uid: str, status: WorkflowRunStatus) -> bool:
        """Whether another process may have journaled the run's progress past its status while the
        journal cannot be read: not once its status said nothing was (what this process does
        with it from then on it knows)."""
        if not self._progress_unknown:
            return False
        if not status.progress_journaled:
            self._progress_known[uid] = key
        return uid not in self._progress_known

    def _take_journaled_ends(self, key: Key, uid: str, status: WorkflowRunStatus) -> None:
        """Running attempts that nobody here executes, and that the journal says ended: ended so."""
        journaled = self._journaled.get(uid)
        if not journaled:
            return
        running = self._running.get(uid, {})
        for node in status.nodes:
            attempt = (node.id, node.attempts)
            ended = journaled.get((status.retried, *attempt))
            if node.phase == NodePhase.RUNNING and ended is not None and attempt not in running:
                self._results.setdefault(uid, {}).setdefault(attempt, ended)
                self._run_keys[uid] = key

    def _journaled_attempt(self, key: Key, uid: str, action: RunHandler, *, retried: int) -> bool:
        """Whether the journal has the attempt (another process started it): then its result
        waits as if it had run here, how it ended or, when it did not, interrupted."""
        journaled = self._journaled.get(uid, {})
        if (retried, action.node, action.attempt) not in journaled:
            return False
        ended = journaled.pop((retried, action.node, action.attempt))
        interrupted = AttemptResult(node=action.node, attempt=action.attempt, error=INTERRUPTED)
        self._results.setdefault(uid, {})[(action.node, action.attempt)] = ended or interrupted
        self._run_keys[uid] = key
        return True

    async def _journal_progress(
        self, uid: str, *, ended: list[AttemptResult], ended_in: int, starts: list[RunHandler], retried: int
    ) -> bool:
        """Journal the attempts about to start before their status is written, with the ends
        that lead to them; False when the journal cannot take them (write the status first)."""
        writer = self._journal.writer
        entries = [
            JournalEntry(
                run_uid=uid, retried=ended_in, node=r.node, attempt=r.attempt, writer=writer, result=r
            )
            for r in ended
        ]
        entries += [
            JournalEntry(run_uid=uid, retried=retried, node=a.node, attempt=a.attempt, writer=writer)
            for a in starts
        ]
        if not await self._journal.record(entries):
            return False
        self._journal_uids.add(uid)
        return True

    def _forget_journaled(self, uid: str, *, retried: int) -> None:
        if uid in self._journal_uids:
            self._journal_uids.discard(uid)
            self._journaled.pop(uid, None)
            self._journal.forget(uid, retried=retried)

    # ----- the run cache, for the read API -----

    def live_run(self, namespace: str, name: str) -> JsonObject | None:
        return self._runs.get((namespace, name))

    def live_runs(self) -> list[JsonObject]:
        return self._runs.values()

    # ----- events from Kopf -----

    def on_run_event(self, event_type: str | None, body: JsonObject) -> None:
        key = key_of(body)
        if event_type == "DELETED":
            uid = body["metadata"]["uid"]
            self._runs.drop(key)
            self._queue.forget(key)
            for task in self._running.pop(uid, {}).values():
                task.cancel()
            self._run_keys.pop(uid, None)
            self._results.pop(uid, None)
            self._blocked.pop(uid, None)
            self._flushed.pop(uid, None)
            self._forget_journaled(uid, retried=JOURNAL_ALL_RETRIES)
            self._wake_queued(key[0], (body.get("spec") or {}).get("workflowRef", {}).get("name", ""))
            parent = run_of(body)
            if parent is not None:  # a child gone: its parent looks again
                self._queue.add((key[0], parent))
            return
        before = self._runs.get(key)
        if self._runs.observe(body):
            self._queue.add(key)
            self._wake_parent(body, before)

    def _wake_parent(self, child: JsonObject, before: JsonObject | None) -> None:
        """A child run whose phase changed (as seen, or as written): its parent has news."""
        parent = run_of(child)
        phase = (child.get("status") or {}).get("phase")
        if parent is not None and (before is None or (before.get("status") or {}).get("phase") != phase):
            self._queue.add((child["metadata"]["namespace"], parent), urgent=phase in FINISHED_PHASES)

    def on_workflow_event(self, event_type: str | None, body: JsonObject) -> None:
        key = key_of(body)
        limited_before = key in self._workflows and self._workflows[key].spec.concurrency is not None
        if event_type == "DELETED":
            self._workflows.pop(key, None)
            self._workflow_statuses.pop(key, None)
            self._report_callers(key)
            if limited_before:
                self.take_owned()  # its runs may be another replica's now
            return
        try:
            spec = WorkflowSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            logger.warning("ignoring Workflow %s/%s: %s", *key, error)
            return
        try:
            self._workflow_statuses[key] = WorkflowStatus.model_validate(body.get("status") or {})
        except ValidationError:
            self._workflow_statuses[key] = WorkflowStatus()
        self._workflows[key] = WorkflowView(spec=spec, generation=body["metadata"].get("generation", 1))
        self._report_workflow(key)
        self._report_callers(key)
        self._wake_runs_waiting_for(key)
        if limited_before != (spec.concurrency is not None):
            self.take_owned()  # its runs may be served by another replica now (see `_owner_key`)

    def _workflows_in(self, namespace: str) -> dict[str, WorkflowSpec]:
        return {name: view.spec for (ns, name), view in self._workflows.items() if ns == namespace}

    def _report_callers(self, key: Key) -> None:
        """A Workflow came, changed or went: check its namespace's other Workflows again (one
        may run it as a sub-workflow, directly or through others)."""
        for other in [k for k in self._workflows if k[0] == key[0] and k != key]:
            self._report_workflow(other)

    def _report_workflow(self, key: Key) -> None:
        """Check the Workflow (handlers, expressions, input schema, sub-workflows: compiled now,
        not when a run reaches them) and write its Ready condition when it changed (the replica
        that serves it, when there are several)."""
        if not self._owns(*key):
            return
        view = self._workflows[key]
        previous = self._workflow_statuses.get(key, WorkflowStatus())
        status = workflow_status(
            view.spec,
            name=key[1],
            generation=view.generation,
            handlers=self._handler_names,
            workflows=self._workflows_in(key[0]),
            previous=previous,
            now=now(),
        )
        if status == previous:
            return
        self._workflow_statuses[key] = status

        async def write() -> None:
            try:
                await self._api.patch_workflow_status(*key, {"status": status.to_wire()})
            except ApiError as error:
                logger.warning("could not write the status of Workflow %s/%s: %s", *key, error)
                self._workflow_statuses.pop(key, None)  # written again at its next event

        self._in_background(write())

    def on_job_event(self, event_type: str | None, body: JsonObject) -> None:
        key = key_of(body)
        if event_type == "DELETED":
            self._jobs.pop(key, None)
        else:
            self._jobs[key] = body
        # Its run, or (for a Job orphaned by a deleted run) a run of the same name it may block.
        run = run_of(body) or (body["metadata"].get("labels") or {}).get(LABEL_RUN)
        if run is not None and (key[0], run) in self._runs:
            self._queue.add((key[0], run), urgent=job_finished(body))

    def on_pod_event(self, event_type: str | None, body: JsonObject) -> None:
        """A pod of one of our Jobs, or a step's own pod: its end is the attempt's, read without
        waiting for a Job. A step's own pod deleted before it ended is created again."""
        step = step_of_pod(body)
        if step is None:
            return
        key = (body["metadata"]["namespace"], step)
        job = self._jobs.get(key)
        run = run_of(job) if job is not None else run_of(body)
        if event_type == "DELETED":
            if (self._pods.get(key) or {}).get("metadata", {}).get("uid") == body["metadata"]["uid"]:
                del self._pods[key]
                if job is None and run is not None and (key[0], run) in self._runs:
                    self._queue.add((key[0], run))
            return
        self._pods[key] = slim_pod(body)
        if run is not None and pod_finished(body) and (key[0], run) in self._runs:
            self._queue.add((key[0], run), urgent=True)

    def _wake_runs_waiting_for(self, workflow: Key) -> None:
        namespace, name = workflow
        for body in self._runs.values():
            status = body.get("status") or {}
            ref = (body.get("spec") or {}).get("workflowRef") or {}
            if (
                body["metadata"]["namespace"] == namespace
                and ref.get("name") == name
                and "pinnedTasks" not in status
                and status.get("phase") not in FINISHED_PHASES
            ):
                self._queue.add(key_of(body))

    # ----- workers -----

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            while not self._journal_read.is_set():  # (cleared again while this worker woke up)
                await self._journal_read.wait()
            self._reconciling.add(key)
            try:
                await self._reconcile(key)
                self._errors.pop(key, None)
            except Exception:
                self._metrics.reconcile_errors.inc()
                failures = self._errors.get(key, 0) + 1
                self._errors[key] = failures
                delay = backoff(failures)
                logger.exception(
                    "reconciling run %s/%s failed (%d in a row); retrying in %.1f s", *key, failures, delay
                )
                self._queue.retry_after(key, delay)
            finally:
                self._reconciling.discard(key)
                self._queue.done(key)

    async def _reconcile(self, key: Key) -> None:
        body = self._runs.get(key)
        if body is not None and self._runs.is_slim(key) and self._serves(key):
            body = await self._reread(key)  # finished and cached in part: the whole of it
        while body is not None and self._serves(key):
            body = await self._step(key, body)

    async def _step(self, key: Key, body: JsonObject) -> JsonObject | None:
        """One round: plan, write, act. Returns the body for another round, or None when the
        run needs nothing more for now."""
        meta = body["metadata"]
        finalizers = meta.get("finalizers") or []
        deleting = bool(meta.get("deletionTimestamp"))
        if FINALIZER not in finalizers:
            if deleting:
                return None  # nothing of ours holds it any more
            try:
                return await self._set_finalizers(key, body, [*finalizers, FINALIZER])
            except EntityTooLarge as error:
                self._give_up_too_large(key, body, error)
                return None
        try:
            run = run_view(body)
        except UnreadableStatus as problem:
            return await self._fail_unreadable(key, body, str(problem))
        written = await self._plan_and_write(key, body, run, deleting=deleting)
        if written is None:
            return None
        body, decision = written
        if decision is None:  # a conflict: plan again on what is there now
            return body
        if deleting:  # what runs is stopped now, not left to the garbage collector
            kinds: tuple[type, ...] = (CancelHandler, ControlChildRun, DeleteJob)
            if ORPHAN in finalizers:  # `--cascade=orphan`: its Jobs and child runs stay as they are
                kinds = (CancelHandler,)
            stops = tuple(a for a in decision.actions if isinstance(a, kinds))
            await self._act(key, body, replace(decision, actions=stops))
            await self._finalize(key, body)
            return None
        self._flush_in_background(key, body, replace(run, status=decision.status))
        return body if await self._act(key, body, decision) else None

    async def _plan_and_write(
        self, key: Key, body: JsonObject, run: RunView, *, deleting: bool
    ) -> tuple[JsonObject, Decision | None] | None:
        """Plan the run and write its new status. Returns the written body and the decision;
        the body as it is now and no decision after a conflict; None when the run is gone or
        can take no status at all."""
        workflow = await self._workflow_of(key, run)
        limited = run.status.pinned_tasks is None and workflow is not None and workflow.spec.concurrency
        if not limited:
            return await self._plan_and_write_observed(
                key, body, run, workflow, deleting=deleting, may_delay=not deleting
            )
        # Runs of a Workflow with a concurrency limit are admitted one at a time, so that two
        # workers never both take the last free slot.
        lock = self._admissions.setdefault((key[0], run.spec.workflow_ref.name), asyncio.Lock())
        async with lock:
            return await self._plan_and_write_observed(
                key, body, run, workflow, deleting=deleting, may_delay=False
            )

    async def _plan_and_write_observed(
        self,
        key: Key,
        body: JsonObject,
        run: RunView,
        workflow: WorkflowView | None,
        *,
        deleting: bool,
        may_delay: bool,
    ) -> tuple[JsonObject, Decision | None] | None:
        uid = body["metadata"]["uid"]
        self._take_journaled_ends(key, uid, run.status)
        results = dict(self._results.get(uid, {}))
        blocked = self._blocked.pop(uid, {})
        job_results, jobs_running = await self._observe_jobs(key, body, run)
        observed = Observations(
            workflow=workflow,
            workflows=self._workflows_in(key[0]) if run.status.pinned_tasks is None else {},
            children=self._observe_children(key, body, run),
            queued=self._queue_place(key, body, run, workflow),
            handlers=self._handler_names,
            results=(*results.values(), *job_results),
            handlers_running=frozenset(self._running.get(uid, {})),
            jobs_running=jobs_running,
            blocked=blocked,
            history_written_through=self._flushed.get(uid, 0),
            deleted=deleting,
            hold=self._giving_up(key),
            progress_unknown=self._progress_unknown_of(key, uid, run.status),
        )
        decision = self._plan(key, run, observed)
        if may_delay and self._options.write_delay_seconds > 0:
            decision = await self._run_fast_steps(key, body, run, observed, decision, seen=results)
        if decision.status != run.status:
            journaled = self._journal.available  # (false: nothing is journaled before the next write)
            if decision.status.progress_journaled != journaled:
                decision = replace(
                    decision, status=decision.status.model_copy(update={"progress_journaled": journaled})
                )
            try:
                written = await self._write_decision(key, body, run, decision)
            except EntityTooLarge as error:
                written = await self._fail_too_large(key, body, run, error)
            if written is None or written[1] is None:
                return written
            body, decision = written[0], written[1]  # (a run failed as too large: what failed it)
        kept = self._results.get(uid, {})
        for result_key in results:  # in the status now (or stale): no longer needed
            kept.pop(result_key, None)
        self._forget_if_idle(uid)
        if decision.status.finished and not run.status.finished:
            self._wake_queued(key[0], run.spec.workflow_ref.name)
            self._forget_journaled(uid, retried=decision.status.retried)
        return body, decision

    def _plan(self, key: Key, run: RunView, observed: Observations) -> Decision:
        """`plan()`, or when it raises (a defect), the run failed with reason InternalError and
        the traceback logged once: no run is left without a status, retried for ever."""
        try:
            return plan(run=run, observed=observed, now=now(), options=self._options.engine)
        except Exception as error:
            if run.status.finished:  # nothing runs any more: leave its status as it is
                logger.exception("planning finished run %s/%s failed; leaving it as it is", *key)
                return Decision(run.status, ())
            logger.exception("planning run %s/%s failed; the run fails with reason InternalError", *key)
            message = f"seqflow could not plan this run: {type(error).__name__}: {error}"
            return fail_internal(run, message=message, now=now())

    async def _run_fast_steps(
        self,
        key: Key,
        body: JsonObject,
        run: RunView,
        observed: Observations,
        decision: Decision,
        *,
        seen: dict[tuple[str, int], AttemptResult],
    ) -> Decision:
        """Run the in-process attempts a decision starts before its status is written (their
        starts, and the ends before them, journaled first); those that end within the write
        delay are planned on at once, and so on: one status write then carries a string of fast
        steps. Stops at the first decision that does anything else, or whose attempts outlast
        the delay (they go on running; their start is written now), or that the journal cannot
        take. Returns the decision to write, with the Events of the ones folded into it; `seen`
        gains the results it took in."""
        uid = body["metadata"]["uid"]
        deadline = time.monotonic() + self._options.write_delay_seconds
        events: list[PostEvent] = []
        ended = dict(seen)  # what the decision took in (of in-process attempts)
        if not run.status.progress_journaled:
            return decision  # its status says nothing is journaled past it: that status goes first
        while all(isinstance(a, RunHandler | PostEvent | WakeAt) for a in decision.actions):
            starts = [a for a in decision.actions if isinstance(a, RunHandler)]
            if not starts or time.monotonic() >= deadline or self._giving_up(key):
                break
            retried = decision.status.retried
            if not await self._journal_progress(
                uid, ended=list(ended.values()), ended_in=run.status.retried, starts=starts, retried=retried
            ):
                break
            if not self._serves(key) or self._giving_up(key):
                break  # handed over meanwhile: its new owner finds the starts journaled
            started = [
                self._start_handler(key, body, action, retried=retried, awaited=True) for action in starts
            ]
            tasks = [task for task in started if task is not None]
            await asyncio.sleep(0)  # a handler that never waits ends in its task's first step
            if not all(task.done() for task in tasks):
                await asyncio.wait(tasks, timeout=max(deadline - time.monotonic(), 0))
            for action in starts:
                self._awaited.discard((uid, action.node, action.attempt))
            if not all(task.done() for task in tasks):
                break  # still running: written as started; each reports its end as usual
            results = self._results.get(uid, {})
            ended = {
                (a.node, a.attempt): results[(a.node, a.attempt)]
                for a in starts
                if (a.node, a.attempt) in results
            }
            if len(ended) < len(starts):
                break  # cancelled meanwhile (the run was deleted)
            events += [a for a in decision.actions if isinstance(a, PostEvent)]
            seen.update(ended)
            run = replace(run, status=decision.status)
            observed = replace(  # what is new since: these results (the rest is in the status now)
                observed,
                results=tuple(ended.values()),
                handlers_running=frozenset(self._running.get(uid, {})),
                blocked={},
            )
            decision = self._plan(key, run, observed)
        return replace(decision, actions=(*events, *decision.actions)) if events else decision

    def _queue_place(
        self, key: Key, body: JsonObject, run: RunView, workflow: WorkflowView | None
    ) -> tuple[int, int] | None:
        """(position, of how many) of a run that must wait for a slot of its Workflow's
        concurrency limit; None when it may start. Runs are admitted in creation order."""
        if workflow is None or workflow.spec.concurrency is None or run.status.pinned_tasks is not None:
            return None
        name = run.spec.workflow_ref.name
        active, waiting = 0, []
        for other in self._runs.values():
            meta, status = other["metadata"], other.get("status") or {}
            if (
                meta["namespace"] != key[0]
                or (other.get("spec") or {}).get("workflowRef", {}).get("name") != name
            ):
                continue
            if status.get("phase") in FINISHED_PHASES or meta.get("deletionTimestamp"):
                continue
            if "pinnedTasks" in status:
                active += 1
            else:
                waiting.append((meta["creationTimestamp"], meta["name"]))
        me = (body["metadata"]["creationTimestamp"], key[1])
        if me not in waiting:
            return None
        place = sorted(waiting).index(me)
        free = workflow.spec.concurrency.limit - active
        if place < free:
            return None
        return place - max(free, 0) + 1, len(waiting) - max(free, 0)

    def _wake_queued(self, namespace: str, workflow: str) -> None:
        """A run of `workflow` finished: the runs queued behind it (if it has a concurrency
        limit) may start now."""
        view = self._workflows.get((namespace, workflow))
        if view is None or view.spec.concurrency is None:
            return
        for other in self._runs.values():
            status = other.get("status") or {}
            if (
                other["metadata"]["namespace"] == namespace
                and (other.get("spec") or {}).get("workflowRef", {}).get("name") == workflow
                and "pinnedTasks" not in status
                and status.get("phase") not in FINISHED_PHASES
            ):
                self._queue.add(key_of(other))

    async def _fail_too_large(
        self, key: Key, body: JsonObject, run: RunView, error: EntityTooLarge
    ) -> tuple[JsonObject, Decision | None] | None:
        """The planned status did not fit in etcd: fail the run with a smaller one; when even
        that does not fit (the spec alone is too large), say so in an Event and stop."""
        logger.warning("the status of run %s/%s is too large to write: %s", *key, error.message)
        failed = fail_unrecordable(run, reason=Reason.RUN_TOO_LARGE, message=_too_large(error), now=now())
        try:
            written = await self._write_decision(key, body, run, failed)
        except EntityTooLarge:
            self._give_up_too_large(key, body, error)
            return None
        if written is not None and written[1] is not None:  # (it has failed: nothing more runs)
            self._forget_journaled(body["metadata"]["uid"], retried=failed.status.retried)
        return written

    def _give_up_too_large(self, key: Key, body: JsonObject, error: EntityTooLarge) -> None:
        """The run object cannot take a single byte more: say so where it can be seen, once."""
        logger.warning("run %s/%s is too large to take any change; giving up on it", *key)
        self._events.record(body, PostEvent(EventType.WARNING, Reason.RUN_TOO_LARGE, _too_large(error)))

    async def _write_decision(
        self, key: Key, body: JsonObject, run: RunView, decision: Decision
    ) -> tuple[JsonObject, Decision | None] | None:
        try:
            body = await self._write_status(key, body, decision.status)
        except NotFound:
            return None
        except Conflict:
            fresh = await self._reread(key)
            return (fresh, None) if fresh is not None else None
        self._report(key, run, decision.status)
        return body, decision

    async def _fail_unreadable(self, key: Key, body: JsonObject, problem: str) -> JsonObject | None:
        """Replace a status seqflow cannot read with one that says so: the run has failed."""
        logger.warning("run %s/%s has a status seqflow cannot read: %s", *key, problem)
        uid = body["metadata"]["uid"]
        self._forget_journaled(uid, retried=JOURNAL_ALL_RETRIES)  # (its retries count anew)
        seq = (body.get("status") or {}).get("historySeq")
        fresh = WorkflowRunStatus(history_seq=seq if isinstance(seq, int) and seq > 0 else 0)
        decision = fail_unrecordable(
            run_view(body, status=fresh),
            reason=Reason.STATUS_INVALID,
            message=f"The run's status cannot be read: {problem}",
            now=now(),
        )
        try:
            written = await self._write_status(key, body, decision.status)
        except NotFound:
            return None
        except Conflict:
            return await self._reread(key)
        for action in decision.actions:
            if isinstance(action, PostEvent):
                self._events.record(written, action)
        return written

    async def _reread(self, key: Key) -> JsonObject | None:
        try:
            body = await self._api.get_run(*key)
        except NotFound:
            return None
        self._runs.refresh(body)
        return body

    async def _workflow_of(self, key: Key, run: RunView) -> WorkflowView | None:
        """The run's Workflow from the cache; before a run starts, a miss is checked with the API
        server (at start-up the Workflows' watch may not have delivered it yet)."""
        name = run.spec.workflow_ref.name
        cached = self._workflows.get((key[0], name))
        if cached is not None or run.status.pinned_tasks is not None or run.status.finished:
            return cached
        try:
            body = await self._api.get_workflow(key[0], name)
        except NotFound:
            return None
        self.on_workflow_event("ADDED", body)
        return self._workflows.get((key[0], name))

    def _report(self, key: Key, run: RunView, written: WorkflowRunStatus) -> None:
        """Log and count the transitions a written status made (its new activity log entries)."""
        workflow = run.spec.workflow_ref.name
        new = [r for r in written.pending_history if r.seq > run.status.history_seq]
        self._metrics.count(workflow, new)
        for record in new:
            error = record.details.get("error") or record.details.get("message")
            logger.info(
                "%s %s",
                record.type.value,
                workflow,
                extra={
                    "namespace": key[0],
                    "run": key[1],
                    "task": record.task,
                    "attempt": record.attempt,
                    "event": record.type.value,
                    "error": error,
                },
            )

    def _flush_in_background(self, key: Key, body: JsonObject, run: RunView) -> None:
        """Write the history a written status holds (`run`: the run as written) without holding
        up the run's next task; once written, the run comes back to trim those entries from its
        status (or, on failure, later, to retry)."""
        uid = body["metadata"]["uid"]
        pending = run.status.pending_history
        if uid in self._flushing or not pending or pending[-1].seq <= self._flushed.get(uid, 0):
            return
        self._flushing.add(uid)

        async def flush() -> None:
            try:
                written = await self._history.flush(body, run)
            finally:
                self._flushing.discard(uid)
            if written is None:
                self._queue.add_after(key, self._history.retry_delay(body))
            else:
                self._flushed[uid] = max(self._flushed.get(uid, 0), written)
                self._queue.add(key)

        self._in_background(flush())

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _finalize(self, key: Key, body: JsonObject) -> None:
        """A deleted run goes once the store has its whole history."""
        if await self._history.flush(body, run_view(body)) is None:
            self._queue.add_after(key, self._history.retry_delay(body))
            return  # the store is away: the finalizer holds the run until it is back
        finalizers = body["metadata"].get("finalizers") or []
        written = await self._set_finalizers(key, body, [f for f in finalizers if f != FINALIZER])
        if written is not None and FINALIZER in (written["metadata"].get("finalizers") or []):
            self._queue.add(key)  # changed meanwhile: look again

    async def _set_finalizers(self, key: Key, body: JsonObject, finalizers: list[str]) -> JsonObject | None:
        """Set the run's finalizers (guarded by its resourceVersion); on a conflict, the run as
        it is now, for another look."""
        patch = {
            "metadata": {"finalizers": finalizers, "resourceVersion": body["metadata"]["resourceVersion"]}
        }
        try:
            written = await self._api.patch_run(*key, patch)
        except NotFound:
            return None
        except Conflict:
            return await self._reread(key)
        self._runs.wrote(written)
        return written

    async def _observe_jobs(
        self, key: Key, body: JsonObject, run: RunView
    ) -> tuple[list[AttemptResult], frozenset[str]]:
        """The outcomes of the running Job steps whose pods or Jobs have finished, and the steps
        whose Jobs run (only Jobs of this very run count)."""
        results: list[AttemptResult] = []
        running: set[str] = set()
        for node in run.status.nodes:
            if node.type != NodeType.JOB or node.phase != NodePhase.RUNNING or node.job is None:
                continue
            job = self._jobs.get((key[0], node.job))
            pod = self._pods.get((key[0], node.job))
            if job is not None and owned_by(job, body["metadata"]["uid"]):
                pod = pod if pod_of_job(pod, job) else None
                if not job_finished(job) and not pod_finished(pod):
                    running.add(node.id)
                    continue
                if not pod_finished(pod):  # its end not seen yet (the Job's came first), or gone: ask
                    pods = await self._api.pods_of_job(key[0], job["metadata"]["uid"])
                    pod = pods[0] if pods else None
            elif job is None and pod is not None and owned_by(pod, body["metadata"]["uid"]):
                if not pod_finished(pod):  # the step's own pod (SEQFLOW_JOB_STEPS_AS=Pod)
                    running.add(node.id)
                    continue
            else:
                continue
            outcome = read_outcome(job=job, pod=pod, node=node.id, attempt=node.attempts)
            seconds = attempt_duration(job=job, pod=pod)
            if seconds is not None:
                self._metrics.attempt(
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
            child = self._runs.get((key[0], node.child))
            if child is not None and owned_by(child, body["metadata"]["uid"]):
                children[node.id] = child_run(child)
        return children

    async def _write_status(self, key: Key, body: JsonObject, new: WorkflowRunStatus) -> JsonObject:
        patch = {
            "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
            "status": status_patch(body.get("status") or {}, new.to_wire()),
        }
        written = await self._api.patch_run_status(*key, patch)
        self._runs.wrote(written)
        self._wake_parent(written, body)  # its echo will not
        return written

    async def _act(self, key: Key, body: JsonObject, decision: Decision) -> bool:
        """Carry out a written decision; True when what it found needs another round now."""
        again = False
        for action in decision.actions:
            match action:
                case PostEvent():
                    self._events.record(body, action)
                case WakeAt():
                    self._queue.add_after(key, action.delay_from(now()).total_seconds())
                case RunHandler():
                    if self._serves(key):  # else its new owner finds it interrupted
                        self._start_handler(key, body, action, retried=decision.status.retried)
                case CreateJob():
                    again = await self._create_job(key, body, action) or again
                case CreateChildRun():
                    again = await self._create_child(key, body, action) or again
                case ControlChildRun():
                    await self._control_child(key[0], action)
                case CancelHandler():
                    attempt = self._running.get(body["metadata"]["uid"], {}).get(
                        (action.node, action.attempt)
                    )
                    if attempt is not None:
                        attempt.cancel()
                case DeleteJob():
                    await self._delete_job(body["metadata"]["namespace"], action.name)
                case DeleteRun():
                    with contextlib.suppress(NotFound):
                        await self._api.delete_run(*key)
                case _:
                    assert_never(action)
        return again

    def _start_handler(
        self, key: Key, body: JsonObject, action: RunHandler, *, retried: int, awaited: bool = False
    ) -> asyncio.Task[None] | None:
        """Run an in-process attempt (of the run's `retried`-th retry) as a task of its own that
        posts its result back (so a cancel can stop it and the worker is free meanwhile), unless
        a worker awaits it. An attempt started already, here or by another process (the
        journal says), is not started again: its task, or None when its result waits."""
        uid = body["metadata"]["uid"]
        running = self._running.setdefault(uid, {})
        if (action.node, action.attempt) in running:
            return running[(action.node, action.attempt)]
        if (action.node, action.attempt) in self._results.get(uid, {}):
            return None  # it ran (while its start was being written): its result waits
        if self._journaled_attempt(key, uid, action, retried=retried):
            if not awaited:
                self._queue.add(key, urgent=True)
            return None
        self._run_keys[uid] = key
        if awaited:
            self._awaited.add((uid, action.node, action.attempt))
        context = self._context(body, action)
        workflow = body["spec"]["workflowRef"]["name"]

        async def attempt() -> None:
            began = time.perf_counter()
            result = await self._runner.run(action, context)
            self._metrics.attempt(
                workflow=workflow,
                task=action.node,
                succeeded=result.succeeded,
                seconds=time.perf_counter() - began,
            )
            self._results.setdefault(uid, {})[(action.node, action.attempt)] = result
            if (uid, action.node, action.attempt) not in self._awaited:
                self._queue.add(key, urgent=True)  # the run moves on before new work starts

        task = asyncio.create_task(attempt(), name=f"seqflow-attempt-{key[1]}-{action.node}-{action.attempt}")
        running[(action.node, action.attempt)] = task
        task.add_done_callback(lambda _: self._attempt_ended(uid, action))
        return task

    def _attempt_ended(self, uid: str, action: RunHandler) -> None:
        self._running.get(uid, {}).pop((action.node, action.attempt), None)
        self._forget_if_idle(uid)

    def _forget_if_idle(self, uid: str) -> None:
        """A run with no attempt under way and no result to write leaves no trace here."""
        if not self._running.get(uid) and not self._results.get(uid):
            self._running.pop(uid, None)
            self._results.pop(uid, None)
            self._run_keys.pop(uid, None)

    async def _create_job(self, key: Key, body: JsonObject, action: CreateJob) -> bool:
        """Create an attempt's Job (or its pod alone); True when it cannot be (blocked,
        refused): plan again."""
        meta = body["metadata"]
        run = RunRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])
        if self._options.step_pods:
            kind, manifest = "Pod", pod_manifest(run=run, action=action)
            create, get = self._api.create_pod, self._api.get_pod
        else:
            kind, manifest = (
                "Job",
                job_manifest(run=run, action=action, ttl_seconds=self._options.job_ttl_seconds),
            )
            create, get = self._api.create_job, self._api.get_job
        try:
            created = await create(run.namespace, manifest)
        except Conflict:  # created before: by us, for this very attempt?
            created = await get(run.namespace, action.name)
            if not owned_by(created, run.uid):
                owner = run_of(created)
                whose = f"an earlier WorkflowRun {owner}" if owner else "no run (it was orphaned)"
                self._blocked.setdefault(run.uid, {})[action.node] = (
                    f"a {kind} named {action.name} already exists and belongs to {whose}; delete it "
                    f"(kubectl delete {kind.lower()} -n {run.namespace} {action.name}) to let this run go on"
                )
                return True
            self._queue.add(key)  # it may have finished while nobody watched
        except Invalid as error:  # the manifest itself is refused: no retry helps
            self._refused(run.uid, node=action.node, attempt=action.attempt, what=kind, error=error)
            return True
        except Forbidden as error:
            self._forbidden(
                run.uid, node=action.node, what=f"{kind.lower()}s", namespace=run.namespace, error=error
            )
            return True
        if self._options.step_pods:
            self._pods[(run.namespace, action.name)] = slim_pod(created)
        else:
            self._jobs[(run.namespace, action.name)] = created
        return False

    async def _create_child(self, key: Key, body: JsonObject, action: CreateChildRun) -> bool:
        """Create a sub-workflow's child run; True when one of its name is not this run's."""
        meta = body["metadata"]
        parent = RunRef(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])
        try:
            child = await self._api.create_run(
                parent.namespace, child_run_manifest(parent=parent, action=action)
            )
        except Conflict:  # created before: by us, for this very attempt?
            child = await self._api.get_run(parent.namespace, action.name)
            if not owned_by(child, parent.uid):
                self._blocked.setdefault(parent.uid, {})[action.node] = (
                    f"a WorkflowRun named {action.name} already exists and is not this run's child; "
                    f"delete it (kubectl delete workflowrun -n {parent.namespace} {action.name}) "
                    "to let this run go on"
                )
                return True
            self._queue.add(key)  # it may have finished while nobody watched
        except Invalid as error:  # the child itself is refused: no retry helps
            self._refused(parent.uid, node=action.node, attempt=action.attempt, what="child run", error=error)
            return True
        except Forbidden as error:
            what, namespace = "workflowruns", parent.namespace
            self._forbidden(parent.uid, node=action.node, what=what, namespace=namespace, error=error)
            return True
        self._runs.refresh(child)
        return False

    def _refused(self, uid: str, *, node: str, attempt: int, what: str, error: Invalid) -> None:
        """An attempt whose Job or child run the API server refuses fails for good."""
        self._results.setdefault(uid, {})[(node, attempt)] = AttemptResult(
            node=node, attempt=attempt, error=f"the {what} was refused: {error.message}", permanent=True
        )

    def _forbidden(self, uid: str, *, node: str, what: str, namespace: str, error: Forbidden) -> None:
        """The API server forbids an attempt's Job, pod or child run (RBAC, a quota, an admission
        policy): the run waits, saying why, and looks again (that may change meanwhile)."""
        self._blocked.setdefault(uid, {})[node] = (
            f"creating {what} in namespace {namespace} is forbidden: {error.message} (RBAC: the Helm "
            "chart's role grants what seqflow needs)"
        )

    async def _control_child(self, namespace: str, action: ControlChildRun) -> None:
        spec = {"suspend": action.suspend} if action.suspend is not None else {}
        if action.cancel is not None:
            spec["cancel"] = action.cancel
        with contextlib.suppress(NotFound):
            await self._api.patch_run(namespace, action.name, {"spec": spec})

    async def _delete_job(self, namespace: str, name: str) -> None:
        """Stop an attempt: delete its Job (or its pod, SEQFLOW_JOB_STEPS_AS=Pod)."""
        with contextlib.suppress(NotFound):
            await (self._api.delete_pod if self._options.step_pods else self._api.delete_job)(namespace, name)
        self._jobs.pop((namespace, name), None)
        self._pods.pop((namespace, name), None)

    def _context(self, body: JsonObject, action: RunHandler) -> TaskContext:
        meta = body["metadata"]
        return TaskContext(
            namespace=meta["namespace"],
            run=meta["name"],
            run_uid=meta["uid"],
            task=action.node,
            attempt=action.attempt,
        )


def _too_large(error: EntityTooLarge) -> str:
    return (
        f"The run no longer fits in the object etcd stores ({error.message}): keep its input and "
        f"outputs within {MAX_DATA_BYTES} bytes each, and the Workflow's Job templates small"
    )
