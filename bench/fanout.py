"""Benchmark: forEach fan-outs on a local control plane, side by side with the same work as
separate runs.

One run of N no-op items (maxParallel P): items/s, status writes per item (the run's MODIFIED
events), the run object's largest size while it ran, the operator's RSS. Then R runs of K items
at once, and last the N items as N separate one-step runs.

    python bench/fanout.py --items 10000 --max-parallel 200 --runs 100 --run-items 100
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from kubernetes import client, watch
from throughput import (
    GROUP,
    NAMESPACE,
    PLURAL,
    VERSION,
    create_noop_workflow,
    install_crds,
    make_schema,
    rss_mb,
    start_operator,
    wait_finished,
)

from testenv import ControlPlane, MariaDB


def create_fan_out_workflow(api: client.CustomObjectsApi, *, max_parallel: int) -> None:
    step = {"handler": "bench.noop", "retry": {"maxRetries": 0}}
    for_each = {"items": "input.items", "maxParallel": max_parallel, "step": step}
    workflow = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": "fan"},
        "spec": {"tasks": [{"name": "each", "forEach": for_each}]},
    }
    api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workflows", workflow)


def run_of(name: str, workflow: str, items: int | None = None) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {
            "workflowRef": {"name": workflow},
            "input": {} if items is None else {"items": list(range(items))},
        },
    }


class Watched:
    """The MODIFIED events of one run and its object's largest size, from a watch."""

    def __init__(self, api: client.CustomObjectsApi, name: str) -> None:
        self.writes, self.largest, self._stop = 0, 0, threading.Event()
        self.parts: dict[str, int] = {}  # of the largest object's status, bytes by field
        self._thread = threading.Thread(target=self._watch, args=(api, name), daemon=True)
        self._thread.start()

    def _watch(self, api: client.CustomObjectsApi, name: str) -> None:
        selector = f"metadata.name={name}"
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                NAMESPACE,
                PLURAL,
                field_selector=selector,
                timeout_seconds=5,
            )
            for event in stream:
                if event["type"] == "MODIFIED":
                    self.writes += 1
                size = len(json.dumps(event["object"]))
                if size > self.largest:
                    status = event["object"].get("status") or {}
                    self.largest, self.parts = size, {k: len(json.dumps(v)) for k, v in status.items()}
                if self._stop.is_set():
                    return

    def stop(self) -> None:
        self._stop.set()


def timed(api: client.CustomObjectsApi, manifests: list[dict], timeout: float) -> float:
    """Seconds from creating the runs to all of them finished (all must succeed)."""
    began = time.time()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda m: api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, m), manifests
            )
        )
    finished = wait_finished(api, {m["metadata"]["name"] for m in manifests}, timeout)
    failed = [n for n, body in finished.items() if body["status"]["phase"] != "Succeeded"]
    if failed:
        raise SystemExit(
            f"{len(failed)} runs failed, {failed[0]}: {finished[failed[0]]['status']['conditions']}"
        )
    return time.time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--max-parallel", type=int, default=200)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--run-items", type=int, default=100)
    parser.add_argument("--separate", type=int, default=None, help="separate runs (default: --items)")
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    with ControlPlane() as control_plane, MariaDB(durable=True) as mariadb:
        api = install_crds(control_plane)
        create_fan_out_workflow(api, max_parallel=args.max_parallel)
        create_noop_workflow(api, tasks=1)
        make_schema(mariadb.url)
        operator = start_operator(control_plane.kubeconfig, mariadb.url)
        timed(api, [run_of("warmup", "fan", 10)], 60)

        watched = Watched(api, "one")
        seconds = timed(api, [run_of("one", "fan", args.items)], args.timeout)
        watched.stop()
        print(
            f"one run of {args.items} items, maxParallel {args.max_parallel}: {seconds:.1f} s, "
            f"{args.items / seconds:.0f} items/s, {watched.writes / args.items:.3f} status writes per item, "
            f"run object at most {watched.largest / 1024:.1f} KiB, "
            f"operator RSS {rss_mb(operator.pid):.0f} MB (peak {rss_mb(operator.pid, 'VmHWM'):.0f} MB)"
        )

        parts = sorted(watched.parts.items(), key=lambda part: -part[1])[:3]
        print("  its largest status: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in parts))

        many = [run_of(f"fan-{i:04d}", "fan", args.run_items) for i in range(args.runs)]
        seconds = timed(api, many, args.timeout)
        total = args.runs * args.run_items
        print(f"{args.runs} runs x {args.run_items} items: {seconds:.1f} s, {total / seconds:.0f} items/s")

        separate = args.separate or args.items
        seconds = timed(api, [run_of(f"one-{i:05d}", "bench") for i in range(separate)], args.timeout)
        print(
            f"the same as {separate} separate one-step runs: {seconds:.1f} s, {separate / seconds:.0f} runs/s"
        )
        operator.stop()


if __name__ == "__main__":
    main()
