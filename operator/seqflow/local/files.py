"""Workflows read from YAML files for a local run: every `kind: Workflow` document of the files,
by name; the first one of the first file is the one run, the others are there for its
sub-workflow steps (workflowRef)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from seqflow.api.models import CLUSTER_WORKFLOW, WorkflowRef, WorkflowSpec, workflow_identity


class WorkflowFileError(Exception):
    """A file that cannot be read, is not YAML, or holds no valid Workflow."""


@dataclass(frozen=True)
class Workflows:
    """The Workflows of the files: `main` is the one to run."""

    main: str
    specs: Mapping[str, WorkflowSpec]

    @property
    def main_spec(self) -> WorkflowSpec:
        return self.specs[self.main]

    @property
    def main_ref(self) -> WorkflowRef:
        kind, _, name = self.main.rpartition("/")
        return WorkflowRef(kind=CLUSTER_WORKFLOW if kind else None, name=name)


def load_workflows(paths: Iterable[Path]) -> Workflows:
    """The Workflows of `paths`, in order (`WorkflowFileError` when one cannot be had, or when
    the first file, which gives the one to run, holds none)."""
    specs: dict[str, WorkflowSpec] = {}
    for path in paths:
        found = _workflows_of(path)
        if not specs and not found:
            raise WorkflowFileError(
                f"{path}: no Workflow in it (a document of kind: Workflow or ClusterWorkflow)"
            )
        for name, spec in found:
            if name in specs:
                raise WorkflowFileError(f"{path}: a second Workflow named {name}")
            specs[name] = spec
    if not specs:
        raise WorkflowFileError("no Workflow file given")
    return Workflows(main=next(iter(specs)), specs=specs)


def _workflows_of(path: Path) -> list[tuple[str, WorkflowSpec]]:
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except OSError as error:
        raise WorkflowFileError(f"{path}: cannot be read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise WorkflowFileError(f"{path}: not YAML: {' '.join(str(error).split())}") from None
    kinds = ("Workflow", CLUSTER_WORKFLOW)
    return [_workflow(path, d) for d in documents if isinstance(d, dict) and d.get("kind") in kinds]


def _workflow(path: Path, document: dict[str, Any]) -> tuple[str, WorkflowSpec]:
    """(its name as `WorkflowRef.identity` gives it, its spec)"""
    name = (document.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise WorkflowFileError(f"{path}: a {document['kind']} without metadata.name")
    try:
        spec = WorkflowSpec.model_validate(document.get("spec") or {})
        return workflow_identity(kind=document["kind"], name=name), spec
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        count = error.error_count()
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise WorkflowFileError(f"{path}: Workflow {name}: spec.{where}: {first['msg']}{more}") from None
