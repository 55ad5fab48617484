"""Kopf handlers: each translates one kind of watch event into a call of the reconciler.

Only `on.event` handlers are used: unlike create/update handlers they write nothing to the
objects (no annotations, no finalizers), so GitOps tools see exactly what users applied.
"""

from __future__ import annotations

import time
from typing import Any

import kopf

from seqflow.api.models import GROUP, VERSION
from seqflow.executors.jobs import MANAGED_BY
from seqflow.settings import Settings

PRIORITY_SPAN = 10**15  # more than the milliseconds since 1970 for the next 30,000 years


def configure(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """The Kopf settings seqflow relies on, and its peering (standalone when none is named)."""
    kopf_settings.posting.enabled = False
    kopf_settings.persistence.diffbase_storage = NoDiffBase()
    # Only our Jobs: filtered by the API server, not after the fact.
    ours = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
    kopf_settings.watching.label_selectors["batch", "v1", "jobs"] = ours
    kopf_settings.watching.label_selectors["", "v1", "pods"] = ours  # the Jobs' pods carry it too
    peering = kopf_settings.peering
    peering.standalone = not settings.peering
    if settings.peering:
        peering.mandatory = True
        peering.name = settings.peering
        peering.lifetime = settings.peering_lifetime_seconds
        # Distinct priorities (equal ones pause everybody); among replicas of one priority the
        # longest-running wins, so a replica that restarts comes back as a standby.
        peering.priority = settings.priority * PRIORITY_SPAN + (PRIORITY_SPAN - time.time_ns() // 10**6)


class NoDiffBase(kopf.DiffBaseStorage):
    """seqflow registers no change-detecting handlers, so Kopf needs no diff base; the default
    storage would still deep-copy every object on every watch event to build one."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.event(GROUP, VERSION, "workflowruns", registry=registry)
    async def run_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.reconciler.on_run_event(event["type"], event["object"])
        memo.scheduler.on_run_event(event["type"], event["object"])

    @kopf.on.event(GROUP, VERSION, "workflowschedules", registry=registry)
    async def schedule_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.scheduler.on_schedule_event(event["type"], event["object"])

    @kopf.on.event(GROUP, VERSION, "workflows", registry=registry)
    async def workflow_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.reconciler.on_workflow_event(event["type"], event["object"])

    @kopf.on.event(GROUP, VERSION, "clusterworkflows", registry=registry)
    async def cluster_workflow_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.reconciler.on_workflow_event(event["type"], event["object"])  # (kept under namespace "")

    @kopf.on.event("batch", "v1", "jobs", registry=registry)
    async def job_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.reconciler.on_job_event(event["type"], event["object"])

    @kopf.on.event("", "v1", "pods", registry=registry)
    async def pod_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.reconciler.on_pod_event(event["type"], event["object"])

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    return registry
