"""The seqflow command line: run the operator (or with `run --local`, a Workflow on this machine),
print the CRDs, lint manifests offline, run a handler in a Job, migrate and read the history
store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seqflow.api.models import RunPhase
from seqflow.settings import StartupError, load_settings

# Each command imports what it needs when it runs: `seqflow history` answers without loading
# Kopf, the Kubernetes client or aiohttp.


def _crds(args: argparse.Namespace) -> None:
    import yaml

    from seqflow.api.crd import custom_resource_definitions

    for crd in custom_resource_definitions():
        text = yaml.safe_dump(crd, sort_keys=False)
        if args.output_dir:
            path = Path(args.output_dir) / f"{crd['metadata']['name']}.yaml"
            path.write_text(text)
        else:
            sys.stdout.write("---\n" + text)


def _lint(args: argparse.Namespace) -> None:
    from seqflow.cli import lint

    sys.exit(lint.main(args.files, args.handlers))


def _run(args: argparse.Namespace) -> None:
    if args.local:
        from seqflow.cli import local

        sys.exit(local.main(args))
    import asyncio

    settings = load_settings()
    from seqflow.app import run_operator
    from seqflow.logs import configure_logging

    configure_logging(level=settings.log_level, json_format=settings.log_format == "json")
    asyncio.run(run_operator(settings))


def _migrate(args: argparse.Namespace) -> None:
    from seqflow.history.migrate import upgrade
    from seqflow.history.store import open_store

    store = open_store(load_settings().database_url.get_secret_value())
    upgrade(store.engine)
    print(f"history schema up to date in {store.engine.url.render_as_string()}")


def _history(args: argparse.Namespace) -> None:
    import json

    from seqflow.history.store import BadCursor, NoStore, RunFilter, open_store
    from seqflow.history.values import StoredValues, named_in, put_in_place, value_places

    try:
        store = open_store(load_settings().database_url.get_secret_value(), create=False)
    except NoStore as error:
        raise StartupError(str(error)) from None
    if args.action == "show":
        run = store.get_run(args.namespace, args.name)
        if run is None:
            sys.exit(f"no history of run {args.namespace}/{args.name}")
        places = value_places(run)  # stored values whole, as the HTTP API shows them
        stored = StoredValues(store).get(namespace=args.namespace, digests=named_in(places))
        put_in_place(places, {digest: json.loads(data) for digest, data in stored.items()})
        print(json.dumps(run, indent=2))
        return
    run_filter = RunFilter(namespace=args.namespace, workflow=args.workflow, phase=args.phase)
    try:
        items, cursor = store.list_runs(filter=run_filter, limit=args.limit, cursor=args.cursor)
    except BadCursor as error:
        sys.exit(str(error))
    for run in items:
        print(
            f"{run['namespace']}/{run['name']}  {run['workflow']}  {run['phase']}  "
            f"created {run['createdAt']}  finished {run['finishedAt'] or '-'}"
        )
    if cursor:
        print(f"more: --cursor {cursor}")


def _task(args: argparse.Namespace) -> None:
    from seqflow.cli import entrypoint

    entrypoint.main(args.handler, load_settings().handler_modules)


def _artifacts(args: argparse.Namespace) -> None:
    from seqflow.cli import artifacts

    artifacts.main(args.verb)


def _add_local_arguments(run: argparse.ArgumentParser) -> None:
    """The options of a local run, on the `run` command."""
    run.add_argument(
        "--local",
        nargs="+",
        metavar="WORKFLOW.yaml",
        type=Path,
        help="run the first Workflow of these files here, without a cluster (the others serve its "
        "sub-workflow steps)",
    )
    given = run.add_mutually_exclusive_group()
    given.add_argument("--input", metavar="JSON", help="the run's input, a JSON object (default {})")
    given.add_argument("--input-file", metavar="FILE", type=Path, help="the run's input from a file")
    run.add_argument(
        "--handlers", nargs="+", action="extend", default=[], metavar="MODULE", help="modules to import"
    )
    run.add_argument(
        "--stub",
        action="append",
        default=[],
        metavar="STEP=JSON",
        help="the output of a step instead of running it (its items' and members' too)",
    )
    run.add_argument(
        "--jobs",
        choices=["local", "stub"],
        default="stub",
        help="Job steps: their command as a local process, or their input as their output (default)",
    )
    run.add_argument("--real-time", action="store_true", help="wait out sleeps and backoffs")
    run.add_argument(
        "--signal", action="append", default=[], metavar="NAME=JSON", help="a signal given from the start"
    )


def _local_arguments_given(args: argparse.Namespace) -> bool:
    """Whether options of a local run are given (without --local they are a usage error)."""
    return (
        bool(args.input or args.input_file or args.handlers or args.stub or args.signal or args.real_time)
        or args.jobs != "stub"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seqflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the operator (settings from SEQFLOW_* variables), or with --local a Workflow here",
    )
    _add_local_arguments(run)
    run.set_defaults(func=_run)
    crds = commands.add_parser("crds", help="print the CRDs generated from the models")
    crds.add_argument("--output-dir", help="write one file per CRD into this directory")
    crds.set_defaults(func=_crds)
    linting = commands.add_parser(
        "lint", help="check manifests offline, as the API server and the operator would (exit 1: problems)"
    )
    linting.add_argument("files", nargs="+", metavar="FILE", help="YAML files of seqflow manifests")
    linting.add_argument(
        "--handlers",
        nargs="+",
        action="extend",
        metavar="MODULE",
        help="modules registering the handlers (as SEQFLOW_HANDLER_MODULES); without it, not checked",
    )
    linting.set_defaults(func=_lint)
    task = commands.add_parser(
        "task", help="run one handler inside a Job's container (input and context from SEQFLOW_*)"
    )
    task.add_argument("handler", help="the registered handler name")
    task.set_defaults(func=_task)
    moving = commands.add_parser(
        "artifacts", help="move a Job step's files in its pod (SEQFLOW_ARTIFACTS, SEQFLOW_ARTIFACTS_DIR)"
    )
    moving.add_argument("verb", choices=["fetch", "keep"], help="fetch the inputs, or keep the outputs")
    moving.set_defaults(func=_artifacts)
    migrate = commands.add_parser("migrate", help="create or upgrade the history schema")
    migrate.set_defaults(func=_migrate)
    history = commands.add_parser("history", help="read the history store (SEQFLOW_DATABASE_URL)")
    actions = history.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="runs, newest first")
    listing.add_argument("--namespace")
    listing.add_argument("--workflow")
    listing.add_argument("--phase", choices=[phase.value for phase in RunPhase])
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="from the previous page's last line")
    show = actions.add_parser("show", help="one run with its attempts and activity log, as JSON")
    show.add_argument("namespace")
    show.add_argument("name")
    history.set_defaults(func=_history)
    args = parser.parse_args(argv)
    if args.command == "run" and not args.local and _local_arguments_given(args):
        run.error("these options are for a local run: add --local WORKFLOW.yaml")
    try:
        args.func(args)
    except StartupError as error:
        sys.exit(f"seqflow: {error}")
