"""The read API's view of runs (the history store's rows with the run cache's news laid over
them) and the dashboard's files and headers, through aiohttp's test client. The history store
and the run cache are stand-ins of our own seams here; the e2e tests use the real ones."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from seqflow.engine import child_run_name
from seqflow.history.store import RunFilter
from seqflow.http.dashboard import STATIC, Dashboard
from seqflow.http.history import HistoryApi
from seqflow.runs.values import Values
from tests.stored_values import MemoryValueStore

STORED = {
    "uid": "u-1",
    "namespace": "shop",
    "name": "order-1",
    "workflow": "order",
    "workflowGeneration": 1,
    "phase": "Running",
    "error": None,
    "createdAt": "2026-11-23T10:00:00.500000+00:00",
    "startedAt": "2026-11-23T10:00:01+00:00",
    "finishedAt": None,
}


class Store:
    def __init__(self, items: list[dict[str, Any]], run: dict[str, Any] | None = None) -> None:
        self.items, self.run, self.filters = items, run, []

    def list_runs(self, *, filter: RunFilter, limit: int, cursor: str | None):
        self.filters.append(filter)
        return self.items, "more" if cursor is None and len(self.items) >= limit else None

    def get_run(self, namespace: str, name: str):
        return (
            self.run if self.run and (self.run["namespace"], self.run["name"]) == (namespace, name) else None
        )

    def ping(self) -> None:
        pass


class Cache:
    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = {(b["metadata"]["namespace"], b["metadata"]["name"]): b for b in bodies}

    def live_run(self, namespace: str, name: str):
        return self.bodies.get((namespace, name))

    def live_runs(self) -> Iterable[dict[str, Any]]:
        return self.bodies.values()


def body(name: str, uid: str, created: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": name, "uid": uid, "creationTimestamp": created},
        "spec": {"workflowRef": {"name": "order"}, "input": {"n": 1}},
        "status": status,
    }


def served(app_of: Callable[[], Any], check: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app_of())) as client:
            await check(client)

    asyncio.run(main())


def api(store: Store, cache: Cache | None) -> Callable[[], Any]:
    values = Values(MemoryValueStore(), cache_bytes=1024)
    return lambda: HistoryApi(store=store, values=values, authorizer=None, live=cache).application()  # type: ignore[arg-type]


def test_a_live_phase_is_laid_over_the_stored_row_of_the_same_run_only():
    finished = body(
        "order-1", "u-1", "2026-11-23T10:00:00Z", phase="Succeeded", finishedAt="2026-11-23T10:00:09Z"
    )
    recreated = body("order-1", "u-2", "2026-11-23T10:05:00Z", phase="Pending")

    async def check(client: TestClient) -> None:
        listed = await (await client.get("/api/v1/runs?namespace=shop")).json()
        (item,) = listed["items"]
        assert (item["phase"], item["live"], item["finishedAt"]) == (
            "Succeeded",
            True,
            "2026-11-23T10:00:09Z",
        )
        assert item["startedAt"] == STORED["startedAt"]  # a slim cached body does not blank it

    served(api(Store([STORED]), Cache(finished)), check)

    async def check_recreated(client: TestClient) -> None:
        listed = await (await client.get("/api/v1/runs")).json()
        assert [(i["uid"], i["phase"]) for i in listed["items"]] == [("u-2", "Pending"), ("u-1", "Running")]

    served(api(Store([STORED]), Cache(recreated)), check_recreated)


def test_runs_the_store_has_not_seen_are_listed_on_the_first_page_when_they_match():
    new = body("order-2", "u-2", "2026-11-23T10:01:00Z", phase="Running", current=["Pay"], progress="1/3")
    older = body("order-0", "u-0", "2026-11-23T09:00:00Z", phase="Pending")
    cache = Cache(new, older, body("other-1", "u-3", "2026-11-23T10:02:00Z", phase="Running"))
    cache.bodies[("shop", "other-1")]["spec"]["workflowRef"]["name"] = "other"

    async def check(client: TestClient) -> None:
        first = await (await client.get("/api/v1/runs?workflow=order&limit=1")).json()
        assert [i["name"] for i in first["items"]] == [
            "order-2",
            "order-1",
        ]  # not order-0: older than the page
        assert first["items"][0]["current"] == ["Pay"] and first["next"] == "more"
        later = await (await client.get("/api/v1/runs?workflow=order&limit=1&cursor=more")).json()
        assert [i["name"] for i in later["items"]] == ["order-1"]
        failed = await (await client.get("/api/v1/runs?phase=Failed")).json()
        assert [i["name"] for i in failed["items"]] == [
            "order-1"
        ]  # the store's answer; no cached run matches

    served(api(Store([STORED]), cache), check)


def test_time_filters_are_checked_and_passed_to_the_store():
    store = Store([])

    async def check(client: TestClient) -> None:
        ok = await client.get("/api/v1/runs?since=2026-11-23T10:00:00Z&until=2026-11-23T12:00:00%2B02:00")
        assert ok.status == 200
        assert store.filters[-1].created_after.isoformat() == "2026-11-23T10:00:00+00:00"
        assert store.filters[-1].created_before.isoformat() == "2026-11-23T12:00:00+02:00"
        naive = await client.get("/api/v1/runs?since=2026-11-23T10:00:00")
        assert naive.status == 400 and "time zone" in (await naive.json())["error"]
        wrong = await client.get("/api/v1/runs?until=yesterday")
        assert wrong.status == 400 and "RFC 3339" in (await wrong.json())["error"]

    served(api(store, None), check)


def test_a_run_shows_its_live_status_and_the_entries_its_status_still_holds():
    stored = {
        **STORED,
        "input": {"n": 1},
        "output": None,
        "attempts": [],
        "activity": [
            {"seq": 1, "event": "WORKFLOW_STARTED", "task": None, "attempt": None, "details": {}, "at": "t1"},
            {
                "seq": 2,
                "event": "TASK_STARTED",
                "task": "Child",
                "attempt": 1,
                "details": {"executor": "workflow"},
                "at": "t2",
            },
        ],
    }
    pending = [
        {"seq": 2, "type": "TASK_STARTED", "task": "Child", "attempt": 1, "at": "t2"},  # already stored
        {
            "seq": 3,
            "type": "TASK_COMPLETED",
            "task": "Child",
            "attempt": 1,
            "at": "t3",
            "details": {"output": {}},
        },
    ]
    live = body(
        "order-1",
        "u-1",
        "2026-11-23T10:00:00Z",
        phase="Running",
        pendingHistory=pending,
        nodes=[{"id": "Child"}],
    )

    async def check(client: TestClient) -> None:
        run = await (await client.get("/api/v1/namespaces/shop/runs/order-1")).json()
        assert [e["seq"] for e in run["activity"]] == [1, 2, 3]
        assert run["activity"][1]["details"]["child"] == child_run_name(
            run="order-1", node="Child", attempt=1
        )
        assert run["live"]["nodes"] == [{"id": "Child"}] and "pendingHistory" not in run["live"]
        missing = await client.get("/api/v1/namespaces/shop/runs/nope")
        assert missing.status == 404

    served(api(Store([], stored), Cache(live)), check)

    async def check_unstored(client: TestClient) -> None:  # created, not yet in the store
        run = await (await client.get("/api/v1/namespaces/shop/runs/order-1")).json()
        assert (run["phase"], run["input"], [e["seq"] for e in run["activity"]]) == (
            "Running",
            {"n": 1},
            [2, 3],
        )

    served(api(Store([], None), Cache(live)), check_unstored)


def test_whoami_without_authentication():
    async def check(client: TestClient) -> None:
        answer = await (await client.get("/api/v1/whoami")).json()
        assert answer == {"user": "anonymous", "authentication": False}

    served(api(Store([]), None), check)


def dashboard_app() -> Any:
    from aiohttp import web

    app = web.Application()
    Dashboard().add_routes(app)
    return app


def test_the_dashboard_is_served_with_a_strict_content_security_policy():
    async def check(client: TestClient) -> None:
        page = await client.get("/")
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self';" in policy and "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy and page.headers["X-Content-Type-Options"] == "nosniff"
        script = await client.get("/ui/app.js")
        assert script.headers["Content-Type"].startswith("text/javascript")
        again = await client.get("/ui/app.js", headers={"If-None-Match": script.headers["ETag"]})
        assert again.status == 304
        assert (await client.get("/ui/secrets.txt")).status == 404
        assert (await client.get("/ui/..%2Fweb.py")).status == 404

    served(dashboard_app, check)


def test_the_pages_have_no_inline_code_and_never_write_markup_from_data():
    html = (STATIC / "index.html").read_text()
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert not re.search(r"\son\w+=|\sstyle=", html)
    for script in Path(STATIC).glob("*.js"):
        text = script.read_text()
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in text, f"{script.name} uses {sink}"
        assert not re.search(r"""setAttribute\(\s*["']style""", text), script.name
