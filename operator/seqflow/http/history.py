"""The operator's HTTP endpoints: liveness and readiness probes, and the run read API.

    GET /healthz                                 200 while the process serves
    GET /readyz                                  200 when the history store answers, else 503
    GET /api/v1/whoami                           who the bearer token is
    GET /api/v1/runs?namespace=&workflow=&phase=&since=&until=&limit=&cursor=
                                                 runs newest first, one page; `next` is the cursor
    GET /api/v1/namespaces/{namespace}/runs/{name}[?values=ref]
                                                 one run with its attempts and activity log; its
                                                 stored values whole, or with values=ref as
                                                 {ref, size}
    GET /api/v1/namespaces/{namespace}/values/{digest}[?head=BYTES]
                                                 one stored value (its JSON), held in the
                                                 namespace; with head, its first bytes as text

Runs are read from the history store, and what the operator's run cache knows is laid over
them: a live run's phase, current steps and step tree (`live`), and the activity log entries
still waiting in its status for the store. A run the store has not seen yet is listed from the
cache alone.

History holds business data, so the API follows the cluster's RBAC: a caller may `list` (or
`get`) workflowruns in the namespace (seqflow.http.auth).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from seqflow.api.bodies import condition_of, spec_of, status_of, uid_of, workflow_of
from seqflow.api.models import JsonObject, NodeType, RunPhase
from seqflow.cluster.kube import Forbidden, Invalid
from seqflow.engine import child_run_name
from seqflow.history.store import MAX_PAGE, BadCursor, HistoryStore, RunFilter
from seqflow.history.values import named_in, put_in_place, value_places
from seqflow.http.auth import Authorizer, HttpError, authorize, bearer_token
from seqflow.runs.values import Values, ValuesNotStored

logger = logging.getLogger(__name__)
LIST_PARAMS = {"namespace", "workflow", "revision", "phase", "since", "until", "limit", "cursor"}
LIVE_KEYS = ("phase", "current", "progress", "startedAt", "finishedAt", "live")  # laid over a list item
LIVE_STATUS = ("phase", "current", "progress", "retries", "startedAt", "finishedAt", "nodes", "conditions")


class LiveRuns(Protocol):
    """The operator's run cache, as the read API sees it."""

    def live_run(self, namespace: str, name: str) -> JsonObject | None: ...

    def live_runs(self) -> Iterable[JsonObject]: ...


class HistoryApi:
    def __init__(
        self,
        *,
        store: HistoryStore,
        values: Values,
        authorizer: Authorizer | None,
        live: LiveRuns | None = None,
    ) -> None:
        self._store = store
        self._values = values
        self._authorizer = authorizer  # None: no authentication (local development only)
        self._live = live

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/api/v1/whoami", self.whoami)
        app.router.add_get("/api/v1/runs", self.list_runs)
        app.router.add_get("/api/v1/namespaces/{namespace}/runs/{name}", self.show_run)
        app.router.add_get("/api/v1/namespaces/{namespace}/values/{digest}", self.show_value)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except HttpError as error:
            bearer = error.status == 401 and request.path.startswith("/api/")
            headers = {"WWW-Authenticate": "Bearer"} if bearer else None
            return web.json_response({"error": str(error)}, status=error.status, headers=headers)
        except ValuesNotStored as error:  # the history store does not answer just now
            return web.json_response({"error": f"the history store does not answer: {error}"}, status=503)
        except (Invalid, Forbidden) as error:  # the API server refused what the call would write
            return web.json_response(
                {"error": error.message}, status=422 if isinstance(error, Invalid) else 403
            )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            await asyncio.to_thread(self._store.ping)
        except Exception as error:  # any failure to reach the store means not ready
            return web.json_response(
                {"status": "history store unreachable", "error": type(error).__name__}, status=503
            )
        return web.json_response({"status": "ok"})

    async def whoami(self, request: web.Request) -> web.Response:
        if self._authorizer is None:
            return web.json_response({"user": "anonymous", "authentication": False})
        user = await self._authorizer.user(bearer_token(request))
        if user is None:
            raise HttpError(401, "the bearer token is not valid for this cluster")
        return web.json_response({"user": user.username, "authentication": True})

    async def list_runs(self, request: web.Request) -> web.Response:
        query = request.query
        unknown = sorted(set(query) - LIST_PARAMS)
        if unknown:
            raise HttpError(
                400, f"unknown parameter(s) {', '.join(unknown)}; use {', '.join(sorted(LIST_PARAMS))}"
            )
        limit = _limit(query.get("limit", "50"))
        phase = query.get("phase") or None
        if phase is not None and phase not in {p.value for p in RunPhase}:
            raise HttpError(400, f"phase must be one of {', '.join(p.value for p in RunPhase)}")
        namespace = query.get("namespace") or None
        run_filter = RunFilter(
            namespace=namespace,
            workflow=query.get("workflow") or None,
            revision=_revision(query.get("revision")),
            phase=phase,
            created_after=_moment(query, "since"),
            created_before=_moment(query, "until"),
        )
        await self._authorize(request, verb="list", namespace=namespace or "")
        cursor = query.get("cursor") or None
        try:
            items, next_cursor = await asyncio.to_thread(
                self._store.list_runs, filter=run_filter, limit=limit, cursor=cursor
            )
        except BadCursor as error:
            raise HttpError(400, str(error)) from error
        if self._live is not None:
            full = next_cursor is not None
            items = self._with_live(items, run_filter, first_page=cursor is None, full=full, limit=limit)
        return web.json_response({"items": items, "next": next_cursor})

    def _with_live(
        self, items: list[JsonObject], run_filter: RunFilter, *, first_page: bool, full: bool, limit: int
    ) -> list[JsonObject]:
        """The page with the cache's news: live phases laid over, and on the first page the
        newest `limit` runs newer than its last one that the store does not have yet (a run's
        history starts within moments of its creation, unless the store is out)."""
        assert self._live is not None
        listed = []
        for item in items:
            body = self._live.live_run(item["namespace"], item["name"])
            fresh = body is not None and uid_of(body) == item["uid"]
            listed.append(_laid_over(item, body) if fresh and body is not None else item)
        if not first_page:
            return listed
        known = {item["uid"] for item in items}
        oldest = _parsed(items[-1]["createdAt"]) if items and full else None
        unseen = [
            live_summary(body)
            for body in self._live.live_runs()
            if uid_of(body) not in known and _matches(body, run_filter, newer_than=oldest)
        ]
        if not unseen:
            return listed
        unseen = sorted(unseen, key=lambda item: _parsed(item["createdAt"]), reverse=True)[:limit]
        return sorted([*listed, *unseen], key=lambda item: _parsed(item["createdAt"]), reverse=True)

    async def show_run(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self._authorize(request, verb="get", namespace=namespace)
        run = await asyncio.to_thread(self._store.get_run, namespace, name)
        body = self._live.live_run(namespace, name) if self._live is not None else None
        if run is not None and body is not None and uid_of(body) != run["uid"]:
            run = None  # the store has an earlier run of that name; the live one is newer
        if run is None and body is None:
            raise HttpError(404, f"no run {namespace}/{name}")
        if body is not None:
            run = with_live_status(run, body)
            await self._unfold(namespace, run["live"], status_of(body).get("earlierNodes") or [])
        assert run is not None
        for entry in run["activity"]:  # a sub-workflow step's attempt: its child run, by name
            details = entry["details"]
            if entry["event"] == "TASK_STARTED" and details.get("executor") == NodeType.WORKFLOW:
                details["child"] = child_run_name(run=name, node=entry["task"], attempt=entry["attempt"])
        if request.query.get("values") != "ref":
            await self._resolve(namespace, run)
        return web.json_response(run)

    async def show_value(self, request: web.Request) -> web.Response:
        namespace, digest = request.match_info["namespace"], request.match_info["digest"]
        await self._authorize(request, verb="get", namespace=namespace)
        found = await self._values.read_encoded(namespace, digest)
        if found is None:
            raise HttpError(404, f"no stored value {digest} in namespace {namespace}")
        head = request.query.get("head")
        if head is not None:  # its first part, to show
            if not head.isdigit():
                raise HttpError(400, "head must be a number of bytes")
            return web.Response(body=found[: int(head)], content_type="text/plain", charset="utf-8")
        return web.Response(body=found, content_type="application/json")

    async def _unfold(self, namespace: str, live: JsonObject, folded: list[JsonObject]) -> None:
        """Put the nodes folded into the store back before the status's own (when they cannot
        be read now, `earlierNodes` says what is left out)."""
        if not folded:
            return
        found = await self._values.read(namespace, {ref["ref"] for ref in folded})
        if any(ref["ref"] not in found for ref in folded):
            live["earlierNodes"] = folded
            return
        earlier = [node for ref in folded for node in found[ref["ref"]]["nodes"]]
        live["nodes"] = [*earlier, *live.get("nodes", [])]

    async def _resolve(self, namespace: str, run: JsonObject) -> None:
        """Put the stored values the run's history names in place of their references (those
        that cannot be read now stay references)."""
        places = value_places(run)
        put_in_place(places, await self._values.read(namespace, named_in(places)))

    async def _authorize(self, request: web.Request, *, verb: str, namespace: str) -> None:
        await authorize(self._authorizer, request, verb=verb, namespace=namespace)


def live_summary(body: JsonObject) -> JsonObject:
    """A cached run as a list item."""
    meta, status = body["metadata"], status_of(body)
    succeeded = condition_of(status, "Succeeded")
    failed = status.get("phase") in (RunPhase.FAILED, RunPhase.CANCELLED)
    return {
        "uid": meta["uid"],
        "namespace": meta["namespace"],
        "name": meta["name"],
        "workflow": workflow_of(body),
        "phase": status.get("phase") or RunPhase.PENDING.value,
        "current": status.get("current") or [],
        "progress": status.get("progress"),
        "error": succeeded.get("message") if failed else None,
        "createdAt": meta["creationTimestamp"],
        "startedAt": status.get("startedAt"),
        "finishedAt": status.get("finishedAt"),
        "live": True,
    }


def _laid_over(item: JsonObject, body: JsonObject) -> JsonObject:
    """A stored run's list item with what its cached body knows that is newer."""
    summary = live_summary(body)
    return {**item, **{key: summary[key] for key in LIVE_KEYS if summary[key] not in (None, [])}}


def with_live_status(run: JsonObject | None, body: JsonObject) -> JsonObject:
    """A run's history (or, before the store has it, its cached body as one) with its live
    status and the activity log entries its status still holds for the store."""
    status = status_of(body)
    shown: JsonObject = run or {
        **live_summary(body),
        "input": spec_of(body).get("inputRef") or status.get("input") or spec_of(body).get("input"),
        "output": status.get("output"),
        "attempts": [],
        "activity": [],
    }
    written = max((entry["seq"] for entry in shown["activity"]), default=0)
    pending = [
        {
            "seq": record["seq"],
            "event": record["type"],
            "task": record.get("task"),
            "attempt": record.get("attempt"),
            "details": record.get("details") or {},
            "at": record["at"],
        }
        for record in status.get("pendingHistory") or []
        if record["seq"] > written
    ]
    live = {key: status[key] for key in LIVE_STATUS if key in status}
    phase = status.get("phase") or shown["phase"]
    return {**shown, "phase": phase, "activity": [*shown["activity"], *pending], "live": live}


def _revision(text: str | None) -> int | None:
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise HttpError(400, f"revision must be a whole number from 1, got {text!r}")
    return int(text)


def _matches(body: JsonObject, run_filter: RunFilter, *, newer_than: datetime | None) -> bool:
    item = live_summary(body)
    created = _parsed(item["createdAt"])
    return (
        run_filter.namespace in (None, item["namespace"])
        and run_filter.workflow in (None, item["workflow"])
        and run_filter.phase in (None, item["phase"])
        and run_filter.revision in (None, status_of(body).get("workflowGeneration"))
        and (run_filter.created_after is None or created >= run_filter.created_after)
        and (run_filter.created_before is None or created < run_filter.created_before)
        and (newer_than is None or created > newer_than)
    )


def _parsed(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _moment(query: Any, name: str) -> datetime | None:
    value = query.get(name)
    if not value:
        return None
    try:
        moment = _parsed(value)
    except ValueError:
        raise HttpError(400, f"{name} must be an RFC 3339 time such as 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        raise HttpError(400, f"{name} must say its time zone (Z or +hh:mm)")
    return moment


def _limit(value: str) -> int:
    try:
        limit = int(value)
    except ValueError:
        raise HttpError(400, f"limit must be an integer from 1 to {MAX_PAGE}, got {value!r}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise HttpError(400, f"limit must be an integer from 1 to {MAX_PAGE}, got {limit}")
    return limit


async def serve(app: web.Application, *, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host="0.0.0.0", port=port).start()
    return runner
