"""The operator's HTTP endpoints: liveness and readiness probes, and the history read API.

    GET /healthz                                 200 while the process serves
    GET /readyz                                  200 when the history store answers, else 503
    GET /api/v1/runs?namespace=&workflow=&phase=&limit=&cursor=
                                                 runs newest first, one page; `next` is the cursor
    GET /api/v1/namespaces/{namespace}/runs/{name}
                                                 one run with its attempts and activity log

History holds business data, so the API follows the cluster's RBAC: callers send their
Kubernetes bearer token, which a TokenReview authenticates, and a SubjectAccessReview asks
whether that user may `list` (or `get`) workflowruns in the namespace. Answers are cached for a
short while so a busy dashboard does not become API server load.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from seqflow.api.models import GROUP, RunPhase
from seqflow.history.store import MAX_PAGE, BadCursor, HistoryStore, RunFilter
from seqflow.kube import ApiError, Forbidden, Invalid, KubeApi

logger = logging.getLogger(__name__)
CACHE_SECONDS = 30.0
CREATED_BY = "seqflow.io/created-by"  # annotation of a run started over HTTP: by whom
MAX_CACHED = 10_000  # answers kept; past that the caches start afresh (bounded memory)
LIST_PARAMS = {"namespace", "workflow", "phase", "limit", "cursor"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class User:
    username: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]


class Authorizer:
    """Who is calling (TokenReview) and what they may read (SubjectAccessReview)."""

    def __init__(self, api: KubeApi) -> None:
        self._api = api
        self._users: dict[str, tuple[float, User | None]] = {}
        self._decisions: dict[tuple[User, str, str], tuple[float, bool]] = {}

    async def user(self, token: str) -> User | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._users.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        review = await self._api.request(
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        )
        status = review.get("status") or {}
        user = None
        if status.get("authenticated"):
            info = status.get("user") or {}
            user = User(
                username=info.get("username", ""),
                uid=info.get("uid", ""),
                groups=tuple(info.get("groups") or ()),
                extra=tuple(sorted((k, tuple(v)) for k, v in (info.get("extra") or {}).items())),
            )
        if len(self._users) >= MAX_CACHED:
            self._users.clear()
        self._users[digest] = (time.monotonic() + CACHE_SECONDS, user)
        return user

    async def allowed(self, user: User, *, verb: str, namespace: str, resource: str = "workflowruns") -> bool:
        key = (user, f"{verb} {resource}", namespace)
        cached = self._decisions.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        review = await self._api.request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user.username,
                    "uid": user.uid,
                    "groups": list(user.groups),
                    "extra": {k: list(v) for k, v in user.extra},
                    "resourceAttributes": {
                        "group": GROUP,
                        "resource": resource,
                        "verb": verb,
                        "namespace": namespace,
                    },
                },
            },
        )
        allowed = bool((review.get("status") or {}).get("allowed"))
        if len(self._decisions) >= MAX_CACHED:
            self._decisions.clear()
        self._decisions[key] = (time.monotonic() + CACHE_SECONDS, allowed)
        return allowed


class HistoryApi:
    def __init__(self, *, store: HistoryStore, authorizer: Authorizer | None) -> None:
        self._store = store
        self._authorizer = authorizer  # None: no authentication (local development only)

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/api/v1/runs", self.list_runs)
        app.router.add_get("/api/v1/namespaces/{namespace}/runs/{name}", self.show_run)
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

    async def list_runs(self, request: web.Request) -> web.Response:
        query = request.query
        unknown = sorted(set(query) - LIST_PARAMS)
        if unknown:
            raise HttpError(
                400, f"unknown parameter(s) {', '.join(unknown)}; use {', '.join(sorted(LIST_PARAMS))}"
            )
        limit = _limit(query.get("limit", "50"))
        phase = query.get("phase")
        if phase is not None and phase not in {p.value for p in RunPhase}:
            raise HttpError(400, f"phase must be one of {', '.join(p.value for p in RunPhase)}")
        namespace = query.get("namespace") or None
        await self._authorize(request, verb="list", namespace=namespace or "")
        run_filter = RunFilter(namespace=namespace, workflow=query.get("workflow") or None, phase=phase)
        try:
            items, cursor = await asyncio.to_thread(
                self._store.list_runs, filter=run_filter, limit=limit, cursor=query.get("cursor")
            )
        except BadCursor as error:
            raise HttpError(400, str(error)) from error
        return web.json_response({"items": items, "next": cursor})

    async def show_run(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self._authorize(request, verb="get", namespace=namespace)
        run = await asyncio.to_thread(self._store.get_run, namespace, name)
        if run is None:
            raise HttpError(404, f"no history of run {namespace}/{name}")
        return web.json_response(run)

    async def _authorize(self, request: web.Request, *, verb: str, namespace: str) -> None:
        await authorize(self._authorizer, request, verb=verb, namespace=namespace)


async def authorize(
    authorizer: Authorizer | None,
    request: web.Request,
    *,
    verb: str,
    namespace: str,
    resource: str = "workflowruns",
) -> str:
    """The caller's user name once the API server says they may `verb` `resource` in
    `namespace` ("" for all); else an HttpError (401, 403, or 503 when it cannot be asked)."""
    if authorizer is None:
        return "anonymous"
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise HttpError(401, "send a Kubernetes bearer token: Authorization: Bearer <token>")
    try:
        user = await authorizer.user(header[7:].strip())
        if user is None:
            raise HttpError(401, "the bearer token is not valid for this cluster")
        if not await authorizer.allowed(user, verb=verb, namespace=namespace, resource=resource):
            where = f'in namespace "{namespace}"' if namespace else "in all namespaces (pass ?namespace=)"
            raise HttpError(403, f'user "{user.username}" may not {verb} {resource} {where}')
    except ApiError as error:
        logger.warning("token or access review failed: %s", error)
        raise HttpError(503, "could not check the caller's access with the API server") from error
    return user.username


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
