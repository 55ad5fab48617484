"""Benchmark: the gap between a Job finishing and the next task starting.

Runs R runs of K (Job, no-op handler) pairs on a local control plane with kwok. The Job's end
is when a watch on Jobs (from this process) first sees its Complete condition; the next task's
start is when its handler began (it notes the time in its output). Prints p50 and p95.

    python bench/job_gap.py --runs 10 --pairs 5
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from kubernetes import client, config, watch  # noqa: E402
from throughput import (  # noqa: E402
    GROUP,
    NAMESPACE,
    PLURAL,
    VERSION,
    install_crds,
    percentile,
    run_manifest,
    start_operator,
    wait_finished,
)

from testenv import ControlPlane, MariaDB  # noqa: E402


def watch_job_completions(kubeconfig: Path, seen: dict[str, float], stop: threading.Event) -> None:
    batch = client.BatchV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    while not stop.is_set():
        for event in watch.Watch().stream(batch.list_namespaced_job, NAMESPACE, timeout_seconds=5):
            job = event["object"]
            done = any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])
            if done and job.metadata.name not in seen:
                seen[job.metadata.name] = time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()

    with ControlPlane(with_jobs=True) as control_plane, MariaDB() as mariadb:
        api = install_crds(control_plane)
        job = {"podTemplate": {"spec": {"containers": [{"name": "task", "image": "registry.example/x:1"}]}}}
        tasks = []
        for i in range(args.pairs):
            tasks += [{"name": f"job{i}", "job": job}, {"name": f"noop{i}", "handler": "bench.noop"}]
        workflow = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Workflow",
            "metadata": {"name": "bench"},
            "spec": {"tasks": tasks},
        }
        api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workflows", workflow)
        operator = start_operator(control_plane.kubeconfig, mariadb.url)
        completed: dict[str, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_job_completions, args=(control_plane.kubeconfig, completed, stop), daemon=True
        )
        watcher.start()
        names = [f"run-{i:03d}" for i in range(args.runs)]
        began = time.time()
        for name in names:
            api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, run_manifest(name))
        finished = wait_finished(api, set(names), 600)
        elapsed = time.time() - began
        stop.set()
        operator.stop()

    gaps = []
    for name, body in finished.items():
        marks = body["status"]["output"]["marks"]
        for i, (start, _end) in enumerate(marks):
            gaps.append((start - completed[f"{name}-{2 * i}-1"]) * 1000)
    print(
        f"runs x (Job, task) pairs   {args.runs} x {args.pairs}: "
        f"{len(gaps)} Job-to-task gaps in {elapsed:.1f} s"
    )
    print(
        f"Job Complete -> next task  p50 {percentile(gaps, 0.5):.1f} ms, p95 {percentile(gaps, 0.95):.1f} ms"
    )


if __name__ == "__main__":
    main()
