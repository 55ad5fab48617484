"""Chaos benchmark: runs finish exactly, in order, with their whole history, through faults.

N runs x M in-process tasks on a local control plane with the history in MariaDB, while the
operator is SIGKILLed K times at random moments (and restarted), the API server is restarted
once and MariaDB is stopped for a while. Every handler execution is appended to a file, so the
figures count what really ran:

    python bench/chaos.py --runs 100 --tasks 5 --kills 5 --db-outage 30 [--output-bytes 100000]

Prints runs finished, order violations, missing tasks, duplicate executions of one attempt,
extra attempts the faults caused, history rows lost or duplicated (store against status), and
with --output-bytes (each task's output that large: stored by reference) the references that
name no stored value.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

import sqlalchemy as sa  # noqa: E402
from kubernetes import client  # noqa: E402
from throughput import (  # noqa: E402
    GROUP,
    NAMESPACE,
    PLURAL,
    VERSION,
    install_crds,
    make_schema,
    start_operator,
    wait_finished,
)

from testenv import ControlPlane, MariaDB  # noqa: E402
from testenv.operator import OperatorProcess  # noqa: E402


def create_runs(
    api: client.CustomObjectsApi, *, runs: int, tasks: int, log: Path, sleep: float, output_bytes: int
) -> list[str]:
    workflow = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": "chaos"},
        "spec": {
            "defaults": {"retry": {"maxRetries": 20, "backoffSeconds": 0.5, "maxBackoffSeconds": 5}},
            "tasks": [{"name": f"T{i}", "handler": "chaos.step"} for i in range(tasks)],
        },
    }
    api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workflows", workflow)
    names = [f"chaos-{i:04d}" for i in range(runs)]
    for name in names:
        manifest = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WorkflowRun",
            "metadata": {"name": name},
            "spec": {
                "workflowRef": {"name": "chaos"},
                "input": {"log": str(log), "sleep": sleep, "output_bytes": output_bytes},
            },
        }
        api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)
    return names


class Faults:
    """Kills and restarts the operator at random moments, restarts the API server once and
    stops MariaDB once, all within `span` seconds. Run from the main thread: testenv's children
    die with the thread that started them."""

    def __init__(
        self,
        *,
        control_plane: ControlPlane,
        db: MariaDB,
        start: Callable[[], OperatorProcess],
        kills: int,
        outage: float,
        span: float,
    ) -> None:
        self.control_plane, self.db, self.start_operator = control_plane, db, start
        plan = [("kill", random.uniform(1, span)) for _ in range(kills)]
        plan += [("apiserver", span * 0.4), ("db down", span * 0.2), ("db up", span * 0.2 + outage)]
        self.plan = sorted(plan, key=lambda item: item[1])
        self.outage = outage
        self.operator: OperatorProcess = start()
        self.log: list[str] = []

    def run(self) -> None:
        began = time.monotonic()
        for fault, at in self.plan:
            time.sleep(max(0.0, at - (time.monotonic() - began)))
            moment = time.monotonic() - began
            if fault == "kill":
                self.operator.kill()
                self.operator = self.start_operator()
                self.log.append(f"{moment:6.1f} s  operator SIGKILLed and restarted")
            elif fault == "apiserver":
                self.control_plane.restart_apiserver()
                self.log.append(f"{moment:6.1f} s  kube-apiserver restarted")
            elif fault == "db down":
                self.db.stop_server()
                self.log.append(f"{moment:6.1f} s  MariaDB stopped")
            else:
                self.db.start_server()
                self.log.append(f"{moment:6.1f} s  MariaDB started again")


def executions(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def check_runs(finished: dict[str, dict], lines: list[dict], tasks: int) -> dict[str, int]:
    by_run: dict[str, list[dict]] = {}
    for line in sorted(lines, key=lambda item: item["at"]):
        by_run.setdefault(line["run"], []).append(line)
    order_violations = missing = 0
    for name in finished:
        seen = [int(line["task"][1:]) for line in by_run.get(name, [])]
        missing += len(set(range(tasks)) - set(seen))
        order_violations += sum(1 for a, b in itertools.pairwise(seen) if b < a)
    duplicates = sum(
        n - 1 for n in Counter((x["run"], x["task"], x["attempt"]) for x in lines).values() if n > 1
    )
    attempts = sum(t["attempts"] for body in finished.values() for t in body["status"]["nodes"])
    return {
        "order violations": order_violations,
        "missing tasks": missing,
        "duplicate executions of one attempt": duplicates,
        "extra attempts caused by the faults": attempts - len(finished) * tasks,
    }


def check_history(url: str, finished: dict[str, dict]) -> dict[str, int]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        runs = Counter(r[0] for r in connection.execute(sa.text("SELECT uid FROM workflow_runs")))
        entries = Counter(r for r in connection.execute(sa.text("SELECT run_uid, seq FROM activity_log")))
        phases = dict(connection.execute(sa.text("SELECT uid, phase FROM workflow_runs")).all())
    engine.dispose()
    lost = duplicated = wrong_phase = 0
    for body in finished.values():
        uid, status = body["metadata"]["uid"], body["status"]
        lost += runs[uid] == 0
        duplicated += max(runs[uid] - 1, 0)
        for seq in range(1, status["historySeq"] + 1):
            lost += entries[(uid, seq)] == 0
            duplicated += max(entries[(uid, seq)] - 1, 0)
        wrong_phase += phases.get(uid) != status["phase"]
    return {
        "history rows lost": lost,
        "history rows duplicated": duplicated,
        "runs with a wrong phase": wrong_phase,
    }


def check_values(url: str, finished: dict[str, dict]) -> dict[str, int]:
    """References in the runs' statuses and history rows against the stored values."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        stored = dict(
            connection.execute(
                sa.text("SELECT digest, SUM(LENGTH(data)) FROM stored_values GROUP BY digest")
            ).all()
        )
        details = [json.loads(r[0]) for r in connection.execute(sa.text("SELECT details FROM activity_log"))]
    engine.dispose()
    named: dict[str, int] = {}
    for body in finished.values():
        status = body["status"]
        for value in [status.get("output"), *(n.get("output") for n in status["nodes"])]:
            if isinstance(value, dict) and set(value) == {"ref", "size"}:
                named[value["ref"]] = value["size"]
    for entry in details:
        for value in entry.values():
            if isinstance(value, dict) and set(value) == {"ref", "size"}:
                named[value["ref"]] = value["size"]
    dangling = sum(1 for digest, size in named.items() if stored.get(digest) != size)
    return {"stored values referenced": len(named), "dangling references": dangling}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--db-outage", type=float, default=30.0, help="seconds MariaDB is down")
    parser.add_argument("--span", type=float, default=60.0, help="seconds over which the faults happen")
    parser.add_argument("--sleep", type=float, default=2.0, help="mean seconds a task takes")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--output-bytes", type=int, default=0, help="each task's output at least this large")
    args = parser.parse_args()
    random.seed(args.seed)
    log = Path(tempfile.mkdtemp(prefix="seqflow-chaos-")) / "executions.jsonl"
    log.touch()

    with ControlPlane() as control_plane, MariaDB(durable=True) as db:
        api = install_crds(control_plane)
        make_schema(db.url)

        def start() -> OperatorProcess:
            return start_operator(
                control_plane.kubeconfig,
                db.url,
                SEQFLOW_HANDLER_MODULES="chaos_handlers",
                SEQFLOW_LOG_LEVEL="INFO",
            )

        faults = Faults(
            control_plane=control_plane,
            db=db,
            start=start,
            kills=args.kills,
            outage=args.db_outage,
            span=args.span,
        )
        began = time.monotonic()
        names = create_runs(
            api, runs=args.runs, tasks=args.tasks, log=log, sleep=args.sleep, output_bytes=args.output_bytes
        )
        faults.run()
        finished = wait_finished(api, set(names), timeout=args.timeout)
        elapsed = time.monotonic() - began
        wait_history_written(api, finished.keys(), timeout=args.timeout)
        finished = {
            name: api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            for name in finished
        }
        faults.operator.stop()
        print("faults:")
        print("\n".join("  " + line for line in faults.log))
        succeeded = sum(body["status"]["phase"] == "Succeeded" for body in finished.values())
        print(f"runs x tasks                        {args.runs} x {args.tasks}, finished in {elapsed:.1f} s")
        print(f"runs finished                       {len(finished)} of {args.runs} ({succeeded} Succeeded)")
        reasons = Counter(
            c["reason"]
            for body in finished.values()
            for c in body["status"].get("conditions", [])
            if c["type"] == "Succeeded"
        )
        print(f"final reasons (Succeeded condition) {dict(reasons)}")
        figures = {**check_runs(finished, executions(log), args.tasks), **check_history(db.url, finished)}
        if args.output_bytes:
            figures |= check_values(db.url, finished)
        for name, value in figures.items():
            print(f"{name:<36}{value}")
        print(f"executions log                      {log}")


def wait_history_written(api: client.CustomObjectsApi, names, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            body = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
            if not (body.get("status") or {}).get("pendingHistory"):
                pending.discard(name)
        time.sleep(0.5)
    if pending:
        raise SystemExit(f"{len(pending)} runs still hold unwritten history after {timeout} s")


if __name__ == "__main__":
    main()
