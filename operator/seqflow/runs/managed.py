"""The Job controller's part for the Jobs seqflow runs itself (executors/managed.py): a managed
Job's pod created (again, when it is gone before its Job ended), and the Job's status written
once its pod has ended, so that it ends as an ordinary Job does."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from seqflow.api.bodies import name_of
from seqflow.api.models import JsonObject
from seqflow.clock import Clock
from seqflow.cluster.kube import ApiError, Conflict, Forbidden, KubeApi, NotFound
from seqflow.engine import AttemptResult
from seqflow.executors.managed import ended_status, job_pod_manifest
from seqflow.executors.outcomes import attempt_times, slim_pod
from seqflow.runs.cache import Cache
from seqflow.runs.state import RunState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ManagedJobs:
    api: KubeApi
    cache: Cache
    clock: Clock

    async def start_pod(self, job: JsonObject, *, state: RunState, node: str) -> bool:
        """Create the one pod of a managed Job (unless it is there); False when it cannot be
        created now (why is in the run's state)."""
        namespace = job["metadata"]["namespace"]
        try:
            pod = await self.api.create_pod(namespace, job_pod_manifest(job))
        except Conflict:  # created before
            return True
        except Forbidden as error:
            state.forbidden(node, what="pods", namespace=namespace, message=error.message)
            return False
        self.cache.pods[(namespace, name_of(pod))] = slim_pod(pod)
        return True

    async def finish(self, job: JsonObject, pod: JsonObject, outcome: AttemptResult) -> None:
        """Write the status of a managed Job whose pod has ended (a failure to is logged: the
        run goes on from the pod's outcome either way)."""
        namespace = job["metadata"]["namespace"]
        now = self.clock.now()
        started, ended = attempt_times(job=None, pod=pod) or (now, now)
        succeeded, reason, message = outcome.succeeded, outcome.reason, outcome.error
        status = ended_status(
            started=started, ended=ended, succeeded=succeeded, reason=reason, message=message
        )
        try:
            written = await self.api.patch_job_status(namespace, name_of(job), {"status": status})
        except NotFound:
            return
        except ApiError as error:
            logger.warning("the status of Job %s/%s was not written: %s", namespace, name_of(job), error)
            return
        self.cache.jobs[(namespace, name_of(job))] = written
