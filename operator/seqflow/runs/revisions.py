"""Workflow revisions: each spec a Workflow has had, numbered by its generation, kept as an
immutable ControllerRevision `<workflow>-<revision>` owned by the Workflow (as Deployments and
StatefulSets keep theirs: in the cluster, under the namespace's RBAC, gone with the Workflow,
readable while the history store is away); the spec of one read back for the runs that name it;
and the old ones pruned: those the Workflow's runs use (and its latest Ready one) are kept, then
the newest `revisionHistoryLimit`."""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from pydantic import ValidationError

from seqflow.api.bodies import Key, owners_of, spec_of, status_of
from seqflow.api.manifests import LABEL_WORKFLOW, revision_manifest, revision_name
from seqflow.api.models import JsonObject, WorkflowSpec, shortened_name
from seqflow.cluster.kube import Conflict, KubeApi, NotFound
from seqflow.runs.cache import Cache

logger = logging.getLogger(__name__)

DEFAULT_HISTORY_LIMIT = 10
SPECS_KEPT = 256  # revisions' specs read back and kept in memory (they never change)


@dataclass(kw_only=True)
class Revisions:
    api: KubeApi
    cache: Cache
    _specs: OrderedDict[tuple[str, str, str, int], WorkflowSpec] = field(default_factory=OrderedDict)

    async def keep(self, key: Key, *, uid: str, spec: WorkflowSpec, revision: int) -> None:
        """Keep the Workflow's spec as its revision (done again harmlessly), then prune."""
        namespace, workflow = key
        manifest = revision_manifest(
            namespace=namespace, workflow=workflow, uid=uid, spec=spec, revision=revision
        )
        try:
            await self.api.create_controller_revision(namespace, manifest)
        except Conflict:
            found = await self.api.get_controller_revision(namespace, manifest["metadata"]["name"])
            if _owned_by(found, uid):
                return
            # a Workflow of that name deleted and made again: its old revisions are on their way out
            await self.api.delete_controller_revision(namespace, manifest["metadata"]["name"])
            await self.api.create_controller_revision(namespace, manifest)
        await self._prune(key, uid=uid, limit=_limit(spec))

    async def spec_of(self, key: Key, *, uid: str, revision: int) -> WorkflowSpec | None:
        """The spec of one revision of the Workflow (None: not kept, or not this Workflow's)."""
        cached = self._specs.get((*key, uid, revision))
        if cached is not None:
            return cached
        try:
            found = await self.api.get_controller_revision(key[0], revision_name(key[1], revision))
        except NotFound:
            return None
        if not _owned_by(found, uid) or found.get("revision") != revision:
            return None
        try:
            spec = WorkflowSpec.model_validate(spec_of(found.get("data") or {}))
        except ValidationError as error:
            logger.warning("revision %d of Workflow %s/%s is unreadable: %s", revision, *key, error)
            return None
        self._specs[(*key, uid, revision)] = spec
        if len(self._specs) > SPECS_KEPT:
            self._specs.popitem(last=False)
        return spec

    async def _prune(self, key: Key, *, uid: str, limit: int) -> None:
        namespace, workflow = key
        listed = await self.api.list_controller_revisions(
            namespace, label_selector=f"{LABEL_WORKFLOW}={shortened_name(workflow)}"
        )
        ours = sorted((r for r in listed if _owned_by(r, uid)), key=lambda r: int(r.get("revision") or 0))
        used = self._in_use(key)
        for old in ours[: max(len(ours) - limit - 1, 0)]:  # (the newest is the Workflow's own)
            if old.get("revision") in used:
                continue
            with contextlib.suppress(NotFound):
                await self.api.delete_controller_revision(namespace, old["metadata"]["name"])

    def _in_use(self, key: Key) -> set[int]:
        """The revisions the Workflow's unfinished runs run or name, and its latest Ready one."""
        used = {
            revision
            for body in self.cache.runs.of_workflow(*key)
            for revision in (
                status_of(body).get("workflowGeneration"),
                (spec_of(body).get("workflowRef") or {}).get("revision"),
            )
            if revision is not None
        }
        status = self.cache.workflow_statuses.get(key)
        if status is not None and status.ready_revision is not None:
            used.add(status.ready_revision)
        return used


def _owned_by(revision: JsonObject, uid: str) -> bool:
    return any(o.get("uid") == uid for o in owners_of(revision))


def _limit(spec: WorkflowSpec) -> int:
    return DEFAULT_HISTORY_LIMIT if spec.revision_history_limit is None else spec.revision_history_limit
