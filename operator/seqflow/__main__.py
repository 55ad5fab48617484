"""The seqflow command line: run the operator, print the CRDs, run a handler in a Job, migrate
and read the history store."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import yaml

from seqflow.api.crd import custom_resource_definitions
from seqflow.api.models import RunPhase
from seqflow.settings import Settings


def _crds(args: argparse.Namespace) -> None:
    for crd in custom_resource_definitions():
        text = yaml.safe_dump(crd, sort_keys=False)
        if args.output_dir:
            path = Path(args.output_dir) / f"{crd['metadata']['name']}.yaml"
            path.write_text(text)
        else:
            sys.stdout.write("---\n" + text)


def _run(args: argparse.Namespace) -> None:
    settings = Settings()
    from seqflow.app import run_operator
    from seqflow.logs import configure_logging

    configure_logging(level=settings.log_level, json_format=settings.log_format == "json")
    asyncio.run(run_operator(settings))


def _migrate(args: argparse.Namespace) -> None:
    from seqflow.app import open_store
    from seqflow.history.migrate import upgrade

    store = open_store(Settings())
    upgrade(store.engine)
    print(f"history schema up to date in {store.engine.url.render_as_string()}")


def _history(args: argparse.Namespace) -> None:
    from seqflow.app import open_store
    from seqflow.history.store import BadCursor, RunFilter

    store = open_store(Settings())
    if args.action == "show":
        run = store.get_run(args.namespace, args.name)
        if run is None:
            sys.exit(f"no history of run {args.namespace}/{args.name}")
        print(json.dumps(run, indent=2))
        return
    run_filter = RunFilter(namespace=args.namespace, workflow=args.workflow, phase=args.phase)
    try:
        items, cursor = store.list_runs(filter=run_filter, limit=args.limit, cursor=args.cursor)
    except BadCursor as error:
        sys.exit(str(error))
    for run in items:
        print(f"{run['namespace']}/{run['name']}  {run['workflow']}  {run['phase']}  "
              f"created {run['createdAt']}  finished {run['finishedAt'] or '-'}")  # fmt: skip
    if cursor:
        print(f"more: --cursor {cursor}")


def _task(args: argparse.Namespace) -> None:
    from seqflow import entrypoint

    entrypoint.main(args.handler, Settings().handler_modules)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="seqflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator (settings from SEQFLOW_* variables)")
    run.set_defaults(func=_run)
    crds = commands.add_parser("crds", help="print the CRDs generated from the models")
    crds.add_argument("--output-dir", help="write one file per CRD into this directory")
    crds.set_defaults(func=_crds)
    task = commands.add_parser(
        "task", help="run one handler inside a Job's container (input and context from SEQFLOW_*)"
    )
    task.add_argument("handler", help="the registered handler name")
    task.set_defaults(func=_task)
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
    args.func(args)


if __name__ == "__main__":
    main()
