"""The attempts of a local run's steps, carried out on this machine: in-process handlers
through the operator's HandlerRunner, http steps through its HttpCaller (to any host: a local
run acts as its user), Job steps as local processes or stubbed, and any step replaced by its
stub. Steps that pass files (artifacts) fail: a local run has no object store."""

from __future__ import annotations

from seqflow.api.models import JsonObject, PinnedMember, PinnedTask, Reason
from seqflow.engine import AttemptResult, CreateJob, RunHandler
from seqflow.executors.http import AllowedHosts, HttpCaller
from seqflow.executors.inprocess import HandlerRunner, TaskContext
from seqflow.local.clock import LocalClock
from seqflow.local.options import LocalOptions
from seqflow.local.processes import run_process

HANDLER_THREADS = 4


class SecretsUnavailable(LookupError):
    """A local run reads no Kubernetes Secrets."""


async def no_secrets(namespace: str, name: str) -> JsonObject:
    raise SecretsUnavailable(f"a local run reads no Secrets (Secret {name}): stub this step")


class EveryHost(AllowedHosts):
    """Every host: the requests of a local run are its user's own."""

    def __init__(self) -> None:
        super().__init__(patterns=("*",))

    def admit(self, url: object) -> bool:
        return True


class LocalSteps:
    """Carries out attempts and returns how they ended, never raising (but when cancelled)."""

    def __init__(self, *, options: LocalOptions, clock: LocalClock) -> None:
        self._options = options
        self._runner = HandlerRunner(handlers=options.handlers, threads=HANDLER_THREADS)
        self._http = HttpCaller(allowed=EveryHost(), secrets=no_secrets, clock=clock)

    async def close(self) -> None:
        self._runner.close()
        await self._http.close()

    async def run_handler(self, action: RunHandler, context: TaskContext) -> AttemptResult:
        """An in-process or http step's attempt."""
        stub = self._options.stub_for(action.node)
        if stub is not None:
            return AttemptResult(node=action.node, attempt=action.attempt, output=stub)
        if _passes_files(action.task):
            return _no_files(action.node, action.attempt)
        if action.task.http is not None:
            return await self._http.call(action, namespace=context.namespace)
        return await self._runner.run(action, context)

    async def run_job(self, action: CreateJob, *, input: JsonObject, context: TaskContext) -> AttemptResult:
        """A Job step's attempt, given its input whole."""
        stub = self._options.stub_for(action.node)
        if stub is not None or self._options.jobs == "stub":
            return AttemptResult(
                node=action.node, attempt=action.attempt, output=input if stub is None else stub
            )
        if _passes_files(action.task):
            return _no_files(action.node, action.attempt)
        return await run_process(
            action, input=input, context=context, environment=self._options.job_environment
        )


def _passes_files(step: PinnedTask | PinnedMember) -> bool:
    return step.artifacts is not None and bool(step.artifacts.inputs or step.artifacts.outputs)


def _no_files(node: str, attempt: int) -> AttemptResult:
    error = "this step passes files (artifacts) and a local run has no object store for them: stub it"
    return AttemptResult(
        node=node, attempt=attempt, error=error, permanent=True, reason=Reason.ARTIFACTS_UNAVAILABLE
    )
