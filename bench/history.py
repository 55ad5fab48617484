"""Benchmark: the history store on a throwaway MariaDB.

Prints the write throughput of activity log entries (batches as the operator writes them: a
task's entries per transaction) and list-query latency with 100,000 runs in the table: the first
page and a deep page reached by keyset cursor, with and without filters.

    python bench/history.py --runs 100000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "operator")]

from sqlalchemy import insert  # noqa: E402

from seqflow.api.models import HistoryEvent, HistoryRecord  # noqa: E402
from seqflow.history.migrate import upgrade  # noqa: E402
from seqflow.history.store import HistoryStore, RunFilter, RunIdentity, create_store_engine  # noqa: E402
from seqflow.history.tables import RunRow  # noqa: E402
from testenv import MariaDB  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write_throughput(store: HistoryStore, runs: int, tasks: int, writers: int) -> None:
    """Each run: WORKFLOW_STARTED, then per task STARTED and COMPLETED, then WORKFLOW_COMPLETED,
    written two entries per transaction like the operator does between transitions; `writers`
    threads, like the operator's worker threads."""
    began = time.perf_counter()
    with ThreadPoolExecutor(writers) as pool:
        entries = sum(pool.map(lambda r: write_run(store, r, tasks), range(runs)))
    elapsed = time.perf_counter() - began
    print(
        f"history writes          {entries} entries of {runs} runs in {elapsed:.2f} s "
        f"with {writers} writers: "
        f"{entries / elapsed:.0f} entries/s ({entries / 2 / elapsed:.0f} transactions/s)"
    )


def write_run(store: HistoryStore, r: int, tasks: int) -> int:
    run = RunIdentity(
        uid=str(uuid.uuid4()), namespace="bench", name=f"w-{r}", workflow="wf", input={"n": r}, created_at=T0
    )
    log = [HistoryRecord(seq=1, type=HistoryEvent.WORKFLOW_STARTED, at=T0, details={"input": {"n": r}})]
    for t in range(tasks):
        for kind in (HistoryEvent.TASK_STARTED, HistoryEvent.TASK_COMPLETED):
            log.append(
                HistoryRecord(
                    seq=len(log) + 1,
                    type=kind,
                    at=T0,
                    task=f"t{t}",
                    task_index=t,
                    attempt=1,
                    details={"output": {"n": r}},
                )
            )
    log.append(HistoryRecord(seq=len(log) + 1, type=HistoryEvent.WORKFLOW_COMPLETED, at=T0, details={}))
    for i in range(0, len(log), 2):
        store.write(run, log[i : i + 2])
    return len(log)


def fill(store: HistoryStore, total: int) -> None:
    began = time.perf_counter()
    phases = ["Succeeded"] * 8 + ["Failed", "Running"]
    chunk = 5000
    with store.engine.begin() as connection:
        for start in range(0, total, chunk):
            rows = [
                {
                    "uid": str(uuid.uuid4()),
                    "namespace": f"team-{i % 20}",
                    "name": f"run-{i}",
                    "workflow": f"workflow-{i % 10}",
                    "phase": phases[i % len(phases)],
                    "input": {"order": i},
                    "created_at": (T0 + timedelta(seconds=i)).replace(tzinfo=None),
                    "history_seq": 8,
                }
                for i in range(start, min(start + chunk, total))
            ]
            connection.execute(insert(RunRow), rows)
    print(f"filled                  {total} runs in {time.perf_counter() - began:.1f} s")


def timed(call, repeat: int = 30) -> str:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return f"p50 {statistics.median(samples):.2f} ms, max {max(samples):.2f} ms"


def list_latency(store: HistoryStore, *, label: str, filter: RunFilter, depth: int) -> None:
    cursor = None
    for _ in range(depth):
        _, cursor = store.list_runs(filter=filter, limit=50, cursor=cursor)
    first = timed(lambda: store.list_runs(filter=filter, limit=50))
    deep = timed(lambda: store.list_runs(filter=filter, limit=50, cursor=cursor))
    print(f"list {label:<22} first page {first}; page {depth + 1}: {deep}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--write-runs", type=int, default=300)
    args = parser.parse_args()
    with MariaDB(durable=True) as server:
        store = HistoryStore(create_store_engine(server.url))
        upgrade(store.engine)
        write_throughput(store, args.write_runs, tasks=3, writers=1)
        write_throughput(store, args.write_runs, tasks=3, writers=4)
        fill(store, args.runs)
        list_latency(store, label="all namespaces", filter=RunFilter(), depth=1000)
        list_latency(store, label="one namespace", filter=RunFilter(namespace="team-3"), depth=90)
        list_latency(
            store,
            label="namespace + workflow",
            filter=RunFilter(namespace="team-3", workflow="workflow-3"),
            depth=90,
        )
        list_latency(
            store, label="namespace + Failed", filter=RunFilter(namespace="team-8", phase="Failed"), depth=90
        )
        store.engine.dispose()


if __name__ == "__main__":
    main()
