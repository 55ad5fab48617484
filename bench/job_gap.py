"""Benchmark: runs of Job steps on a local control plane (kube-controller-manager at its defaults,
kwok's fake node: pods end at once), the gap between one step's pod ending and the next one's.

A watch on pods (from this process) notes when each pod is first seen and first seen terminal;
the gap is the next step's pod first seen minus the previous step's pod seen Succeeded. Also
prints steps/s over the whole load and how long the Job controller took to mark a Job Complete
after its pod had succeeded (the wait seqflow no longer has). `--steps-as ManagedJob` runs the
operator with SEQFLOW_JOB_STEPS_AS=ManagedJob: Jobs whose pods and status seqflow makes
(spec.managedBy); `--steps-as Pod`: each attempt a pod of its own, no Job at all.

    python bench/job_gap.py --runs 50 --steps 5 [--steps-as ManagedJob|Pod]
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

JOB_NAME = "batch.kubernetes.io/job-name"


class Seen:
    """When each pod (by its Job's name) was first seen, and first seen Succeeded; when each Job
    was first seen Complete."""

    def __init__(self) -> None:
        self.pod_created: dict[str, float] = {}
        self.pod_succeeded: dict[str, float] = {}
        self.job_complete: dict[str, float] = {}


def watch_pods(kubeconfig: Path, seen: Seen, stop: threading.Event) -> None:
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    while not stop.is_set():
        for event in watch.Watch().stream(core.list_namespaced_pod, NAMESPACE, timeout_seconds=5):
            pod, at = event["object"], time.time()
            owned_by_run = any(o.kind == "WorkflowRun" for o in pod.metadata.owner_references or [])
            job = (pod.metadata.labels or {}).get(JOB_NAME) or (pod.metadata.name if owned_by_run else None)
            if job is None:
                continue
            seen.pod_created.setdefault(job, at)
            if pod.status.phase == "Succeeded":
                seen.pod_succeeded.setdefault(job, at)


def watch_jobs(kubeconfig: Path, seen: Seen, stop: threading.Event) -> None:
    batch = client.BatchV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    while not stop.is_set():
        for event in watch.Watch().stream(batch.list_namespaced_job, NAMESPACE, timeout_seconds=5):
            job = event["object"]
            if any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or []):
                seen.job_complete.setdefault(job.metadata.name, time.time())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--steps-as", choices=("Job", "ManagedJob", "Pod"), default="Job", help="SEQFLOW_JOB_STEPS_AS"
    )
    args = parser.parse_args()

    with ControlPlane(with_jobs=True) as control_plane, MariaDB(durable=True) as mariadb:
        api = install_crds(control_plane)
        job = {"podTemplate": {"spec": {"containers": [{"name": "task", "image": "registry.example/x:1"}]}}}
        workflow = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Workflow",
            "metadata": {"name": "bench"},
            "spec": {"tasks": [{"name": f"j{i}", "job": job} for i in range(args.steps)]},
        }
        api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workflows", workflow)
        operator = start_operator(control_plane.kubeconfig, mariadb.url, SEQFLOW_JOB_STEPS_AS=args.steps_as)
        seen, stop = Seen(), threading.Event()
        for target in (watch_pods, watch_jobs):
            threading.Thread(target=target, args=(control_plane.kubeconfig, seen, stop), daemon=True).start()
        names = [f"run-{i:03d}" for i in range(args.runs)]
        began = time.time()
        for name in names:
            api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, run_manifest(name))
        finished = wait_finished(api, set(names), args.timeout)
        elapsed = time.time() - began
        stop.set()
        operator.stop()

    failed = [n for n, b in finished.items() if b["status"]["phase"] != "Succeeded"]
    gaps = [
        seen.pod_created[f"{run}-j{i + 1}-1"] - seen.pod_succeeded[f"{run}-j{i}-1"]
        for run in names
        if run not in failed
        for i in range(args.steps - 1)
    ]
    lags = [seen.job_complete[j] - at for j, at in seen.pod_succeeded.items() if j in seen.job_complete]
    steps = args.runs * args.steps
    print(
        f"runs x Job steps              {args.runs} x {args.steps} as {args.steps_as}s, "
        f"{len(failed)} failed, {elapsed:.1f} s"
    )
    print(f"throughput                    {steps / elapsed:.2f} steps/s")
    print(
        f"pod Succeeded -> next pod     p50 {percentile(gaps, 0.5):.2f} s, p95 {percentile(gaps, 0.95):.2f} s"
    )
    if lags:
        print(
            f"pod Succeeded -> Job Complete p50 {percentile(lags, 0.5):.2f} s, "
            f"p95 {percentile(lags, 0.95):.2f} s (the Job controller's delay, not waited for)"
        )


if __name__ == "__main__":
    main()
