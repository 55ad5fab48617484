"""The seqflow command line: run the operator, print the CRDs, run a handler in a Job."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import timedelta
from pathlib import Path

import kopf
import yaml

from seqflow.api.crd import custom_resource_definitions
from seqflow.engine import EngineOptions
from seqflow.executors.inprocess import HandlerRunner, import_handler_modules, registry
from seqflow.handlers import build_registry, configure
from seqflow.kube import KubeApi, load_configuration
from seqflow.reconciler import Reconciler, ReconcilerOptions
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
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per watch event
    asyncio.run(run_operator(settings))


async def run_operator(settings: Settings) -> None:
    import_handler_modules(settings.handler_modules)
    api = KubeApi(load_configuration(), connections=settings.api_connections)
    runner = HandlerRunner(handlers=registry, threads=settings.handler_threads)
    reconciler = Reconciler(
        api=api,
        runner=runner,
        handler_names=registry.names(),
        options=ReconcilerOptions(
            workers=settings.max_concurrent_runs,
            event_queue_size=settings.event_queue_size,
            job_ttl_seconds=settings.job_ttl_seconds,
            engine=EngineOptions(
                workflow_wait=timedelta(seconds=settings.workflow_wait_seconds),
                default_timeout_seconds=settings.default_timeout_seconds,
            ),
        ),
    )
    kopf_settings = kopf.OperatorSettings()
    configure(kopf_settings)
    logging.getLogger("seqflow").info(
        "seqflow starting: handlers %s, %d workers", sorted(registry.names()), settings.max_concurrent_runs
    )
    reconciler.start()
    try:
        await kopf.operator(
            registry=build_registry(),
            settings=kopf_settings,
            memo=kopf.Memo(reconciler=reconciler),
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
        )
    finally:
        await reconciler.stop()
        runner.close()
        await api.close()


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
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
