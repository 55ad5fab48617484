"""Who calls the HTTP API, and whether they may: callers send their Kubernetes bearer token,
which a TokenReview authenticates, and a SubjectAccessReview asks whether that user may `verb`
the resource in the namespace. Answers are cached for a short while so a busy dashboard does
not become API server load."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from aiohttp import web

from seqflow.api.models import GROUP
from seqflow.clock import Clock, SystemClock
from seqflow.cluster.kube import ApiError, KubeApi

logger = logging.getLogger(__name__)
CACHE_SECONDS = 30.0
CREATED_BY = "seqflow.io/created-by"  # annotation of a run started over HTTP: by whom
MAX_CACHED = 10_000  # answers kept; past that the caches start afresh (bounded memory)


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

    def __init__(self, api: KubeApi, *, clock: Clock | None = None) -> None:
        self._api = api
        self._clock = clock or SystemClock()
        self._users: dict[str, tuple[float, User | None]] = {}
        self._decisions: dict[tuple[User, str, str], tuple[float, bool]] = {}

    async def user(self, token: str) -> User | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._users.get(digest)
        if cached and cached[0] > self._clock.monotonic():
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
        self._users[digest] = (self._clock.monotonic() + CACHE_SECONDS, user)
        return user

    async def allowed(self, user: User, *, verb: str, namespace: str, resource: str = "workflowruns") -> bool:
        key = (user, f"{verb} {resource}", namespace)
        cached = self._decisions.get(key)
        if cached and cached[0] > self._clock.monotonic():
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
        self._decisions[key] = (self._clock.monotonic() + CACHE_SECONDS, allowed)
        return allowed


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
    token = bearer_token(request)
    try:
        user = await authorizer.user(token)
        if user is None:
            raise HttpError(401, "the bearer token is not valid for this cluster")
        if not await authorizer.allowed(user, verb=verb, namespace=namespace, resource=resource):
            where = f'in namespace "{namespace}"' if namespace else "in all namespaces (pass ?namespace=)"
            raise HttpError(403, f'user "{user.username}" may not {verb} {resource} {where}')
    except ApiError as error:
        logger.warning("token or access review failed: %s", error)
        raise HttpError(503, "could not check the caller's access with the API server") from error
    return user.username


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise HttpError(401, "send a Kubernetes bearer token: Authorization: Bearer <token>")
    return header[7:].strip()


async def read_body(request: web.Request, *, limit: int, what: str) -> bytes:
    """The request's body, refused (413) past `limit` bytes."""
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"{what} is larger than the {limit} bytes of JSON it may be")
        chunks.append(chunk)
    return b"".join(chunks)
