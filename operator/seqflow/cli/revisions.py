"""`kubectl seqflow revisions | diff | rollback`: a Workflow's revisions (the ControllerRevisions
the operator keeps of each spec it had) with the runs on each, the difference between two, and a
rollback, which writes an old spec back as the Workflow's spec (so a new revision) and prints
the manifest, for a GitOps repository to take the same change."""

from __future__ import annotations

import argparse
import difflib
from typing import TYPE_CHECKING, Any

import yaml

from seqflow.api.bodies import name_of, spec_of, status_of, uid_of
from seqflow.api.manifests import LABEL_WORKFLOW
from seqflow.api.models import GROUP, VERSION, shortened_name

if TYPE_CHECKING:
    from seqflow.cli.plugin import Runs


class NoSuchRevision(Exception):
    """A revision the Workflow does not have (kept), in one line."""


def _kept(runs: Runs, workflow: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Workflow and its revisions, oldest first."""
    found = runs.get_workflow(workflow)
    listed = runs.revisions(f"{LABEL_WORKFLOW}={shortened_name(workflow)}")
    ours = [
        r
        for r in listed
        if any(o["uid"] == uid_of(found) for o in r["metadata"].get("ownerReferences") or [])
    ]
    return found, sorted(ours, key=lambda r: int(r["revision"]))


def _spec(revisions: list[dict[str, Any]], number: int, *, workflow: str) -> dict[str, Any]:
    for revision in revisions:
        if int(revision["revision"]) == number:
            spec: dict[str, Any] = spec_of(revision.get("data") or {})
            return spec
    known = ", ".join(str(r["revision"]) for r in revisions) or "none"
    raise NoSuchRevision(f'Workflow "{workflow}" has no revision {number} (kept: {known})')


def revisions(runs: Runs, args: argparse.Namespace) -> int:
    workflow, kept = _kept(runs, args.workflow)
    status = status_of(workflow)
    of_workflow = [
        r for r in runs.list(label_selector="") if spec_of(r)["workflowRef"]["name"] == args.workflow
    ]
    print(f"{'REVISION':<10}{'CREATED':<27}{'RUNS':<7}NOTE")
    for revision in reversed(kept):
        number = int(revision["revision"])
        on_it = sum(status_of(r).get("workflowGeneration") == number for r in of_workflow)
        notes = [
            n
            for n, at in (("current", status.get("revision")), ("ready", status.get("readyRevision")))
            if at == number
        ]
        created = revision["metadata"]["creationTimestamp"]
        print(f"{number:<10}{created:<27}{on_it:<7}{', '.join(notes)}".rstrip())
    return 0


def diff(runs: Runs, args: argparse.Namespace) -> int:
    """The difference between two revisions' specs (exit code 1 when they differ, as diff's)."""
    workflow, kept = _kept(runs, args.workflow)
    new = args.new if args.new is not None else int(status_of(workflow).get("revision") or 0)
    old_spec, new_spec = (_spec(kept, n, workflow=args.workflow) for n in (args.old, new))
    text = spec_diff(old_spec, new_spec, labels=(f"revision {args.old}", f"revision {new}"))
    print(text, end="")
    return 1 if text else 0


def rollback(runs: Runs, args: argparse.Namespace) -> int:
    workflow, kept = _kept(runs, args.workflow)
    written = runs.replace_workflow_spec(workflow, _spec(kept, args.to, workflow=args.workflow))
    now = written["metadata"]["generation"]
    print(f"# workflow/{args.workflow} rolled back to revision {args.to} (as revision {now}); commit it:")
    print(yaml.safe_dump(manifest_of(written), sort_keys=False), end="")
    return 0


def spec_diff(old: dict[str, Any], new: dict[str, Any], *, labels: tuple[str, str]) -> str:
    def lines(spec: dict[str, Any]) -> list[str]:
        return yaml.safe_dump(spec, sort_keys=True).splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(old), lines(new), fromfile=labels[0], tofile=labels[1]))


def manifest_of(workflow: dict[str, Any]) -> dict[str, Any]:
    """The Workflow as a repository holds it: its name, namespace, own labels and annotations
    (none the tools add) and spec."""
    meta = workflow["metadata"]
    metadata: dict[str, Any] = {"name": name_of(workflow), "namespace": meta["namespace"]}
    for part in ("labels", "annotations"):
        mine = {k: v for k, v in (meta.get(part) or {}).items() if "kubernetes.io/" not in k}
        if mine:
            metadata[part] = mine
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": spec_of(workflow),
    }


def add_commands(commands: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    """`revisions`, `diff` and `rollback`, on the plugin's subcommands."""
    listing = commands.add_parser(
        "revisions", help="a Workflow's revisions and the runs on each", parents=parents
    )
    listing.add_argument("workflow", help="the Workflow's name")
    listing.set_defaults(func=revisions)
    diffing = commands.add_parser(
        "diff", help="the difference between two revisions of a Workflow", parents=parents
    )
    diffing.add_argument("workflow", help="the Workflow's name")
    diffing.add_argument("old", type=int, help="a revision")
    diffing.add_argument("new", type=int, nargs="?", help="another (default: the current one)")
    diffing.set_defaults(func=diff)
    back = commands.add_parser(
        "rollback", help="write an old revision's spec back (a new revision) and print it", parents=parents
    )
    back.add_argument("workflow", help="the Workflow's name")
    back.add_argument("--to", type=int, required=True, help="the revision to go back to")
    back.set_defaults(func=rollback)
