"""Benchmark: the operator's memory over a soak, N runs of M no-op tasks, then N more.

Prints the operator's RSS after start, after the first N runs and after the second N (each once
they all finished and the history is written): the second N must not grow it by more than a few
percent (the runs stay in the cluster, as they do without a TTL).

    python bench/soak.py --runs 1000 --tasks 5
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from throughput import (  # noqa: E402
    GROUP,
    NAMESPACE,
    PLURAL,
    VERSION,
    create_noop_workflow,
    install_crds,
    make_schema,
    rss_mb,
    run_manifest,
    start_operator,
    wait_finished,
)

from testenv import ControlPlane, MariaDB  # noqa: E402

SETTLE_SECONDS = 10.0  # for the history writes and trims after the last run ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    with ControlPlane() as control_plane, MariaDB(durable=True) as mariadb:
        api = install_crds(control_plane)
        create_noop_workflow(api, tasks=args.tasks)
        make_schema(mariadb.url)
        operator = start_operator(control_plane.kubeconfig, mariadb.url)

        def create(name: str) -> None:
            api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, run_manifest(name))

        create("warmup")
        wait_finished(api, {"warmup"}, 60)
        time.sleep(SETTLE_SECONDS)
        figures = [("after start", rss_mb(operator.pid))]
        for batch in ("first", "second"):
            names = [f"{batch}-{i:05d}" for i in range(args.runs)]
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(create, names))
            wait_finished(api, set(names), args.timeout)
            time.sleep(SETTLE_SECONDS)
            figures.append((f"after the {batch} {args.runs}", rss_mb(operator.pid)))
        peak = rss_mb(operator.pid, "VmHWM")
        operator.stop()

    for label, rss in figures:
        print(f"operator RSS {label:<22} {rss:.1f} MB")
    growth = 100 * (figures[2][1] - figures[1][1]) / figures[1][1]
    print(f"growth over the second {args.runs}    {growth:+.1f}% (peak {peak:.1f} MB)")


if __name__ == "__main__":
    main()
