"""A run as the engine sees it, read from its body: `run_view`, and `UnreadableStatus` for a
status seqflow cannot read."""

from __future__ import annotations

from pydantic import ValidationError

from seqflow.api.bodies import created_at, generation_of, key_of, labels_of, spec_of, status_of
from seqflow.api.models import JsonObject, WorkflowRunSpec, WorkflowRunStatus, upgrade_status
from seqflow.engine import RunView
from seqflow.executors.children import depth_of, max_descendants_of


class UnreadableStatus(Exception):
    """The run's status is not one seqflow can read (edited by hand, or corrupted)."""


def run_view(body: JsonObject, *, status: WorkflowRunStatus | None = None) -> RunView:
    """The run as the engine sees it (with `status` instead of its own, when given);
    `UnreadableStatus` when its status cannot be parsed (the CRD schema guarantees the spec's
    shape). A status written by an earlier seqflow is converted on the way."""
    namespace, name = key_of(body)
    if status is None:
        try:
            status = WorkflowRunStatus.model_validate(upgrade_status(status_of(body), run=name))
        except ValidationError as error:
            raise UnreadableStatus(_first_problem(error)) from None
    return RunView(
        name=name,
        spec=WorkflowRunSpec.model_validate(spec_of(body)),
        status=status,
        generation=generation_of(body),
        created_at=created_at(body),
        namespace=namespace,
        labels=labels_of(body),
        depth=depth_of(body),
        max_descendants=max_descendants_of(body),
    )


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"])
    return f"status.{where}: {problem['msg']} (input: {str(problem.get('input'))[:200]})"
