"""`seqflow lint FILE... [--handlers MODULE ...]`: seqflow manifests checked offline, with no cluster.

This module owns the command: reading the YAML files (several documents each, each with the line
it starts on), the handler modules, and the report (one line per problem, then a summary; the
exit code). Each seqflow document is checked as the API server checks it (seqflow.cli.crd_checks),
and each Workflow it would accept as the operator checks it before calling it Ready
(`seqflow.engine.workflow_problem`: handlers, expressions, sub-workflows among the files linted
and their loops, the input schema). Other documents are skipped with a note.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from seqflow.api.models import CLUSTER_WORKFLOW, GROUP, Reason, WorkflowSpec, workflow_identity
from seqflow.cli.crd_checks import Problem, api_server_problems, schema_path
from seqflow.engine import workflow_problem

SEMANTIC_PROBLEM = re.compile(
    r"; (?=task |defaults: |inputSchema |outputSchema )"
)  # where workflow_problem joins


class UsageError(Exception):
    """A file that cannot be read or is not YAML, or a handler module that does not import."""


@dataclass(frozen=True, kw_only=True)
class Document:
    file: str
    line: int  # where the document starts in its file, from 1
    body: Any

    @property
    def title(self) -> str:
        """Kind/name, as the messages name the object."""
        body: dict[str, Any] = self.body if isinstance(self.body, dict) else {}
        metadata = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
        name = metadata.get("name") or metadata.get("generateName") or "?"
        return f"{body.get('kind', '?')}/{name}"

    @property
    def not_seqflow(self) -> str | None:
        """Why the document is not checked, or None: it is a seqflow manifest."""
        if not isinstance(self.body, dict):
            return "not a Kubernetes object (a YAML mapping)"
        if not str(self.body.get("apiVersion", "")).startswith(f"{GROUP}/"):
            return f"not a seqflow manifest (apiVersion {self.body.get('apiVersion')})"
        return None


@dataclass(frozen=True, kw_only=True)
class Finding:
    document: Document
    problem: Problem

    def line(self) -> str:
        severity = "warning: " if self.problem.warning else ""
        place = f"{self.document.file}:{self.document.line}: {self.document.title}"
        return f"{place}: {self.problem.path}: {severity}{self.problem.message}"


class EveryHandler(frozenset[str]):
    """Handler names that hold every name: `workflow_problem` with these skips the handler check."""

    def __contains__(self, name: object) -> bool:
        return True


# Reading the files


def read_documents(file: str) -> list[Document]:
    """The documents of a YAML file (empty ones left out), each with the line it starts on."""
    try:
        text = Path(file).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{file}: cannot read it: {error}") from None
    loader = yaml.SafeLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 1
            documents.append(Document(file=file, line=line, body=loader.construct_document(node)))
    except yaml.YAMLError as error:
        raise UsageError(f"{file}: not YAML: {error}") from None
    finally:
        loader.dispose()
    return [document for document in documents if document.body is not None]


def registered_handlers(modules: Sequence[str]) -> frozenset[str]:
    """The handler names that importing `modules` registers (with `@seqflow.task`)."""
    from seqflow.executors.inprocess import import_handler_modules, registry
    from seqflow.settings import StartupError

    try:
        import_handler_modules(modules)
    except StartupError as error:
        raise UsageError(str(error)) from None
    return registry.names()


# The operator's checks of a Workflow


def workflow_problems(
    spec: WorkflowSpec, *, name: str, handlers: frozenset[str] | None, workflows: Mapping[str, WorkflowSpec]
) -> list[Problem]:
    """Why the operator would not call the Workflow Ready, one problem a line (the engine's
    check; without `handlers`, handlers are not checked), and its sub-workflows missing from
    `workflows` (the other Workflows of its namespace in the files) as warnings."""
    found = []
    if handlers is not None:
        unrunnable = workflow_problem(spec, name=name, handlers=handlers, workflows=workflows)
        if unrunnable is not None and unrunnable[0] == Reason.HANDLER_NOT_FOUND:
            found += SEMANTIC_PROBLEM.split(unrunnable[1])
    rest = workflow_problem(spec, name=name, handlers=EveryHandler(), workflows=workflows)
    found += SEMANTIC_PROBLEM.split(rest[1]) if rest is not None else []
    problems = [Problem(path=task_place(spec, text), message=text) for text in found]
    return problems + missing_subworkflows(spec, name=name, workflows=workflows)


def task_place(spec: WorkflowSpec, problem: str) -> str:
    """The field a problem of `workflow_problem` is about ("task A: ..." is spec.tasks[i])."""
    if problem.startswith("defaults: "):
        return "spec.defaults"
    for schema in ("inputSchema", "outputSchema"):
        if problem.startswith(f"{schema} "):
            return f"spec.{schema}"
    places = [(task.name, f"spec.tasks[{index}]") for index, task in enumerate(spec.tasks)]
    places += [(final.name, f"spec.finally[{index}]") for index, final in enumerate(spec.finally_ or [])]
    for task, place in sorted(places, key=lambda named: -len(named[0])):
        if re.match(rf"task {re.escape(task)}(?=[\s:/])", problem):
            return place
    return "spec"


def missing_subworkflows(
    spec: WorkflowSpec, *, name: str, workflows: Mapping[str, WorkflowSpec]
) -> list[Problem]:
    """Warnings for the sub-workflows the files linted do not hold: not checked."""
    problems = []
    for index, task in enumerate(spec.tasks):
        place, ref = f"spec.tasks[{index}].workflowRef", task.workflow_ref
        if task.for_each is not None and task.for_each.step.workflow_ref is not None:
            place, ref = f"spec.tasks[{index}].forEach.step.workflowRef", task.for_each.step.workflow_ref
        if ref is not None and ref.identity != name and ref.identity not in workflows:
            kind = ref.kind or "Workflow"
            message = f'{kind} "{ref.name}" is not in the files linted: not checked (nor loops through it)'
            problems.append(Problem(path=place, message=message, warning=True))
    return problems


# Linting


@dataclass(frozen=True, kw_only=True)
class Report:
    findings: list[Finding]
    notes: list[str]
    checked: int  # seqflow documents
    files: int

    @property
    def errors(self) -> int:
        return sum(not finding.problem.warning for finding in self.findings)

    def lines(self) -> list[str]:
        warnings = len(self.findings) - self.errors
        summary = (
            f"{self.errors} error{'s' * (self.errors != 1)}, {warnings} warning{'s' * (warnings != 1)} "
            f"in {self.checked} seqflow document{'s' * (self.checked != 1)} "
            f"of {self.files} file{'s' * (self.files != 1)}"
        )
        return [*self.notes, *(finding.line() for finding in self.findings), summary]


@dataclass(frozen=True, kw_only=True)
class Accepted:
    """A Workflow (or ClusterWorkflow) the API server would store, as the operator reads it."""

    index: int  # of its document among the seqflow ones
    namespace: str | None  # None: a ClusterWorkflow's
    name: str  # as `WorkflowRef.identity` names it
    spec: WorkflowSpec

    def sees(self, other: Accepted) -> bool:
        """Whether it may run `other` as a sub-workflow: one of its namespace, or a ClusterWorkflow."""
        return other is not self and other.namespace in (None, self.namespace)


def lint(documents: Sequence[Document], *, handlers: frozenset[str] | None, files: int) -> Report:
    """Every check of every seqflow document; other documents are skipped with a note."""
    notes = [] if handlers is not None else ["note: handlers not checked (no --handlers MODULE given)"]
    notes += [f"{d.file}:{d.line}: {d.title}: skipped: {d.not_seqflow}" for d in documents if d.not_seqflow]
    ours = [d for d in documents if not d.not_seqflow]
    problems = [api_server_problems(d.body) for d in ours]
    accepted = accepted_workflows(ours, problems)
    for workflow in accepted:
        others = {w.name: w.spec for w in accepted if workflow.sees(w)}
        problems[workflow.index] += workflow_problems(
            workflow.spec, name=workflow.name, handlers=handlers, workflows=others
        )
    findings = [
        Finding(document=d, problem=p) for d, found in zip(ours, problems, strict=True) for p in found
    ]
    return Report(findings=findings, notes=notes, checked=len(ours), files=files)


def accepted_workflows(documents: Sequence[Document], problems: list[list[Problem]]) -> list[Accepted]:
    """The Workflows among `documents` the API server would store and the operator can read (the
    models' problems with the others added to theirs in `problems`)."""
    accepted = []
    for index, document in enumerate(documents):
        kind = document.body.get("kind")
        if kind not in ("Workflow", CLUSTER_WORKFLOW) or any(not p.warning for p in problems[index]):
            continue
        try:
            spec = WorkflowSpec.model_validate(document.body["spec"])
        except ValidationError as error:
            problems[index] += model_problems(error)
            continue
        metadata = document.body["metadata"]
        namespace = None if kind == CLUSTER_WORKFLOW else metadata.get("namespace") or ""
        name = workflow_identity(kind=kind, name=metadata.get("name") or "")
        accepted.append(Accepted(index=index, namespace=namespace, name=name, spec=spec))
    return accepted


def model_problems(error: ValidationError) -> list[Problem]:
    """What the operator's models refuse in a spec the API server accepts (the operator ignores
    such a Workflow)."""
    return [
        Problem(
            path=schema_path(["spec", *problem["loc"]]),
            message=f"the operator cannot read it: {problem['msg']}",
        )
        for problem in error.errors()
    ]


def main(files: Sequence[str], handler_modules: Sequence[str] | None) -> int:
    """Lint `files`, print the report; the exit code: 0 clean, 1 problems, 2 a usage error."""
    try:
        documents = [document for file in files for document in read_documents(file)]
        handlers = registered_handlers(handler_modules) if handler_modules is not None else None
    except UsageError as error:
        print(f"seqflow lint: {error}", file=sys.stderr)
        return 2
    report = lint(documents, handlers=handlers, files=len(files))
    print("\n".join(report.lines()))
    return 1 if report.errors else 0
