"""Benchmark: the dashboard's runs page with 100,000 runs in the history store.

A throwaway MariaDB is filled with runs (20 namespaces, 10 workflows, a tenth Failed), the
operator's HTTP application (read API and dashboard, no authentication) is served on a free port
in a process of its own, its run cache holding the 1,000 newest runs as running and 50 more the
store has not seen yet, and the runs page is timed two ways: the API call it makes
(first page, filters, a deep page by cursor; p50 and p95 over repeated calls), and in a real
headless Chromium, from navigation to the table drawn.

    python bench/dashboard.py --runs 100000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "operator"), str(HERE)]

from aiohttp import web  # noqa: E402
from history import fill  # noqa: E402
from sqlalchemy import select  # noqa: E402

from seqflow.history.migrate import upgrade  # noqa: E402
from seqflow.history.store import HistoryStore, create_store_engine  # noqa: E402
from seqflow.history.tables import RunRow  # noqa: E402
from seqflow.http.dashboard import Dashboard  # noqa: E402
from seqflow.http.history import HistoryApi  # noqa: E402
from testenv import MariaDB  # noqa: E402
from testenv._proc import free_port  # noqa: E402
from tests.support import CHROMIUM_FLAGS, wait_for  # noqa: E402

LIVE_RUNS = 1000
UNSEEN_RUNS = 50
DRAWN = "document.querySelector('table tbody tr') && performance.now()"


class RunCache:
    """Live runs as the operator's cache holds them: the newest stored ones, and a few the store
    has not seen yet."""

    def __init__(self, newest: list[tuple[str, str, str, datetime]]) -> None:
        unseen = [(f"new-{i}", "team-0", f"new-uid-{i}", datetime.now(UTC)) for i in range(UNSEEN_RUNS)]
        self._bodies = {
            (namespace, name): {
                "metadata": {
                    "namespace": namespace,
                    "name": name,
                    "uid": uid,
                    "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
                "spec": {"workflowRef": {"name": "workflow-0"}, "input": {}},
                "status": {"phase": "Running", "current": ["t1"], "progress": "1/5"},
            }
            for name, namespace, uid, created in [*newest, *unseen]
        }

    def live_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._bodies.get((namespace, name))

    def live_runs(self) -> Iterable[dict[str, Any]]:
        return self._bodies.values()


def serve(url: str, port: int) -> None:
    """The operator's HTTP application, in a process of its own like the operator's."""

    async def main() -> None:
        store = HistoryStore(create_store_engine(url))
        newest = select(RunRow.name, RunRow.namespace, RunRow.uid, RunRow.created_at)
        with store.engine.connect() as connection:
            rows = connection.execute(newest.order_by(RunRow.created_at.desc()).limit(LIVE_RUNS)).all()
        cache = RunCache([(r.name, r.namespace, r.uid, r.created_at.replace(tzinfo=UTC)) for r in rows])
        app = HistoryApi(store=store, authorizer=None, live=cache).application()
        Dashboard().add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host="127.0.0.1", port=port).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def _answers(base: str) -> bool:
    try:
        get(base + "/healthz")
        return True
    except OSError:
        return False


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def timed(url: str, repeat: int) -> str:
    get(url)  # warm
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        get(url)
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    p95 = samples[int(len(samples) * 0.95) - 1]
    return f"p50 {statistics.median(samples):6.1f} ms, p95 {p95:6.1f} ms"


def api_latency(base: str, repeat: int) -> None:
    import json

    cursor = None
    for _ in range(1000):  # page 1,001 of all runs, reached as a user paging would
        page = json.loads(get(f"{base}/api/v1/runs?limit=50" + (f"&cursor={cursor}" if cursor else "")))
        cursor = page["next"]
    queries = {
        "all namespaces": "",
        "one namespace": "&namespace=team-3",
        "workflow (all namespaces)": "&workflow=workflow-3",
        "Failed (all namespaces)": "&phase=Failed",
        "namespace + workflow": "&namespace=team-3&workflow=workflow-3",
        "a one-hour window": "&since=2026-01-01T12:00:00Z&until=2026-01-01T13:00:00Z",
        "page 1,001 (cursor)": f"&cursor={cursor}",
    }
    print(f"GET /  (the page)                    {timed(base + '/', repeat)}")
    for label, query in queries.items():
        print(f"GET /api/v1/runs {label:<20} {timed(f'{base}/api/v1/runs?limit=50{query}', repeat)}")


def browser_latency(base: str, repeat: int) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium not found: no browser timing (make tools installs it)")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(bypass_csp=True)  # the timing probe is a string evaluated in the page
        drawn, loaded = [], []
        for i in range(repeat + 1):
            page.goto(f"{base}/?{i}#/runs", wait_until="commit")
            # the page's own clock: milliseconds from the start of the navigation
            drawn.append(float(page.wait_for_function(DRAWN).json_value()))
            loaded.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
        browser.close()
    drawn = sorted(drawn[1:])
    print(
        f"Chromium, navigation start to the runs table drawn: p50 {statistics.median(drawn):.0f} ms, "
        f"max {drawn[-1]:.0f} ms ({repeat} loads; the page's load event alone: p50 "
        f"{statistics.median(loaded[1:]):.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    with MariaDB(durable=True) as server:
        store = HistoryStore(create_store_engine(server.url))
        upgrade(store.engine)
        fill(store, args.runs)
        port = free_port()
        server_process = multiprocessing.get_context("fork").Process(target=serve, args=(server.url, port))
        server_process.start()
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(base), timeout=10, what="the HTTP server")
        print(
            f"{args.runs} runs in the history store; "
            f"in the run cache {LIVE_RUNS} of them and {UNSEEN_RUNS} more"
        )
        api_latency(base, args.repeat)
        browser_latency(base, min(args.repeat, 20))
        server_process.terminate()
        store.engine.dispose()


if __name__ == "__main__":
    main()
