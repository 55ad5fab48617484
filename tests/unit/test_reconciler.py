"""The reconciler against a fake of its own seam, `KubeApi`: conflicts, lost writes, the
finalizer and cold caches. (The real API server is exercised by the e2e tests.)"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from seqflow.cluster.kube import ApiError, Conflict, EntityTooLarge, Forbidden, NotFound
from seqflow.engine import AttemptResult, EngineOptions
from seqflow.executors.inprocess import HandlerRegistry, HandlerRunner, task
from seqflow.history.logs import AttemptLog
from seqflow.history.store import JournalEntry
from seqflow.metrics import Metrics
from seqflow.runs.cache import RunCache, cached_form
from seqflow.runs.controller import RunController, RunOptions
from seqflow.runs.flush import FINALIZER
from seqflow.runs.values import Values
from seqflow.runs.writes import status_patch
from tests.stored_values import MemoryValueStore

calls: list[str] = []
handlers = HandlerRegistry()


@task("count", into=handlers)
def count(data: dict, context) -> dict:
    calls.append(context.task)
    return {"n": data.get("n", 0) + 1}


@task("chatty", into=handlers)
def chatty(data: dict, context) -> dict:
    for i in range(20):
        logging.getLogger("shop.payments").info("charging card, line %d", i)
    logging.getLogger("shop.payments").warning("card charged")
    return {}


@task("grow", into=handlers)
def grow(data: dict, context) -> dict:
    calls.append(context.task)
    return {"n": data.get("n", 0) + 1, "blob": "x" * 10_000}


def merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


class FakeApi:
    """Runs and Workflows in memory, with resourceVersions and optimistic concurrency."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], dict] = {}
        self.workflows: dict[tuple[str, str], dict] = {}
        self.version = 0
        self.status_patches = 0
        self.fail_status_patch: dict[int, BaseException] = {}  # by the patch's number, from 1
        self.events: list[dict] = []
        self.jobs: dict[str, dict] = {}
        self.fail_job_creations: list[BaseException] = []
        self.workflow_statuses: dict[str, dict] = {}
        self.revisions: dict[str, dict] = {}  # ControllerRevisions, by name

    def bump(self, body: dict) -> dict:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(body)

    def add_run(self, name: str, workflow: str) -> dict:
        meta = {
            "namespace": "ns",
            "name": name,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2026-11-21T10:00:00Z",
        }
        body = {"metadata": meta, "spec": {"workflowRef": {"name": workflow}, "input": {"n": 0}}}
        self.runs[("ns", name)] = body
        return self.bump(body)

    def add_workflow(self, name: str, tasks: list[str]) -> dict:
        body = {
            "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}", "generation": 1},
            "spec": {"tasks": [{"name": t, "handler": "count"} for t in tasks]},
        }
        self.workflows[("ns", name)] = body
        return copy.deepcopy(body)

    def _guarded(self, namespace: str, name: str, patch: dict) -> dict:
        body = self.runs.get((namespace, name))
        if body is None:
            raise NotFound(404, "not found")
        if patch["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise Conflict(409, "the object has been modified")
        return body

    async def get_run(self, namespace: str, name: str) -> dict:
        if (namespace, name) not in self.runs:
            raise NotFound(404, "not found")
        return copy.deepcopy(self.runs[(namespace, name)])

    async def patch_run(self, namespace: str, name: str, patch: dict) -> dict:
        body = self._guarded(namespace, name, patch)
        body["metadata"]["finalizers"] = patch["metadata"]["finalizers"]
        return self.bump(body)

    async def patch_run_status(self, namespace: str, name: str, patch: dict) -> dict:
        self.status_patches += 1
        if self.status_patches in self.fail_status_patch:
            raise self.fail_status_patch.pop(self.status_patches)
        body = self._guarded(namespace, name, patch)
        body["status"] = merge(body.get("status") or {}, patch["status"])
        return self.bump(body)

    async def patch_workflow_status(self, namespace: str, name: str, patch: dict) -> dict:
        self.workflow_statuses[name] = patch["status"]
        return patch

    async def create_controller_revision(self, namespace: str, manifest: dict) -> dict:
        self.revisions[manifest["metadata"]["name"]] = manifest
        return manifest

    async def list_controller_revisions(self, namespace: str, *, label_selector: str) -> list[dict]:
        return list(self.revisions.values())

    async def get_workflow(self, namespace: str, name: str) -> dict:
        if (namespace, name) not in self.workflows:
            raise NotFound(404, "not found")
        return copy.deepcopy(self.workflows[(namespace, name)])

    async def create_job(self, namespace: str, job: dict) -> dict:
        if self.fail_job_creations:
            raise self.fail_job_creations.pop(0)
        job = {**copy.deepcopy(job), "status": {}}
        job["metadata"]["uid"] = f"job-{len(self.jobs)}"
        self.jobs[job["metadata"]["name"]] = job
        return copy.deepcopy(job)

    async def get_job(self, namespace: str, name: str) -> dict:
        if name not in self.jobs:
            raise NotFound(404, f"jobs {name} not found")
        return copy.deepcopy(self.jobs[name])

    async def create_event(self, namespace: str, event: dict) -> dict:
        self.events.append(event)
        return event


class FakeHistory:
    def __init__(self) -> None:
        self.available = True
        self.written: list[int] = []

    async def flush(self, body: dict, run) -> int | None:
        status = run.status
        if not status.pending_history:
            return 0
        if not self.available:
            return None
        self.written += [r.seq for r in status.pending_history if r.seq not in self.written]
        return status.pending_history[-1].seq

    async def activity(self, namespace: str, name: str, *, uid: str) -> list[dict] | None:
        return []

    async def cached(self, namespace: str, workflow: str, key: str) -> tuple[bool, dict | None]:
        return True, None

    def retry_delay(self, body: dict) -> float:
        return 0.05


class FakeJournal:
    """The progress journal in memory; `available` False: it takes nothing."""

    writer = "this-process"

    def __init__(self) -> None:
        self.available = True
        self.entries: list[JournalEntry] = []
        self.forgotten: list[tuple[str, int]] = []
        self.elsewhere: list[JournalEntry] = []  # what another process journaled
        self.readable = True

    async def write(self, entries: list[JournalEntry]) -> bool:
        if self.available:
            self.entries += entries
        return self.available

    def forget(self, run_uid: str, *, retried: int) -> None:
        self.forgotten.append((run_uid, retried))

    async def load(self) -> dict | None:
        if not self.readable:
            return None
        journaled: dict = {}
        for e in self.elsewhere:
            journaled.setdefault(e.run_uid, {})[(e.retried, e.node, e.attempt)] = e.result
        return journaled

    def started(self, node: str, attempt: int) -> bool:
        return any((e.node, e.attempt, e.result) == (node, attempt, None) for e in self.entries)


@contextlib.contextmanager
def root_level(level: int) -> Iterator[None]:
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)


class KeptLogs:
    """The logs the controller keeps, by attempt, and the bytes it keeps of each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: dict[tuple[str, int], AttemptLog] = {}

    def keep(self, namespace: str, log: AttemptLog) -> None:
        self.kept[(log.task, log.attempt)] = log


def reconciler(
    api: FakeApi,
    history: FakeHistory,
    *,
    write_delay: float = 0.0,
    journal: FakeJournal | None = None,
    journal_read_seconds: float = 10.0,
    values: MemoryValueStore | None = None,
    engine: EngineOptions | None = None,
    logs: KeptLogs | None = None,
    **ownership: Any,
) -> RunController:
    return RunController(
        api=api,  # type: ignore[arg-type]
        runner=HandlerRunner(handlers=handlers, threads=2),
        history=history,
        journal=journal or FakeJournal(),
        values=Values(values or MemoryValueStore(), cache_bytes=1024 * 1024),
        log_store=logs or KeptLogs(0),
        metrics=Metrics(CollectorRegistry()),
        handler_names=handlers.names(),
        options=RunOptions(
            workers=2,
            event_queue_size=100,
            engine=engine or EngineOptions(),
            write_delay_seconds=write_delay,
            journal_read_seconds=journal_read_seconds,
            step_log_bytes=(logs or KeptLogs(0)).limit,
        ),
        **ownership,
    )


async def settle(predicate, timeout: float = 5.0) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


def run_status(api: FakeApi, name: str = "r") -> dict:
    return api.runs[("ns", name)].get("status") or {}


def scenario(body, **options: Any) -> None:
    async def main() -> None:
        calls.clear()
        api, history = FakeApi(), FakeHistory()
        subject = reconciler(api, history, **options)
        subject.start()
        try:
            await body(api, history, subject)
        finally:
            await subject.stop()

    asyncio.run(main())


def test_runs_to_success_writes_history_and_trims_it():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B"]))
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(
            lambda: run_status(api).get("phase") == "Succeeded" and not run_status(api).get("pendingHistory")
        )
        assert calls == ["A", "B"]
        assert run_status(api)["output"] == {"n": 2}
        (ready,) = api.workflow_statuses["w"]["conditions"]
        assert (ready["type"], ready["status"]) == ("Ready", "True")
        # its spec kept as revision 1 before the status names it
        assert (api.workflow_statuses["w"]["revision"], api.workflow_statuses["w"]["readyRevision"]) == (1, 1)
        (kept,) = api.revisions.values()
        assert (kept["metadata"]["name"], kept["revision"]) == ("w-1", 1)
        assert kept["data"]["spec"] == api.workflows[("ns", "w")]["spec"]
        assert kept["metadata"]["ownerReferences"][0]["uid"] == "uid-w"
        assert history.written == list(range(1, 7))
        assert FINALIZER in api.runs[("ns", "r")]["metadata"]["finalizers"]

    scenario(body)


def test_a_handlers_logging_records_are_kept_as_their_tail():
    logs = KeptLogs(100)

    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        workflow = api.add_workflow("w", ["A", "B"])
        workflow["spec"]["tasks"][1]["handler"] = "chatty"
        api.workflows[("ns", "w")]["spec"]["tasks"][1]["handler"] = "chatty"
        subject.on_workflow_event(None, workflow)
        with root_level(logging.INFO):
            subject.on_run_event(None, api.add_run("r", "w"))
            await settle(lambda: run_status(api).get("phase") == "Succeeded" and ("B", 1) in logs.kept)
        assert list(logs.kept) == [("B", 1)]  # A logged nothing
        kept = logs.kept[("B", 1)]
        assert kept.run_uid == api.runs[("ns", "r")]["metadata"]["uid"]
        assert len(kept.text) == 100 and kept.size > 20 * 30 and kept.truncated
        assert kept.text.decode().endswith(" WARNING shop.payments: card charged\n")
        assert b"charging card, line 0" not in kept.text

    scenario(body, logs=logs)


def test_status_conflict_replans_without_running_the_handler_again():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B"]))
        api.fail_status_patch = {2: Conflict(409, "modified")}  # the write of A's result
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded")
        assert not api.fail_status_patch  # the conflict did happen
        assert calls == ["A", "B"]
        assert [t["attempts"] for t in run_status(api)["nodes"]] == [1, 1]

    scenario(body)


def test_result_survives_a_failed_write_and_is_not_run_twice():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B"]))
        # The write of A's result is lost on the network, once; the cycle fails and is retried.
        api.fail_status_patch = {2: aiohttp.ClientConnectionError("reset")}
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded")
        assert not api.fail_status_patch
        assert calls == ["A", "B"]
        assert [t["attempts"] for t in run_status(api)["nodes"]] == [1, 1]

    scenario(body)


def test_job_creation_failing_after_a_written_result_is_retried():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        workflow = api.add_workflow("w", ["A"])
        workflow["spec"]["tasks"].append({"name": "J", "job": {"image": "registry.example/j:1"}})
        api.workflows[("ns", "w")] = copy.deepcopy(workflow)
        subject.on_workflow_event(None, workflow)
        api.fail_job_creations = [ApiError(500, "etcd timeout")]  # after A's result is written
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: any(name.startswith("r-j-1") for name in api.jobs))
        assert calls == ["A"]
        assert [t["phase"] for t in run_status(api)["nodes"]] == ["Succeeded", "Running"]

    scenario(body)


def test_a_job_rbac_refuses_holds_the_run_saying_why():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        workflow = api.add_workflow("w", [])
        workflow["spec"]["tasks"] = [{"name": "J", "job": {"image": "registry.example/j:1"}}]
        api.workflows[("ns", "w")] = copy.deepcopy(workflow)
        subject.on_workflow_event(None, workflow)
        refused = Forbidden(403, 'jobs.batch is forbidden: User "seqflow" cannot create resource "jobs"')
        api.fail_job_creations = [refused] * 10
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("conditions", [{}])[0].get("reason") == "AttemptBlocked")
        message = run_status(api)["conditions"][0]["message"]
        assert "creating jobs in namespace ns is forbidden" in message and "cannot create resource" in message
        await asyncio.sleep(0.5)
        assert len(api.fail_job_creations) >= 8  # it looks again later, not in a loop
        assert not api.jobs and run_status(api)["phase"] == "Running"

    scenario(body)


def test_workflow_missing_from_the_cache_is_read_from_the_api():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        api.add_workflow("w", ["A"])  # exists, but its watch event has not come yet
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded")

    scenario(body)


def test_deleted_run_keeps_its_finalizer_until_history_is_written():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A"]))
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded")
        history.available = False
        stored = api.runs[("ns", "r")]
        stored["status"]["pendingHistory"] = [
            {"seq": 99, "type": "WORKFLOW_COMPLETED", "at": "2026-11-21T10:00:01Z", "details": {}}
        ]
        stored["metadata"]["deletionTimestamp"] = "2026-11-21T10:00:02Z"
        subject.on_run_event("MODIFIED", api.bump(stored))
        await asyncio.sleep(0.3)
        assert FINALIZER in api.runs[("ns", "r")]["metadata"]["finalizers"]  # held: store away
        history.available = True
        await settle(lambda: FINALIZER not in api.runs[("ns", "r")]["metadata"]["finalizers"])
        assert 99 in history.written
        # gone with its last finalizer: not put back in the cache, nothing of it kept, even
        # before its DELETED event
        await settle(lambda: subject._states.get("uid-r") is None)
        assert subject.live_run("ns", "r") is None

    scenario(body)


def test_status_that_cannot_be_read_is_replaced_by_a_failed_one():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A"]))
        run = api.add_run("r", "w")
        stored = api.runs[("ns", "r")]
        stored["metadata"]["finalizers"] = [FINALIZER]
        stored["status"] = {"phase": "Running", "historySeq": 4, "nodes": [{"phase": "Running"}]}
        subject.on_run_event(None, api.bump(stored))
        await settle(
            lambda: run_status(api).get("phase") == "Failed" and not run_status(api).get("pendingHistory")
        )
        status = run_status(api)
        cond = next(c for c in status["conditions"] if c["type"] == "Succeeded")
        assert cond["reason"] == "StatusInvalid" and "status.nodes.0.id: Field required" in cond["message"]
        assert status["nodes"] == [] and status["historySeq"] == 5
        assert history.written == [5]  # the store hears how the run ended
        assert [e["reason"] for e in api.events] == ["StatusInvalid"]
        assert calls == [] and run  # nothing ran

    scenario(body)


def test_status_too_large_for_etcd_fails_the_run_with_a_smaller_one():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B"]))
        too_large = EntityTooLarge(500, "etcdserver: request is too large")
        api.fail_status_patch = {2: too_large}  # the write of A's result
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Failed")
        await asyncio.sleep(0.3)  # (time for its Events to be posted and for anything it might start)
        status = run_status(api)
        assert status["conditions"][0]["reason"] == "RunTooLarge"  # Succeeded, then Ready, Stalled
        assert "request is too large" in status["conditions"][0]["message"]
        assert "pinnedTasks" not in status and calls == ["A"]
        assert [e["reason"] for e in api.events] == ["Started", "RunTooLarge"]  # the failure's Event

    scenario(body)


def test_run_too_large_for_any_status_gets_an_event_and_no_retries():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A"]))
        too_large = EntityTooLarge(413, "request entity too large")
        api.fail_status_patch = {1: too_large, 2: too_large}
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: bool(api.events))
        await asyncio.sleep(0.3)
        assert [e["reason"] for e in api.events] == ["RunTooLarge"] and api.status_patches == 2
        assert not run_status(api) and calls == []

    scenario(body)


# ----- the status merge patch and the run cache -----


def stored(rv: str, **status) -> dict:
    return {"metadata": {"namespace": "ns", "name": "r", "resourceVersion": rv}, "status": status}


def test_status_patch_turns_old_into_new():
    old = {
        "phase": "Running",
        "output": {"a": 1, "b": 2},
        "tasks": [{"n": 1}],
        "currentTask": "A",
        "retries": 0,
    }
    new = {"phase": "Succeeded", "output": {"c": 3}, "tasks": [{"n": 1}, {"n": 2}], "retries": 0}
    patch = status_patch(old, new)
    assert merge(old, patch) == new
    assert patch["currentTask"] is None  # removed fields are nulled
    assert patch["output"] == {"a": None, "b": None, "c": 3}  # not merged into the old output
    assert "retries" not in patch  # unchanged fields are left out


def test_status_patch_writes_empty_object_and_new_keys():
    assert status_patch({}, {"output": {}, "retries": 0}) == {"output": {}, "retries": 0}
    old, new = {"output": {"a": 1}}, {"output": {}}
    assert merge(old, status_patch(old, new)) == new


def test_run_cache_skips_echo_of_own_write_but_takes_news():
    cache = RunCache()
    assert cache.observe(stored("1", phase="Pending")) is True
    cache.wrote(stored("2", phase="Running"))
    assert cache.observe(stored("2", phase="Running")) is False  # our own write coming back
    assert cache.get(("ns", "r"))["metadata"]["resourceVersion"] == "2"
    assert cache.observe(stored("3", phase="Running")) is True  # someone else's change
    cache.drop(("ns", "r"))
    assert cache.get(("ns", "r")) is None


def test_the_cache_keeps_no_managed_fields_and_little_of_a_finished_run():
    def run(phase: str, **status: Any) -> dict:
        return {
            "metadata": {
                "name": "r",
                "namespace": "ns",
                "resourceVersion": "7",
                "managedFields": [{"m": 1}],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"},
            },
            "spec": {"workflowRef": {"name": "w"}, "input": {"big": "x" * 1000}, "suspend": False},
            "status": {"phase": phase, "nodes": [{"id": "A"}], "pinnedTasks": [{"name": "A"}], **status},
        }

    running, slim = cached_form(run("Running"))
    assert not slim and "managedFields" not in running["metadata"] and running["status"]["nodes"]
    assert running["metadata"]["annotations"] == {"keep": "me"}
    assert running["spec"]["input"]
    finished, slim = cached_form(run("Succeeded", output={"n": 1}, conditions=[{"type": "Succeeded"}]))
    assert slim and finished["status"] == {
        "phase": "Succeeded",
        "output": {"n": 1},
        "conditions": [{"type": "Succeeded"}],
    }
    assert finished["spec"] == {"workflowRef": {"name": "w"}, "suspend": False}
    unwritten, slim = cached_form(run("Failed", pendingHistory=[{"seq": 1}]))
    assert not slim and unwritten["status"]["nodes"]  # its history still to write: whole

    cache = RunCache()
    cache.refresh(run("Succeeded"))
    assert cache.is_slim(("ns", "r"))
    cache.refresh(run("Running"))
    assert not cache.is_slim(("ns", "r"))


def test_fast_steps_share_one_status_write():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        history.available = False  # no trim write yet
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B", "C"]))
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded")
        assert calls == ["A", "B", "C"] and run_status(api)["output"] == {"n": 3}
        assert api.status_patches == 1  # pinned, three steps and the end, in one write
        assert [(n["id"], n["attempts"]) for n in run_status(api)["nodes"]] == [("A", 1), ("B", 1), ("C", 1)]

    scenario(body, write_delay=5.0)


def test_fast_steps_whose_write_conflicts_are_not_run_again():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B"]))
        api.fail_status_patch = {1: Conflict(409, "modified")}  # a spec change landed meanwhile
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded")
        assert not api.fail_status_patch and calls == ["A", "B"]  # their results were kept

    scenario(body, write_delay=5.0)


def test_runs_of_a_workflow_with_a_concurrency_limit_are_served_by_the_workflows_replica():
    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        limited = api.add_workflow("limited", ["A"])
        limited["spec"]["concurrency"] = {"limit": 1}
        api.workflows[("ns", "limited")] = copy.deepcopy(limited)
        subject.on_workflow_event(None, limited)
        subject.on_workflow_event(None, api.add_workflow("open", ["A"]))
        for name, workflow in (("r1", "limited"), ("r2", "limited"), ("r3", "open")):
            subject.on_run_event(None, api.add_run(name, workflow))
        await settle(lambda: all(run_status(api, n).get("phase") == "Succeeded" for n in ("r1", "r2")))
        await asyncio.sleep(0.2)
        assert not run_status(api, "r3")  # neither its own key nor a limited Workflow's: not ours

    scenario(body, owns=lambda namespace, name: name == "limited")


def test_fast_steps_journal_each_start_and_the_ends_before_it_first():
    journal = FakeJournal()
    journaled_when_run: list[bool] = []

    @task("journaled", into=handlers)
    def journaled(data: dict, context) -> dict:
        journaled_when_run.append(journal.started(context.task, context.attempt))
        return {"n": data.get("n", 0) + 1}

    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        workflow = api.add_workflow("w", ["A", "B", "C"])
        for step in workflow["spec"]["tasks"]:
            step["handler"] = "journaled"
        subject.on_workflow_event(None, workflow)
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded")
        assert journaled_when_run == [True, True, True] and api.status_patches <= 2
        ends = [(e.node, e.result.output) for e in journal.entries if e.result is not None]
        assert ends == [("A", {"n": 1}), ("B", {"n": 2})]  # C's end is in the status write
        assert journal.forgotten == [("uid-r", 0)]  # finished: its entries go

    scenario(body, write_delay=5.0, journal=journal)


def test_attempts_another_process_journaled_are_not_run_again():
    journal = FakeJournal()
    journal.elsewhere = [  # it died after A ended and B started, before the status said so
        JournalEntry(
            run_uid="uid-r",
            retried=0,
            node="A",
            attempt=1,
            writer="other",
            result=AttemptResult(node="A", attempt=1, output={"n": 41}),
        ),
        JournalEntry(run_uid="uid-r", retried=0, node="B", attempt=1, writer="other"),
    ]

    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B", "C"]))
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded", timeout=10)
        assert calls == ["B", "C"]  # A's journaled end taken; B interrupted, retried as a new attempt
        nodes = {n["id"]: n["attempts"] for n in run_status(api)["nodes"]}
        assert nodes == {"A": 1, "B": 2, "C": 1} and run_status(api)["output"] == {"n": 43}

    scenario(body, write_delay=5.0, journal=journal)


def test_a_journaled_end_ends_an_attempt_the_status_shows_running():
    @task("hang", into=handlers)
    async def hang(data: dict, context) -> dict:
        await asyncio.sleep(3600)
        return data

    async def body(api: FakeApi, history: FakeHistory, first: RunController) -> None:
        workflow = api.add_workflow("w", ["A", "B"])
        workflow["spec"]["tasks"][0]["handler"] = "hang"
        first.on_workflow_event(None, workflow)
        first.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: [n["phase"] for n in run_status(api).get("nodes", [])] == ["Running"])
        await first.stop()  # it dies while A runs; a later process journaled A's end elsewhere
        journal = FakeJournal()
        ended = AttemptResult(node="A", attempt=1, output={"n": 10})
        journal.elsewhere = [
            JournalEntry(run_uid="uid-r", retried=0, node="A", attempt=1, writer="x", result=ended)
        ]
        second = reconciler(api, history, write_delay=5.0, journal=journal)
        second.on_workflow_event(None, workflow)
        second.start()
        second.on_run_event(None, copy.deepcopy(api.runs[("ns", "r")]))
        try:
            await settle(lambda: run_status(api).get("phase") == "Succeeded")
        finally:
            await second.stop()
        assert calls == ["B"] and run_status(api)["output"] == {"n": 11}

    scenario(body)


def test_while_the_journal_cannot_be_read_in_process_attempts_wait_and_say_why():

    @task("hang-unread", into=handlers)
    async def hang(data: dict, context) -> dict:
        await asyncio.sleep(3600)
        return data

    async def body(api: FakeApi, history: FakeHistory, first: RunController) -> None:
        workflow = api.add_workflow("w", ["A", "B"])
        workflow["spec"]["tasks"][0]["handler"] = "hang-unread"
        first.on_workflow_event(None, workflow)
        first.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: [n["phase"] for n in run_status(api).get("nodes", [])] == ["Running"])
        await first.stop()  # it dies while A runs; the next process cannot read the journal at first
        journal = FakeJournal()
        journal.readable = False
        ended = AttemptResult(node="A", attempt=1, output={"n": 10})
        journal.elsewhere = [
            JournalEntry(run_uid="uid-r", retried=0, node="A", attempt=1, writer="x", result=ended)
        ]
        second = reconciler(api, history, write_delay=5.0, journal=journal, journal_read_seconds=0.1)
        second.on_workflow_event(None, workflow)
        second.start()
        second.on_run_event(None, copy.deepcopy(api.runs[("ns", "r")]))
        try:
            await settle(lambda: run_status(api)["conditions"][0]["reason"] == "ProgressUnknown")
            await asyncio.sleep(0.3)
            assert [(n["phase"], n["attempts"]) for n in run_status(api)["nodes"]] == [("Running", 1)]
            assert "progress journal" in run_status(api)["conditions"][0]["message"] and not calls
            journal.readable = True
            await settle(lambda: run_status(api).get("phase") == "Succeeded", timeout=10)
        finally:
            await second.stop()
        assert calls == ["B"] and run_status(api)["output"] == {"n": 11}  # A's journaled end taken

    scenario(body)


def test_a_status_written_while_the_journal_was_away_goes_on_when_it_cannot_be_read():

    @task("hang-first", into=handlers)
    async def hang_first(data: dict, context) -> dict:
        if context.attempt == 1:
            await asyncio.sleep(3600)
        return data

    async def body(api: FakeApi, history: FakeHistory, first: RunController) -> None:
        workflow = api.add_workflow("w", ["A", "B"])
        workflow["spec"]["tasks"][0]["handler"] = "hang-first"
        first.on_workflow_event(None, workflow)
        first.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: [n["phase"] for n in run_status(api).get("nodes", [])] == ["Running"])
        assert run_status(api)["progressJournaled"] is False  # nothing journaled past this status
        await first.stop()
        journal = FakeJournal()
        journal.readable = False
        second = reconciler(api, history, write_delay=5.0, journal=journal, journal_read_seconds=0.1)
        second.on_workflow_event(None, workflow)
        second.start()
        second.on_run_event(None, copy.deepcopy(api.runs[("ns", "r")]))
        try:
            await settle(lambda: run_status(api).get("phase") == "Succeeded")
        finally:
            await second.stop()
        assert calls == ["B"] and run_status(api)["progressJournaled"] is True
        assert [n["attempts"] for n in run_status(api)["nodes"]] == [2, 1]  # A interrupted, retried

    away = FakeJournal()
    away.available = False
    scenario(body, write_delay=5.0, journal=away)


def test_fast_steps_write_each_start_first_while_the_journal_is_away():
    journal = FakeJournal()
    journal.available = False

    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        history.available = False  # no trim write
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B", "C"]))
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Succeeded")
        assert calls == ["A", "B", "C"] and api.status_patches == 4  # each start, then the end

    scenario(body, write_delay=5.0, journal=journal)


def test_a_plan_that_raises_fails_the_run_with_internal_error_and_logs_once(monkeypatch, caplog):
    import seqflow.runs.reconciler

    real_plan = seqflow.runs.reconciler.plan

    def plan_failing_after_a(**kw: Any):
        if kw["run"].status.node("A") is not None:  # A has started: the next plan is a defect's
            raise KeyError("a defect")
        return real_plan(**kw)

    monkeypatch.setattr(seqflow.runs.reconciler, "plan", plan_failing_after_a)

    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        subject.on_workflow_event(None, api.add_workflow("w", ["A", "B"]))
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("phase") == "Failed")
        await asyncio.sleep(0.2)  # time for a retry storm, if there were one
        summary = next(c for c in run_status(api)["conditions"] if c["type"] == "Succeeded")
        assert summary["reason"] == "InternalError"
        assert summary["message"] == "seqflow could not plan this run: KeyError: 'a defect'"
        assert run_status(api)["nodes"][0]["phase"] == "Cancelled"
        assert [e["reason"] for e in api.events if e["type"] == "Warning"] == ["InternalError"]

    scenario(body)
    logged = [r for r in caplog.records if "planning run ns/r failed" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None


def test_a_large_output_waits_for_the_store_and_is_stored_before_any_status_names_it():
    store = MemoryValueStore()

    async def body(api: FakeApi, history: FakeHistory, subject: RunController) -> None:
        workflow = api.add_workflow("w", ["Grow", "B"])
        workflow["spec"]["tasks"][0]["handler"] = "grow"
        api.workflows[("ns", "w")] = copy.deepcopy(workflow)
        subject.on_workflow_event(None, workflow)
        store.available = False
        subject.on_run_event(None, api.add_run("r", "w"))
        await settle(lambda: run_status(api).get("conditions", [{}])[0].get("reason") == "ValueUnavailable")
        assert "does not take them" in run_status(api)["conditions"][0]["message"]
        assert [n["phase"] for n in run_status(api)["nodes"]] == ["Running"]  # nothing named yet
        store.available = True
        await settle(lambda: run_status(api).get("phase") == "Succeeded")
        assert calls == ["Grow", "B"]  # Grow's result waited; it did not run again
        (digest,) = store.values
        assert json.loads(store.values[digest])["blob"] == "x" * 10_000
        assert ("ns", "uid-r", digest) in store.holds
        assert run_status(api)["output"] == {"n": 2}  # B's, small: inline

    scenario(body, values=store, engine=EngineOptions(value_recheck=timedelta(seconds=0.1)))
