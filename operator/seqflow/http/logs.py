"""The logs kept of a run's attempts, after their pods are gone, under the run's RBAC (get
workflowruns in its namespace):

    GET /api/v1/namespaces/{namespace}/runs/{name}/logs                    the attempts with a log
    GET /api/v1/namespaces/{namespace}/runs/{name}/logs/{step}/{attempt}   one log, as text

A log longer than SEQFLOW_STEP_LOG_BYTES is kept as its tail: the text then answers with
`X-Seqflow-Log-Size` (the bytes the whole had) larger than its own length.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Protocol

from aiohttp import web

from seqflow.api.bodies import uid_of
from seqflow.api.models import JsonObject
from seqflow.history.logs import StepLogStore
from seqflow.history.store import HistoryStore
from seqflow.http.auth import Authorizer, HttpError, authorize


class LiveRun(Protocol):
    def live_run(self, namespace: str, name: str) -> JsonObject | None: ...


class LogApi:
    def __init__(self, *, store: HistoryStore, authorizer: Authorizer | None, live: LiveRun) -> None:
        self._store = store
        self._logs = StepLogStore(store)
        self._authorizer = authorizer
        self._live = live

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/namespaces/{namespace}/runs/{name}/logs", self.list_logs)
        app.router.add_get(
            "/api/v1/namespaces/{namespace}/runs/{name}/logs/{step:.+}/{attempt:[0-9]+}", self.show_log
        )

    async def list_logs(self, request: web.Request) -> web.Response:
        uid = await self._run_uid(request)
        kept = await asyncio.to_thread(self._logs.kept, uid)
        return web.json_response(
            {"items": [{**asdict(log), "truncated": log.size > log.kept} for log in kept]}
        )

    async def show_log(self, request: web.Request) -> web.Response:
        uid = await self._run_uid(request)
        step, attempt = request.match_info["step"], int(request.match_info["attempt"])
        namespace = request.match_info["namespace"]
        log = await asyncio.to_thread(self._logs.read, namespace, run_uid=uid, task=step, attempt=attempt)
        if log is None:
            raise HttpError(404, f"no log kept of {step} attempt {attempt}")
        headers = {"X-Seqflow-Log-Size": str(log.size)}
        return web.Response(body=log.text, content_type="text/plain", charset="utf-8", headers=headers)

    async def _run_uid(self, request: web.Request) -> str:
        """The uid of the run of that name: the live one, else the newest the history has."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await authorize(self._authorizer, request, verb="get", namespace=namespace)
        body = self._live.live_run(namespace, name)
        if body is not None:
            return uid_of(body)
        run = await asyncio.to_thread(self._store.get_run, namespace, name)
        if run is None:
            raise HttpError(404, f"no run {namespace}/{name}")
        uid: str = run["uid"]
        return uid
