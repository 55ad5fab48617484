"""Benchmark: N runs of M no-op in-process tasks on a local control plane, against its floor.

First one run alone (unloaded), then N runs at once (loaded). Prints tasks/s, the gap between
one task ending and the next starting (p50, p95; measured inside the handlers), the latency from
the create request to the first task's start, status writes per task, the operator's CPU per
task and its RSS. Then, with the operator stopped, the floor: a raw loop of status PATCHes of the
size seqflow's runs end with, at the same concurrency, on the same API server; seqflow's tasks/s
is printed as a share of it.

    python bench/throughput.py --runs 200 --tasks 5
    python bench/throughput.py --runs 200 --tasks 5 --output-bytes 1048576   # outputs by reference
    python bench/throughput.py --runs 300 --tasks 5 --replicas 3   # active-active, 16 buckets
    python bench/throughput.py --runs 200 --tasks 5 --tracing      # traces exported to a Jaeger

With several replicas it also kills one after the load and prints how soon the others held all
of the buckets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
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
from sqlalchemy import text  # noqa: E402

from seqflow.cluster.kube import KubeApi, run_path  # noqa: E402
from seqflow.history.migrate import upgrade  # noqa: E402
from seqflow.history.store import create_store_engine  # noqa: E402
from testenv import ControlPlane, MariaDB, ensure_binaries  # noqa: E402
from testenv._proc import free_port  # noqa: E402
from testenv.jaeger import Jaeger  # noqa: E402
from testenv.operator import OperatorProcess  # noqa: E402

NAMESPACE = "default"
GROUP, VERSION, PLURAL = "seqflow.io", "v1alpha1", "workflowruns"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """The process's resident memory now (VmRSS) or at its peak (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def floor_writes_per_second(kubeconfig: Path, status: dict, *, concurrency: int, seconds: float) -> float:
    """The API server's rate of status PATCHes of `status`'s size, `concurrency` at a time, each
    a real change (a counter in its progress), on runs of a Workflow nobody reconciles."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)

    async def measure() -> float:
        api = KubeApi(configuration, connections=concurrency)
        names = [f"floor-{i}" for i in range(concurrency)]
        for name in names:
            manifest = run_manifest(name)
            manifest["spec"]["workflowRef"]["name"] = "floor-nobody-runs"
            await api.create_run(NAMESPACE, manifest)
        writes = 0
        deadline = time.monotonic() + seconds

        async def loop(name: str) -> None:
            nonlocal writes
            path = run_path(NAMESPACE, name) + "/status"
            while time.monotonic() < deadline:
                body = {"status": {**status, "progress": f"write {writes}"}}
                await api.request("PATCH", path, body=body, content_type="application/merge-patch+json")
                writes += 1

        began = time.monotonic()
        await asyncio.gather(*(loop(name) for name in names))
        elapsed = time.monotonic() - began
        await api.close()
        return writes / elapsed

    return asyncio.run(measure())


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


def api_requests_of(operators: list[OperatorProcess]) -> dict[str, int]:
    """The API requests of all the replicas, by verb and resource."""
    total: dict[str, int] = {}
    for operator in operators:
        for what, n in api_requests(operator.settings["SEQFLOW_METRICS_PORT"]):
            total[what] = total.get(what, 0) + n
    return total


REPLICA_BUCKETS, REPLICA_LEASE_SECONDS = 16, 15


def replica_settings(index: int) -> dict[str, str]:
    return {
        "SEQFLOW_BUCKETS": str(REPLICA_BUCKETS),
        "SEQFLOW_REPLICA_NAME": f"replica-{index}",
        "SEQFLOW_LEASE_NAMESPACE": NAMESPACE,
        "SEQFLOW_LEASE_SECONDS": str(REPLICA_LEASE_SECONDS),
    }


def bucket_holders(kubeconfig: Path) -> list[str | None]:
    leases = client.CoordinationV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    listed = leases.list_namespaced_lease(NAMESPACE, label_selector="seqflow.io/lease=bucket").items
    return [lease.spec.holder_identity for lease in listed]


def wait_shared(kubeconfig: Path, replicas: set[str], timeout: float = 60) -> float:
    """Seconds until the bucket Leases are all held, by exactly `replicas`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        holders = bucket_holders(kubeconfig)
        if len(holders) == REPLICA_BUCKETS and set(holders) == replicas:
            return time.monotonic() - began
        time.sleep(0.2)
    raise SystemExit(f"the buckets were not shared by {sorted(replicas)} within {timeout} s")


def kill_one_and_time_handover(kubeconfig: Path, operators: list[OperatorProcess]) -> float:
    """SIGKILL the first replica; seconds until the others hold all the buckets."""
    operators[0].kill()
    return wait_shared(kubeconfig, {f"replica-{i}" for i in range(1, len(operators))})


def install_crds(control_plane: ControlPlane) -> client.CustomObjectsApi:
    """Apply seqflow's CRDs; return an API client for its objects."""
    kubectl = [str(ensure_binaries().kubectl), f"--kubeconfig={control_plane.kubeconfig}"]
    subprocess.run([*kubectl, "apply", "-f", str(HERE.parent / "crds")], check=True, capture_output=True)
    established = ["wait", "--for=condition=Established", "crd/workflowruns.seqflow.io"]
    subprocess.run([*kubectl, *established], check=True, capture_output=True)
    return client.CustomObjectsApi(config.new_client_from_config(config_file=str(control_plane.kubeconfig)))


def create_noop_workflow(api: client.CustomObjectsApi, *, tasks: int) -> None:
    """The Workflow `bench`: `tasks` steps of the no-op handler."""
    steps = [{"name": f"t{i}", "handler": "bench.noop"} for i in range(tasks)]
    workflow = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": "bench"},
        "spec": {"tasks": steps},
    }
    api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "workflows", workflow)


def make_schema(database_url: str) -> None:
    """The history schema, made before the operator starts (as `seqflow migrate` does before a
    deployment), so that no figure includes the operator's own start-up migration."""
    engine = create_store_engine(database_url)
    upgrade(engine)
    engine.dispose()


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


def run_manifest(name: str, *, output_bytes: int = 0) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {
            "workflowRef": {"name": "bench"},
            "input": {"pad_bytes": output_bytes} if output_bytes else {},
        },
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
        try:
            for event in stream:
                body = event["object"]
                name = body["metadata"]["name"]
                if name in names and (body.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    done[name] = body
                    if len(done) == len(names):
                        return done
        except client.ApiException as error:  # the watch cache behind the version asked: watch anew
            if error.status not in (410, 504):
                raise
    missing = len(names) - len(done)
    raise SystemExit(f"{missing} runs did not finish within {timeout} s")


def task_marks(finished: dict[str, dict], database_url: str) -> dict[str, list[list[float]]]:
    """The marks of the runs that succeeded, from their outputs (read from the history store
    where the status names them by reference)."""
    outputs = {n: b["status"]["output"] for n, b in finished.items() if b["status"]["phase"] == "Succeeded"}
    digests = {o["ref"] for o in outputs.values() if set(o) == {"ref", "size"}}
    stored: dict[str, bytes] = {}
    if digests:
        engine = create_store_engine(database_url)
        with engine.connect() as connection:
            for digest in digests:
                parts = connection.execute(
                    text("SELECT data FROM stored_values WHERE digest = :d ORDER BY part"), {"d": digest}
                )
                stored[digest] = b"".join(row[0] for row in parts)
        engine.dispose()
    return {
        n: json.loads(stored[o["ref"]])["marks"] if o.get("ref") in stored else o["marks"]
        for n, o in outputs.items()
    }


def gaps_ms(marks: dict[str, list[list[float]]]) -> list[float]:
    return [(nxt[0] - prev[1]) * 1000 for m in marks.values() for prev, nxt in itertools.pairwise(m)]


def p50_p95(values: list[float], unit: str = "ms") -> str:
    return f"p50 {percentile(values, 0.5):.1f} {unit}, p95 {percentile(values, 0.95):.1f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16, help="SEQFLOW_MAX_CONCURRENT_RUNS")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--floor-seconds", type=float, default=10)
    parser.add_argument("--replicas", type=int, default=1, help="> 1: active-active, SEQFLOW_BUCKETS=16")
    parser.add_argument("--write-delay", type=float, default=0.5, help="SEQFLOW_WRITE_DELAY_SECONDS")
    parser.add_argument("--output-bytes", type=int, default=0, help="each task's output this large (padded)")
    parser.add_argument("--tracing", action="store_true", help="export traces to a local Jaeger")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        jaeger = stack.enter_context(Jaeger()) if args.tracing else None
        run(args, jaeger)


def run(args: argparse.Namespace, jaeger: Jaeger | None) -> None:
    traced = {"SEQFLOW_TRACING_ENDPOINT": jaeger.otlp_endpoint} if jaeger is not None else {}
    with ControlPlane() as control_plane, MariaDB(durable=True) as mariadb:
        api = install_crds(control_plane)
        create_noop_workflow(api, tasks=args.tasks)
        make_schema(mariadb.url)

        operators = [
            start_operator(
                control_plane.kubeconfig,
                mariadb.url,
                SEQFLOW_MAX_CONCURRENT_RUNS=str(args.workers),
                SEQFLOW_WRITE_DELAY_SECONDS=str(args.write_delay),
                **(replica_settings(i) if args.replicas > 1 else {}),
                **traced,
            )
            for i in range(args.replicas)
        ]
        if args.replicas > 1:
            wait_shared(control_plane.kubeconfig, {f"replica-{i}" for i in range(args.replicas)})
        created_at: dict[str, float] = {}

        def create(name: str) -> None:
            created_at[name] = time.time()
            manifest = run_manifest(name, output_bytes=args.output_bytes)
            api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, manifest)

        create("warmup")
        wait_finished(api, {"warmup"}, 60)
        create("alone")
        alone = task_marks(wait_finished(api, {"alone"}, 60), mariadb.url)
        requests_before = api_requests_of(operators)

        names = [f"run-{i:05d}" for i in range(args.runs)]
        cpu_before = cpu_seconds_of_children()
        began = time.time()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))
        created = time.time()
        finished = wait_finished(api, set(names), args.timeout)
        ended = time.time()
        rss_now = [rss_mb(operator.pid) for operator in operators]
        rss_peak = [rss_mb(operator.pid, "VmHWM") for operator in operators]
        requests = {
            what: n - requests_before.get(what, 0)
            for what, n in api_requests_of(operators).items()
            if n > requests_before.get(what, 0)
        }
        cpu = {name: used - cpu_before.get(name, 0.0) for name, used in cpu_seconds_of_children().items()}
        handover = (
            kill_one_and_time_handover(control_plane.kubeconfig, operators) if args.replicas > 1 else None
        )
        for operator in operators:
            operator.stop()
        final_status = next(iter(finished.values()))["status"]
        floor = floor_writes_per_second(
            control_plane.kubeconfig, final_status, concurrency=args.workers, seconds=args.floor_seconds
        )
        marks = task_marks(finished, mariadb.url)

    failed = len(finished) - len(marks)
    first_task = [(m[0][0] - created_at[n]) * 1000 for n, m in marks.items()]
    last_end = max(m[-1][1] for m in marks.values())
    total_tasks = args.runs * args.tasks
    throughput = total_tasks / (last_end - began)
    status_writes = requests.get("PATCH workflowruns/status", 0)
    run_writes = requests.get("PATCH workflowruns", 0)

    print(
        f"runs x tasks            {args.runs} x {args.tasks} ({args.workers} workers, "
        f"{args.replicas} replica{'s' if args.replicas > 1 else ''}, write delay {args.write_delay} s), "
        f"{failed} failed"
    )
    print(f"create requests         {created - began:.2f} s for {args.runs} runs")
    print(f"wall time               {last_end - began:.2f} s from first create to last task end")
    print(f"throughput              {throughput:.1f} tasks/s")
    if args.output_bytes:
        moved = total_tasks * args.output_bytes / 1e6
        print(
            f"outputs moved           {moved / (last_end - began):.1f} MB/s ({moved:.0f} MB; "
            "those over SEQFLOW_INLINE_VALUE_BYTES through the store)"
        )
    print(
        f"floor                   {floor:.1f} status writes/s ({args.workers} at a time, "
        f"{len(json.dumps(final_status))} B statuses); seqflow at {100 * throughput / floor:.0f}% of it"
    )
    print(
        f"writes per task         {status_writes / total_tasks:.2f} status PATCHes "
        f"(+ {run_writes / total_tasks:.2f} PATCHes of the run itself: finalizers)"
    )
    print(f"task-to-task gap        loaded {p50_p95(gaps_ms(marks))}; alone {p50_p95(gaps_ms(alone))}")
    print(
        f"create-to-first-task    loaded {p50_p95(first_task)}; "
        f"alone {(alone['alone'][0][0] - created_at['alone']) * 1000:.1f} ms"
    )
    operator_cpu = cpu.get("python", cpu.get("python3", 0.0))
    print(f"operator CPU            {1000 * operator_cpu / total_tasks:.2f} ms per task (all replicas)")
    print(
        f"operator RSS            {', '.join(f'{r:.1f}' for r in rss_now)} MB at the end, "
        f"peak {', '.join(f'{r:.1f}' for r in rss_peak)} MB"
    )
    if handover is not None:
        print(f"replica killed          the others held all its buckets {handover:.1f} s later")
    if jaeger is not None:
        trace_id = finished[names[-1]]["status"].get("traceId", "")
        spans = len(jaeger.trace(trace_id, spans=args.tasks + 1, timeout=10)["spans"]) if trace_id else 0
        print(f"tracing                 on: the last run's trace in Jaeger holds {spans} spans")
    print(f"watch saw all finished  {ended - began:.2f} s")
    print(
        "API requests            "
        + ", ".join(f"{n} {what}" for what, n in sorted(requests.items(), key=lambda i: -i[1]))
    )
    busy = ", ".join(
        f"{name} {seconds:.1f}"
        for name, seconds in sorted(cpu.items(), key=lambda i: -i[1])
        if seconds >= 0.05
    )
    print(f"CPU seconds used        {busy} (2 cores: {2 * (ended - began):.1f} available)")


if __name__ == "__main__":
    main()
