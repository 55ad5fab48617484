"""Benchmark: N runs of M no-op in-process tasks on a local control plane.

Prints tasks/s overall, the gap between one task finishing and the next starting (p50, p95;
measured inside the handlers, so it includes the status write between them), the latency from
the create request to the first task's start, and the operator's peak RSS.

    python bench/throughput.py --runs 200 --tasks 5
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from kubernetes import client, config, watch  # noqa: E402

from testenv import ControlPlane, MariaDB, ensure_binaries  # noqa: E402
from testenv._proc import free_port  # noqa: E402
from testenv.operator import OperatorProcess  # noqa: E402

NAMESPACE = "default"
GROUP, VERSION, PLURAL = "seqflow.io", "v1alpha1", "workflowruns"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds_of_children() -> dict[str, float]:
    """CPU time (user + system) used so far by each direct child process, by command name."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            name = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def api_requests(metrics_port: str) -> list[tuple[str, int]]:
    """The operator's own API requests by verb and resource, from its metrics."""
    counts: dict[str, int] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("seqflow_kubernetes_api_request_duration_seconds_count{"):
                labels = dict(
                    part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
                )
                what = f"{labels['verb'].strip(chr(34))} {labels['resource'].strip(chr(34))}"
                counts[what] = counts.get(what, 0) + int(float(line.rsplit(" ", 1)[1]))
    return sorted(counts.items(), key=lambda item: -item[1])


def install_crds(control_plane: ControlPlane) -> client.CustomObjectsApi:
    """Apply seqflow's CRDs; return an API client for its objects."""
    kubectl = [str(ensure_binaries().kubectl), f"--kubeconfig={control_plane.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "-f", str(HERE.parent / "crds")], check=True, capture_output=True)
    established = ["wait", "--for=condition=Established", "crd/workflowruns.seqflow.io"]
    subprocess.run([*kubectl, *established], check=True, capture_output=True)
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(control_plane.kubeconfig)))


def start_operator(kubeconfig: Path, database_url: str, **settings: str) -> OperatorProcess:
    """The operator with the benchmark's handler, history in MariaDB, quiet logs, free ports."""
    return OperatorProcess(
        kubeconfig=kubeconfig,
        settings={
            "SEQFLOW_HANDLER_MODULES": "bench_handlers",
            "SEQFLOW_LOG_LEVEL": "WARNING",
            "SEQFLOW_DATABASE_URL": database_url,
            "SEQFLOW_HTTP_PORT": str(free_port()),
            "SEQFLOW_METRICS_PORT": str(free_port()),
            **settings,
        },
        python_path=(HERE,),
    ).start()


def run_manifest(name: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": "bench"}, "input": {}},
    }


def wait_finished(api: client.CustomObjectsApi, names: set[str], timeout: float) -> dict[str, dict]:
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(names) and time.monotonic() < deadline:
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            timeout_seconds=max(1, int(deadline - time.monotonic())),
        )
        for event in stream:
            body = event["object"]
            name = body["metadata"]["name"]
            if name in names and (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                done[name] = body
                if len(done) == len(names):
                    return done
    missing = len(names) - len(done)
    raise SystemExit(f"{missing} runs did not finish within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16, help="SEQFLOW_MAX_CONCURRENT_RUNS")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    with ControlPlane() as control_plane, MariaDB() as mariadb:
        api = install_crds(control_plane)
        tasks = [{"name": f"t{i}", "handler": "bench.noop"} for i in range(args.tasks)]
        workflow = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Workflow",
            "metadata": {"name": "bench"},
            "spec": {"tasks": tasks},
        }
        api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workflows", workflow)

        operator = start_operator(
            control_plane.kubeconfig, mariadb.url, SEQFLOW_MAX_CONCURRENT_RUNS=str(args.workers)
        )
        api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, run_manifest("warmup"))
        wait_finished(api, {"warmup"}, 60)

        names = [f"run-{i:05d}" for i in range(args.runs)]
        created_at: dict[str, float] = {}

        def create(name: str) -> None:
            created_at[name] = time.time()
            api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, run_manifest(name))

        cpu_before = cpu_seconds_of_children()
        began = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))
        created = time.time()
        finished = wait_finished(api, set(names), args.timeout)
        ended = time.time()
        rss = peak_rss_mb(operator.pid)
        requests = api_requests(operator.settings["SEQFLOW_METRICS_PORT"])
        cpu = {name: used - cpu_before.get(name, 0.0) for name, used in cpu_seconds_of_children().items()}
        operator.stop()

    failed = [n for n, b in finished.items() if b["status"]["phase"] != "Succeeded"]
    marks = {n: b["status"]["output"]["marks"] for n, b in finished.items() if n not in failed}
    gaps = [(nxt[0] - prev[1]) * 1000 for m in marks.values() for prev, nxt in itertools.pairwise(m)]
    first_task = [(m[0][0] - created_at[n]) * 1000 for n, m in marks.items()]
    last_end = max(m[-1][1] for m in marks.values())
    total_tasks = args.runs * args.tasks

    print(
        f"runs x tasks            {args.runs} x {args.tasks} ({args.workers} workers), {len(failed)} failed"
    )
    print(f"create requests         {created - began:.2f} s for {args.runs} runs")
    print(f"wall time               {last_end - began:.2f} s from first create to last task end")
    print(f"throughput              {total_tasks / (last_end - began):.1f} tasks/s")
    print(f"task-to-task gap        p50 {percentile(gaps, 0.5):.1f} ms, p95 {percentile(gaps, 0.95):.1f} ms")
    print(
        f"create-to-first-task    p50 {percentile(first_task, 0.5):.1f} ms, "
        f"p95 {percentile(first_task, 0.95):.1f} ms"
    )
    print(f"operator peak RSS       {rss:.1f} MB")
    print(f"watch saw all finished  {ended - began:.2f} s")
    print("API requests            " + ", ".join(f"{n} {what}" for what, n in requests))
    busy = ", ".join(
        f"{name} {seconds:.1f}"
        for name, seconds in sorted(cpu.items(), key=lambda i: -i[1])
        if seconds >= 0.05
    )
    print(f"CPU seconds used        {busy} (2 cores: {2 * (ended - began):.1f} available)")


if __name__ == "__main__":
    main()
