"""`seqflow run --local FILE ...`: a Workflow run on this machine through the operator's engine
(seqflow.local), its steps' transitions printed as it goes (on stderr) and its output at the
end (JSON on stdout). Exit codes: 0 the run succeeded, 1 it did not, 2 a usage error."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from seqflow.api.models import JsonObject
from seqflow.local import (
    LocalOptions,
    LocalResult,
    TerminalSignals,
    Transition,
    UsageError,
    WorkflowFileError,
    load_workflows,
    run_local,
)
from seqflow.local.options import assignments, import_modules, json_object, unknown_stubs
from seqflow.local.signals import NoSignals, SignalSource

USAGE_ERROR = 2
INTERRUPTED = 130


def main(args: argparse.Namespace) -> int:
    """Run the local run the arguments describe; its exit code."""
    try:
        options = _options(args)
    except (UsageError, WorkflowFileError) as error:
        print(f"seqflow: {error}", file=sys.stderr)
        return USAGE_ERROR
    signals: SignalSource = (
        TerminalSignals(lines=sys.stdin, prompt=sys.stderr) if sys.stdin.isatty() else NoSignals()
    )
    try:
        result = asyncio.run(run_local(options, signals=signals, on_transition=_print_transition))
    except KeyboardInterrupt:
        print("seqflow: interrupted", file=sys.stderr)
        return INTERRUPTED
    _print_result(result)
    return 0 if result.succeeded else 1


def _options(args: argparse.Namespace) -> LocalOptions:
    workflows = load_workflows(args.local)
    stubs = assignments(args.stub, what="--stub")
    unknown = unknown_stubs(workflows, stubs)
    if unknown:
        raise UsageError(f"--stub {unknown[0]}: no step of that id in the Workflows")
    import_modules(args.handlers)
    return LocalOptions(
        workflows=workflows,
        input=_input(args),
        stubs=stubs,
        signals=assignments(args.signal, what="--signal"),
        jobs=args.jobs,
        job_environment=dict(os.environ),  # a local Job runs as a command of this shell would
        real_time=args.real_time,
    )


def _input(args: argparse.Namespace) -> JsonObject:
    if args.input_file is not None:
        try:
            text = args.input_file.read_text()
        except OSError as error:
            raise UsageError(f"--input-file {args.input_file}: {error.strerror or error}") from None
        return json_object(text, what=f"--input-file {args.input_file}")
    return json_object(args.input, what="--input") if args.input else {}


def _print_transition(transition: Transition) -> None:
    print(transition.line(), file=sys.stderr, flush=True)


def _print_result(result: LocalResult) -> None:
    print(result.summary(), file=sys.stderr)
    print(json.dumps(result.output if result.output is not None else {}, indent=2))
