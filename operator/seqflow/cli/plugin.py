"""`kubectl seqflow`: run control and a run's story from the command line (kubectl finds the
`kubectl-seqflow` script on PATH). Every command writes or reads the WorkflowRun through the API
server, exactly as `kubectl patch` or a GitOps commit would: the plugin is a convenience, never
a requirement.

Exit codes: 0 done (with --wait: the run succeeded), 1 the run failed or was cancelled (with
--wait), 2 a usage error, an unknown run or a refusal of the API server.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import webbrowser
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from seqflow.api.bodies import generation_of, name_of, spec_of, status_of
from seqflow.api.manifests import RETRY_OF, workflow_run
from seqflow.api.manifests import rerun as rerun_manifest
from seqflow.api.manifests import retry_from as retry_from_manifest
from seqflow.api.models import CLUSTER_WORKFLOW, FINISHED, GROUP, VERSION, WorkflowRef, shortened_name
from seqflow.cli.forward import ForwardError, bearer_token, forwarded
from seqflow.cli.revisions import NoSuchRevision, add_commands
from seqflow.cli.steplogs import LogsUnavailable, add_logs_command

RUNS = "workflowruns"


class PluginError(Exception):
    """A problem to report in one line, exit code 2."""


class Runs:
    """The WorkflowRuns of one namespace, through the user's own credentials."""

    def __init__(self, *, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        try:
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c["name"] == context), None) if context else active
            if chosen is None:
                raise PluginError(f'no context "{context}" in the kubeconfig')
            config.load_kube_config(config_file=kubeconfig, context=context)
            default = (chosen.get("context") or {}).get("namespace")
        except config.ConfigException:
            try:
                config.load_incluster_config()
            except config.ConfigException as error:
                raise PluginError(f"no Kubernetes credentials: {error}") from None
            default = None
        self.namespace = namespace or default or "default"
        self.kubeconfig, self.context = kubeconfig, context
        self.api = client.CustomObjectsApi()
        self.core = client.CoreV1Api()

    def get(self, name: str) -> dict[str, Any]:
        return self._call(
            lambda: self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, RUNS, name)
        )

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"spec": spec}
        return self._call(
            lambda: self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, RUNS, name, body)
        )

    def list(self, *, label_selector: str) -> list[dict[str, Any]]:
        listed = self._call(
            lambda: self.api.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, RUNS, label_selector=label_selector
            )
        )
        items: list[dict[str, Any]] = listed.get("items") or []
        return items

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            lambda: self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, RUNS, body)
        )

    def get_workflow(self, name: str) -> dict[str, Any]:
        return self._call(
            lambda: self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "workflows", name)
        )

    def replace_workflow_spec(self, workflow: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """The Workflow with `spec` as its whole spec (refused if it changed since it was read)."""
        body = {**workflow, "spec": spec}
        name = workflow["metadata"]["name"]
        return self._call(
            lambda: self.api.replace_namespaced_custom_object(
                GROUP, VERSION, self.namespace, "workflows", name, body
            )
        )

    def revisions(self, selector: str) -> Sequence[dict[str, Any]]:
        apps = client.AppsV1Api(self.api.api_client)
        listed = self._call(
            lambda: apps.list_namespaced_controller_revision(self.namespace, label_selector=selector)
        )
        items: Sequence[dict[str, Any]] = listed.get("items") or []
        return items

    def _call(self, call: Callable[[], Any]) -> dict[str, Any]:
        try:
            answer = call()
            answer = (
                answer if isinstance(answer, dict) else self.api.api_client.sanitize_for_serialization(answer)
            )
        except ApiException as error:
            try:
                message = json.loads(error.body or "{}").get("message", error.reason)
            except (TypeError, ValueError):
                message = error.reason
            raise PluginError(f"{message} ({error.status})") from None
        return answer

    def wait(self, name: str, *, generation: int, timeout: float) -> dict[str, Any]:
        """The run once the operator has seen `generation` of its spec and it has finished (or
        the last seen, when `timeout` runs out)."""
        deadline = time.monotonic() + timeout
        run = self.get(name)
        while not _finished(run, generation) and time.monotonic() < deadline:
            stream = watch.Watch().stream(
                self.api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                RUNS,
                field_selector=f"metadata.name={name}",
                timeout_seconds=max(1, int(deadline - time.monotonic())),
            )
            for event in stream:
                run = event["object"]
                if _finished(run, generation):
                    break
        return run


def _finished(run: dict[str, Any], generation: int) -> bool:
    status = status_of(run)
    return status.get("observedGeneration", 0) >= generation and status.get("phase") in FINISHED


# ----- commands -----


def control(
    spec: Callable[[dict[str, Any]], dict[str, Any]], said: str
) -> Callable[[Runs, argparse.Namespace], int]:
    def command(runs: Runs, args: argparse.Namespace) -> int:
        run = runs.get(args.run)
        patched = runs.patch_spec(args.run, spec(spec_of(run)))
        print(f"workflowrun/{args.run} {said}")
        return finish(runs, patched, args)

    return command


def retry(runs: Runs, args: argparse.Namespace) -> int:
    """Raise spec.retry; with --from STEP, a new run from that step (spec.retryFrom)."""
    if args.step is None:
        if args.input is not None or args.patch is not None:
            raise PluginError("--input and --patch go with --from STEP")
        return control(lambda s: {"retry": (s.get("retry") or 0) + 1}, "retried")(runs, args)
    if args.input is not None and args.patch is not None:
        raise PluginError("give --input or --patch, not both")
    input = _json_object(args.input, flag="--input") if args.input is not None else None
    patch = _json_object(args.patch, flag="--patch") if args.patch is not None else None
    body = retry_from_manifest(runs.get(args.run), step=args.step, input=input, patch=patch)
    created = runs.create(body)
    print(f"workflowrun/{created['metadata']['name']} created (a retry of {args.run} from {args.step})")
    return finish(runs, created, args)


def _json_object(text: str, *, flag: str) -> dict[str, Any]:
    """A JSON object given on the command line, or as @FILE."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as error:
            raise PluginError(f"{flag} {text}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as error:
        raise PluginError(f"{flag} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise PluginError(f"{flag} must be a JSON object")
    return data


def rerun(runs: Runs, args: argparse.Namespace) -> int:
    created = runs.create(rerun_manifest(runs.get(args.run)))
    print(f"workflowrun/{created['metadata']['name']} created (a rerun of {args.run})")
    return finish(runs, created, args)


def start(runs: Runs, args: argparse.Namespace) -> int:
    """A new run of a Workflow, its input given as JSON or as @FILE."""
    data = _json_object(args.input, flag="--input")
    body = workflow_run(
        workflow=WorkflowRef(kind=args.kind, name=args.workflow, revision=args.revision),
        input=data,
        metadata={"generateName": f"{args.workflow[:200]}-"},
    )
    created = runs.create(body)
    print(f"workflowrun/{created['metadata']['name']} created")
    return finish(runs, created, args)


def signal(runs: Runs, args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except ValueError as error:
        raise PluginError(f"--data is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise PluginError("--data must be a JSON object")
    patched = runs.patch_spec(args.run, {"signals": {args.signal: data}})
    print(f"workflowrun/{args.run} signalled {args.signal}")
    return finish(runs, patched, args)


def finish(runs: Runs, run: dict[str, Any], args: argparse.Namespace) -> int:
    """With --wait: wait for the run to finish; exit code 0 when it succeeded, else 1."""
    if not getattr(args, "wait", False):
        return 0
    name = name_of(run)
    run = runs.wait(name, generation=generation_of(run), timeout=args.timeout)
    phase = status_of(run).get("phase")
    print(f"workflowrun/{name} {phase or 'not finished'}")
    return 0 if phase == "Succeeded" else 1


def tree(runs: Runs, args: argparse.Namespace) -> int:
    """The run's steps, and under a sub-workflow step, its child run's steps."""
    run = runs.get(args.run)
    status = status_of(run)
    print(f"{args.run}  {status.get('phase', 'Pending')}  {status.get('progress', '')}")
    retry = spec_of(run).get("retryFrom")
    if retry:
        print(f"retry of {retry['run']} from {retry['step']}")
    again = runs.list(label_selector=f"{RETRY_OF}={shortened_name(args.run)}")
    for later in sorted(again, key=lambda r: r["metadata"]["creationTimestamp"]):
        print(f"retried as {name_of(later)} from {spec_of(later).get('retryFrom', {}).get('step')}")
    rows = [("STEP", "PHASE", "ATTEMPTS", "DURATION", "ERROR"), *_tree_rows(runs, run, indent="")]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
    return 0


def _tree_rows(runs: Runs, run: dict[str, Any], *, indent: str) -> list[tuple[str, str, str, str, str]]:
    status = status_of(run)
    rows = []
    if status.get("earlierNodes"):
        name = run["metadata"]["name"]
        rows.append((f"{indent}(earlier finished steps: seqflow history show {name})", "", "", "", ""))
    for node in status.get("nodes") or []:
        rows.append(
            (
                indent + node["id"],
                node.get("phase", ""),
                str(node.get("attempts", 0)),
                _duration(node.get("startedAt"), node.get("finishedAt")),
                (node.get("lastError") or "")[:80],
            )
        )
        if node.get("child"):
            try:
                child = runs.get(node["child"])
            except PluginError:  # gone (deleted, or its time to live is over)
                continue
            phase = status_of(child).get("phase", "Pending")
            rows.append((f"{indent}  workflowrun/{node['child']}", phase, "", "", ""))
            rows += _tree_rows(runs, child, indent=indent + "    ")
    started = {n["id"] for n in status.get("nodes") or []}
    rows += [
        (indent + t["name"], "Pending", "0", "", "")
        for t in status.get("pinnedTasks") or []
        if t["name"] not in started
    ]
    return rows


def _duration(started: str | None, finished: str | None) -> str:
    if not started:
        return ""
    end = (
        datetime.fromisoformat(finished) if finished else datetime.now(datetime.fromisoformat(started).tzinfo)
    )
    return f"{(end - datetime.fromisoformat(started)).total_seconds():.1f}s"


def dashboard(runs: Runs, args: argparse.Namespace) -> int:
    """Port-forward to the operator's HTTP port and open the dashboard, signed in with the
    kubeconfig's bearer token (passed in the address's fragment, which is never sent to a server)."""
    namespace = args.operator_namespace or runs.namespace
    with forwarded(runs, namespace=namespace, service=args.service, port=args.port) as forward:
        address, token = forward.address, bearer_token()
        signed_in = f"{address}#token={urllib.parse.quote(token, safe='')}" if token else address
        print(f"seqflow dashboard at {address} (Ctrl-C stops the port-forward)")
        if not token:
            print("  the kubeconfig has no bearer token (a client certificate?): sign in with a token")
        if args.no_browser:
            if token:
                print(f"  signed in: {signed_in}")
        elif not webbrowser.open(signed_in):
            print("  no browser found: open the address above")
        forward.wait()  # until Ctrl-C, or the port-forward ends


def _parser() -> argparse.ArgumentParser:
    # kubectl's own flags, accepted before or after the command (kubectl users write both).
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("-n", "--namespace", default=argparse.SUPPRESS)
    flags.add_argument("--context", default=argparse.SUPPRESS)
    flags.add_argument("--kubeconfig", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="kubectl seqflow", description=(__doc__ or "").split("\n\n")[0], parents=[flags]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, help: str, func: Callable[[Runs, argparse.Namespace], int], *, wait: bool = False
    ) -> None:
        command = commands.add_parser(name, help=help, parents=[flags])
        command.add_argument("run", help="the WorkflowRun's name")
        if wait:
            command.add_argument("--wait", action="store_true", help="wait until the run finishes")
            command.add_argument("--timeout", type=float, default=600, help="seconds to wait (default 600)")
        if name == "retry":
            command.add_argument(
                "--from", dest="step", help="a new run from this step (the ones before kept)"
            )
            command.add_argument("--input", help="with --from: the step's input, a JSON object or @FILE")
            command.add_argument(
                "--patch", help="with --from: merged into the input it had (JSON merge patch)"
            )
        if name == "signal":
            command.add_argument("signal", help="the signal's name (a step's wait.signal)")
            command.add_argument("--data", default="{}", help="its payload, a JSON object (default {})")
        command.set_defaults(func=func)

    add("suspend", "start no new step until resumed", control(lambda s: {"suspend": True}, "suspended"))
    add("resume", "go on after a suspend", control(lambda s: {"suspend": False}, "resumed"), wait=True)
    add(
        "cancel",
        "stop the run now (cannot be undone)",
        control(lambda s: {"cancel": True}, "cancelled"),
        wait=True,
    )
    add(
        "retry",
        "run a Failed or Cancelled run again from the step that did not succeed, or with --from "
        "STEP a new run from STEP with a new input",
        retry,
        wait=True,
    )
    add("rerun", "start a new run of the same workflow with the same input", rerun, wait=True)
    add("signal", "deliver a signal to the run (spec.signals.NAME)", signal, wait=True)
    add("tree", "the run's steps: phase, attempts, duration, error", tree)
    starting = commands.add_parser("start", help="start a run of a Workflow", parents=[flags])
    starting.add_argument("workflow", help="the Workflow's name")
    starting.add_argument("--input", default="{}", help="a JSON object, or @FILE (default {})")
    starting.add_argument("--revision", type=int, help="run this revision (default: the latest Ready one)")
    starting.add_argument(
        "--cluster", dest="kind", action="store_const", const=CLUSTER_WORKFLOW, help="a ClusterWorkflow"
    )
    starting.add_argument("--wait", action="store_true", help="wait until the run finishes")
    starting.add_argument("--timeout", type=float, default=600, help="seconds to wait (default 600)")
    starting.set_defaults(func=start)
    add_logs_command(commands, parents=[flags])
    add_commands(commands, parents=[flags])
    board = commands.add_parser("dashboard", help="open the web dashboard, signed in", parents=[flags])
    board.add_argument(
        "--operator-namespace", help="where the chart is installed (default: the context's namespace)"
    )
    board.add_argument("--service", default="seqflow", help="the operator's Service (default seqflow)")
    board.add_argument("--port", type=int, default=0, help="the local port (default: any free one)")
    board.add_argument("--no-browser", action="store_true", help="print the address instead of opening it")
    board.set_defaults(func=dashboard)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        runs = Runs(
            kubeconfig=getattr(args, "kubeconfig", None),
            context=getattr(args, "context", None),
            namespace=getattr(args, "namespace", None),
        )
        sys.exit(args.func(runs, args))
    except (PluginError, NoSuchRevision, ForwardError, LogsUnavailable) as error:
        print(f"kubectl seqflow: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
