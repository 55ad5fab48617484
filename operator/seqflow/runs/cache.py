"""What this process knows of the cluster, fed by watch events and by its own writes: every run
(`RunCache`), the Workflows with their last Ready status, and the Jobs and pods of Job steps."""

from __future__ import annotations

from seqflow.api.bodies import (
    LAST_APPLIED,
    Key,
    annotations_of,
    deleting,
    key_of,
    run_finished,
    spec_of,
    status_of,
    version_of,
    workflow_of,
)
from seqflow.api.models import (
    CLUSTER_WORKFLOW,
    JsonObject,
    WorkflowSpec,
    WorkflowStatus,
    workflow_identity,
)
from seqflow.engine import WorkflowView

SLIM_STATUS = ("phase", "conditions", "output", "finishedAt")


def cached_form(body: JsonObject) -> tuple[JsonObject, bool]:
    """What the cache keeps of a run, and whether that is less than the whole of it: never its
    managedFields nor kubectl's last-applied copy of it; of a finished run whose history is
    written, only what other runs and the metrics read of it (its phase, conditions and output,
    for a parent) and no input."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    annotations = annotations_of(body)
    if LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    status = status_of(body)
    if not run_finished(body) or status.get("pendingHistory"):
        return {**body, "metadata": meta}, False
    spec = {k: v for k, v in spec_of(body).items() if k != "input"}
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
        written = self._written.get(key)
        if written and version_of(body) in written:
            written.discard(version_of(body))
            return False
        self._keep(key, body)
        return True

    def refresh(self, body: JsonObject) -> None:
        """Take a body read from the API (not our write: its watch event still counts)."""
        self._keep(key_of(body), body)

    def wrote(self, body: JsonObject) -> None:
        key = key_of(body)
        self._keep(key, body)
        self._written.setdefault(key, set()).add(version_of(body))

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

    def of_workflow(self, namespace: str, workflow: str) -> list[JsonObject]:
        """The runs of a Workflow (`workflow_of`) that have not finished and are not being
        deleted, in `namespace` ("": in every namespace)."""
        return [
            body
            for body in self._bodies.values()
            if namespace in ("", key_of(body)[0])
            and workflow_of(body) == workflow
            and not run_finished(body)
            and not deleting(body)
        ]

    def pending_history(self) -> int:
        return sum(len(status_of(b).get("pendingHistory") or ()) for b in self._bodies.values())


class Cache:
    """The runs, the Workflows (as the engine reads them, and their Ready status as last written
    or seen), and the Jobs and pods of Job steps (by namespace and Job name)."""

    def __init__(self) -> None:
        self.runs = RunCache()
        self.workflows: dict[Key, WorkflowView] = {}
        self.workflow_statuses: dict[Key, WorkflowStatus] = {}
        self.workflow_uids: dict[Key, str] = {}
        self.jobs: dict[Key, JsonObject] = {}
        self.pods: dict[Key, JsonObject] = {}  # a Job's pod, or a step's own pod, slim

    def workflows_in(self, namespace: str) -> dict[str, WorkflowSpec]:
        """The Workflows a run in `namespace` may name, by `workflow_of`: the namespace's own
        and the ClusterWorkflows (those alone for "")."""
        return {
            name if ns else workflow_identity(kind=CLUSTER_WORKFLOW, name=name): view.spec
            for (ns, name), view in self.workflows.items()
            if ns in (namespace, "")
        }

    def limited(self, namespace: str, workflow: str) -> bool:
        """Whether the Workflow (`workflow_of`) limits how many of its runs run at once."""
        view = self.workflows.get(workflow_key(namespace, workflow))
        return view is not None and view.spec.concurrency is not None


def workflow_key(namespace: str, workflow: str) -> Key:
    """Where the Workflows cache keeps a run's Workflow (`workflow_of`): a ClusterWorkflow
    under ("", NAME)."""
    kind, _, name = workflow.rpartition("/")
    return ("", name) if kind == CLUSTER_WORKFLOW else (namespace, workflow)


def workflow_named(key: Key) -> str:
    """The Workflow under a cache key, as runs name it (`workflow_of`)."""
    return workflow_identity(kind=CLUSTER_WORKFLOW if not key[0] else None, name=key[1])
