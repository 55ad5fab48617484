"""`kubectl seqflow logs RUN`: the run's story from its Events, then its steps' logs: a Job or Pod
step's from its pod while the pod is there, else (and for in-process handlers, and with --kept
for every step) the log the operator kept in the history store, read from its HTTP API through
a port-forward with the kubeconfig's token (the run's RBAC applies)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from seqflow.api.bodies import status_of
from seqflow.api.models import FINISHED
from seqflow.cli.forward import ForwardError, bearer_token, forwarded

if TYPE_CHECKING:
    from seqflow.cli.plugin import Runs


def add_logs_command(commands: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "logs", help="the run's story (its Events) and its steps' logs", parents=parents
    )
    command.add_argument("run", help="the WorkflowRun's name")
    command.add_argument(
        "-f", "--follow", action="store_true", help="new Events as they come, until it finishes"
    )
    command.add_argument(
        "--kept", action="store_true", help="every step's log as the operator kept it, not the pods'"
    )
    command.add_argument(
        "--operator-namespace", help="where the chart is installed (default: the context's namespace)"
    )
    command.add_argument("--service", default="seqflow", help="the operator's Service (default seqflow)")
    command.set_defaults(func=logs)


def logs(runs: Runs, args: argparse.Namespace) -> int:
    run = runs.get(args.run)
    selector = f"involvedObject.name={args.run},involvedObject.kind=WorkflowRun"
    events = runs.core.list_namespaced_event(runs.namespace, field_selector=selector).items
    seen: set[str] = set()
    for event in sorted(events, key=_event_time):
        _print_event(event, seen)
    if args.kept:
        _print_kept_logs(runs, args, printed=set())
    elif _steps_without_pods(run, printed := _print_pod_logs(runs, run)):
        try:
            _print_kept_logs(runs, args, printed=printed)
        except (ForwardError, LogsUnavailable) as error:  # the pods' logs and the Events still stand
            print(f"kubectl seqflow: the logs kept of steps whose pods are gone: {error}", file=sys.stderr)
    if not args.follow or status_of(run).get("phase") in FINISHED:
        return 0
    for change in watch.Watch().stream(
        runs.core.list_namespaced_event, runs.namespace, field_selector=selector
    ):
        _print_event(change["object"], seen)
        if status_of(runs.get(args.run)).get("phase") in FINISHED:
            return 0
    return 0


def _print_event(event: Any, seen: set[str]) -> None:
    if event.metadata.uid in seen:
        return
    seen.add(event.metadata.uid)
    when = _event_time(event).strftime("%H:%M:%S")
    print(f"{when}  {event.type:<7}  {event.reason:<18}  {event.message}")


def _event_time(event: Any) -> datetime:
    return event.last_timestamp or event.event_time or event.metadata.creation_timestamp  # type: ignore[no-any-return]


def _print_pod_logs(runs: Runs, run: dict[str, Any]) -> set[tuple[str, int]]:
    """The logs of the Job steps' pods that are there; the (step, attempt) printed."""
    printed = set()
    for node in status_of(run).get("nodes") or []:
        if not node.get("job"):
            continue
        pods = runs.core.list_namespaced_pod(runs.namespace, label_selector=f"job-name={node['job']}").items
        names = [pod.metadata.name for pod in pods if pod.metadata and pod.metadata.name] or [node["job"]]
        heading = f"--- {node['id']} attempt {node.get('attempts')}:"
        for name in names:  # no Job: the step's pod of its own bears its name
            try:
                text = runs.core.read_namespaced_pod_log(name, runs.namespace)
            except ApiException as error:
                if error.status != 404:
                    print(f"{heading} pod {name}\n(no logs: {error.reason})")
                continue
            print(f"{heading} pod {name}")
            print(text.rstrip())
            printed.add((node["id"], node.get("attempts") or 0))
    return printed


def _steps_without_pods(run: dict[str, Any], printed: set[tuple[str, int]]) -> bool:
    ended = [n for n in status_of(run).get("nodes") or [] if n.get("job") and n.get("attempts")]
    return any((n["id"], n["attempts"]) not in printed for n in ended)


def _print_kept_logs(runs: Runs, args: argparse.Namespace, *, printed: set[tuple[str, int]]) -> None:
    namespace = args.operator_namespace or runs.namespace
    path = f"api/v1/namespaces/{runs.namespace}/runs/{args.run}/logs"
    with forwarded(runs, namespace=namespace, service=args.service) as forward:
        address, token = forward.address, bearer_token()
        for log in _get(address + path, token=token)["items"]:
            if (log["task"], log["attempt"]) in printed:
                continue
            step = urllib.parse.quote(log["task"], safe="/")
            text = _get(f"{address}{path}/{step}/{log['attempt']}", token=token, text=True)
            cut = f" (the last {log['kept']} of {log['size']} bytes)" if log["truncated"] else ""
            print(f"--- {log['task']} attempt {log['attempt']}: kept{cut}")
            print(text.rstrip())


def _get(url: str, *, token: str, text: bool = False) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        raise LogsUnavailable(
            f"the operator's API answered {error.code}: {error.read().decode()[:300]}"
        ) from None
    except urllib.error.URLError as error:
        raise LogsUnavailable(f"the operator's API did not answer: {error.reason}") from None
    return body if text else json.loads(body)


class LogsUnavailable(Exception):
    """The kept logs could not be read, in one line."""
