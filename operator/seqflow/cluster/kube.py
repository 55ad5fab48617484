"""A small asyncio client for the few Kubernetes API calls the reconciler makes on its hot path.

Credentials come from the `kubernetes` package's config loaders (in-cluster or kubeconfig:
tokens, client certificates, exec and auth-provider plugins; not proxies); requests go over one
pooled aiohttp session, so no thread pool sits between the run loop and the API server.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from seqflow.api.models import GROUP, VERSION, JsonObject
from seqflow.settings import StartupError

RUNS = "workflowruns"
REVISIONS = "/apis/apps/v1"  # ControllerRevisions: a Workflow's revisions
AUTH_REFRESH_SECONDS = 60.0
REQUEST_TIMEOUT = 30.0
LOG_TIMEOUT = 300.0  # a container's whole log streams in within this
LOG_CHUNK_BYTES = 256 * 1024


FIELD_MANAGER = "seqflow"  # how the operator's writes show in managedFields
THROTTLE_RETRIES = 3  # 429 answers waited out (as their Retry-After says) before giving up
MAX_RETRY_AFTER = 10.0


class ApiError(Exception):
    """A non-2xx answer of the API server; the subclasses are the answers seqflow acts on."""

    status = 0

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Invalid(ApiError):
    """400 / 422: the request itself is refused; sending it again cannot help."""


class Unauthorized(ApiError):
    """401: the credentials were refused (even after re-reading them once)."""


class Forbidden(ApiError):
    """403: RBAC refuses the request."""


class NotFound(ApiError):
    """404: the object is gone."""


class Conflict(ApiError):
    """409: the object changed since the version the request was based on, or already exists."""


class Gone(ApiError):
    """410: the resourceVersion is too old for a watch or a list continuation: list again."""


class EntityTooLarge(ApiError):
    """413, or etcd's "request is too large": the object would exceed the size etcd stores."""


class TooManyRequests(ApiError):
    """429: the API server is overloaded (still so after waiting out Retry-After)."""


_ERRORS: dict[int, type[ApiError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: EntityTooLarge,
    422: Invalid,
    429: TooManyRequests,
}


def api_error(status: int, message: str) -> ApiError:
    """The typed error of an answer."""
    if "request is too large" in message:  # etcd's limit, passed on by the API server as a 500
        return EntityTooLarge(status, message)
    return _ERRORS.get(status, ApiError)(status, message)


def load_configuration() -> k8s_client.Configuration:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        try:
            k8s_config.load_kube_config(client_configuration=configuration)
        except (k8s_config.ConfigException, OSError) as error:
            raise StartupError(
                f"no Kubernetes credentials: not running in a pod, and no usable kubeconfig ({error})"
            ) from None
    return configuration


def _ssl_context(configuration: k8s_client.Configuration) -> ssl.SSLContext | bool:
    if not configuration.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


Observer = Callable[[str, str, int, float], None]  # verb, resource, status code, seconds


class KubeApi:
    """JSON requests against the API server; non-2xx answers raise `ApiError`."""

    def __init__(
        self,
        configuration: k8s_client.Configuration,
        *,
        connections: int,
        observe: Observer | None = None,
        qps: float = 0.0,
        burst: int = 0,
    ) -> None:
        """`qps` > 0 limits the requests per second, `burst` of them at once (client-go's pair)."""
        self._configuration = configuration
        self._observe = observe
        self._limiter = AsyncLimiter(max(burst, 1), max(burst, 1) / qps) if qps > 0 else None
        self._auth: dict[str, str] = {}
        self._auth_until = 0.0
        self._base = configuration.host.rstrip("/")
        connector = aiohttp.TCPConnector(limit=connections, ssl=_ssl_context(configuration))
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        )

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self, method: str, path: str, *, body: Any = None, content_type: str = "application/json"
    ) -> JsonObject:
        """Send one request: 429 answers are waited out as their Retry-After says, refused
        credentials are re-read once; any other non-2xx answer raises its typed `ApiError`."""
        if method in ("POST", "PUT", "PATCH"):
            path += ("&" if "?" in path else "?") + f"fieldManager={FIELD_MANAGER}"
        data = None if body is None else json.dumps(body)
        throttled = 0
        reauthenticated = False
        while True:
            status, text, retry_after = await self._send(method, path, data, content_type)
            if status < 300:
                answer: JsonObject = json.loads(text) if text else {}
                return answer
            if status == 429 and throttled < THROTTLE_RETRIES:
                throttled += 1
                await asyncio.sleep(retry_after)
            elif status == 401 and not reauthenticated:
                reauthenticated = True
                self._auth_until = 0.0  # the token may have rotated: read the credentials again
            else:
                raise api_error(status, _message_of(text))

    async def _send(
        self, method: str, path: str, data: str | None, content_type: str
    ) -> tuple[int, str, float]:
        """One round trip: the status code, the body and the Retry-After delay."""
        headers = {"Accept": "application/json", "Content-Type": content_type, **self._auth_headers()}
        if self._limiter is not None:
            await self._limiter.acquire()
        began = time.perf_counter()
        async with self._session.request(method, self._base + path, data=data, headers=headers) as response:
            text = await response.text()
        if self._observe is not None:
            self._observe(method, resource_of(path), response.status, time.perf_counter() - began)
        return response.status, text, _retry_after(response.headers.get("Retry-After"))

    def _auth_headers(self) -> dict[str, str]:
        """The credentials' headers, refreshed every minute (service account tokens rotate; the
        kubeconfig loader re-reads everything on each refresh, too costly for every request)."""
        if time.monotonic() >= self._auth_until:
            bearer = self._configuration.auth_settings().get("BearerToken")
            self._auth = {bearer["key"]: bearer["value"]} if bearer and bearer["value"] else {}
            self._auth_until = time.monotonic() + AUTH_REFRESH_SECONDS
        return self._auth

    # ----- the calls seqflow makes -----

    async def get_run(self, namespace: str, name: str) -> JsonObject:
        return await self.request("GET", run_path(namespace, name))

    async def create_run(self, namespace: str, run: JsonObject) -> JsonObject:
        return await self.request(
            "POST", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflowruns", body=run
        )

    async def patch_run(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        """A JSON merge patch of the run itself: its finalizer, or a child run's suspend and cancel."""
        return await self._merge_patch(run_path(namespace, name), patch)

    async def patch_run_status(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        """A JSON merge patch of the status; refused with 409 when `patch` carries a
        metadata.resourceVersion that is no longer current."""
        return await self._merge_patch(run_path(namespace, name) + "/status", patch)

    async def list_runs(self, namespace: str, *, label_selector: str) -> list[JsonObject]:
        """The runs of `namespace` that `label_selector` selects, as the API server has them now
        (no resourceVersion: a consistent read, never an older cached view)."""
        query = urllib.parse.urlencode({"labelSelector": label_selector})
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{RUNS}?{query}"
        answer = await self.request("GET", path)
        return answer.get("items") or []

    async def delete_run(self, namespace: str, name: str) -> None:
        await self.request("DELETE", run_path(namespace, name))

    async def create_event(self, namespace: str, event: JsonObject) -> JsonObject:
        return await self.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event)

    async def create_job(self, namespace: str, manifest: JsonObject) -> JsonObject:
        return await self.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=manifest)

    async def get_job(self, namespace: str, name: str) -> JsonObject:
        return await self.request("GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")

    async def patch_job(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        return await self._merge_patch(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}", patch)

    async def patch_job_status(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        return await self._merge_patch(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}/status", patch)

    async def patch_pod(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        return await self._merge_patch(f"/api/v1/namespaces/{namespace}/pods/{name}", patch)

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its pods."""
        await self.request(
            "DELETE",
            f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
            body={"propagationPolicy": "Background"},
        )

    async def create_pod(self, namespace: str, manifest: JsonObject) -> JsonObject:
        return await self.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=manifest)

    async def get_pod(self, namespace: str, name: str) -> JsonObject:
        return await self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")

    async def delete_pod(self, namespace: str, name: str) -> None:
        await self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")

    async def read_log(
        self, namespace: str, name: str, *, container: str, feed: Callable[[bytes], None]
    ) -> None:
        """Pass a container's log to `feed` as it streams in (a long log is never held whole)."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}/log?container={container}"
        if self._limiter is not None:
            await self._limiter.acquire()
        began = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=LOG_TIMEOUT)
        async with self._session.get(
            self._base + path, headers=self._auth_headers(), timeout=timeout
        ) as response:
            if response.status >= 300:
                raise api_error(response.status, _message_of(await response.text()))
            async for chunk in response.content.iter_chunked(LOG_CHUNK_BYTES):
                feed(chunk)
        if self._observe is not None:
            self._observe("GET", "pods/log", response.status, time.perf_counter() - began)

    async def patch_workflow_status(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        """(namespace "": a ClusterWorkflow's)"""
        return await self._merge_patch(f"{workflow_path(namespace, name)}/status", patch)

    async def patch_schedule_status(self, namespace: str, name: str, patch: JsonObject) -> JsonObject:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflowschedules/{name}/status"
        return await self._merge_patch(path, patch)

    async def _merge_patch(self, path: str, patch: JsonObject) -> JsonObject:
        return await self.request("PATCH", path, body=patch, content_type="application/merge-patch+json")

    async def get_secret(self, namespace: str, name: str) -> JsonObject:
        return await self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")

    async def get_config_map(self, namespace: str, name: str) -> JsonObject:
        return await self.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    async def get_workflow(self, namespace: str, name: str) -> JsonObject:
        """(namespace "": a ClusterWorkflow)"""
        return await self.request("GET", workflow_path(namespace, name))

    async def create_controller_revision(self, namespace: str, manifest: JsonObject) -> JsonObject:
        return await self.request(
            "POST", f"{REVISIONS}/namespaces/{namespace}/controllerrevisions", body=manifest
        )

    async def get_controller_revision(self, namespace: str, name: str) -> JsonObject:
        return await self.request("GET", f"{REVISIONS}/namespaces/{namespace}/controllerrevisions/{name}")

    async def list_controller_revisions(self, namespace: str, *, label_selector: str) -> list[JsonObject]:
        path = f"{REVISIONS}/namespaces/{namespace}/controllerrevisions?labelSelector={label_selector}"
        answer = await self.request("GET", path)
        return answer.get("items") or []

    async def delete_controller_revision(self, namespace: str, name: str) -> None:
        await self.request("DELETE", f"{REVISIONS}/namespaces/{namespace}/controllerrevisions/{name}")

    async def pods_of_job(self, namespace: str, job_uid: str) -> list[JsonObject]:
        selector = f"batch.kubernetes.io/controller-uid={job_uid}"
        answer = await self.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
        return answer.get("items") or []


def workflow_path(namespace: str, name: str) -> str:
    """A Workflow's, or for namespace "" a ClusterWorkflow's."""
    if not namespace:
        return f"/apis/{GROUP}/{VERSION}/clusterworkflows/{name}"
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflows/{name}"


def run_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{RUNS}/{name}"


def resource_of(path: str) -> str:
    """`workflowruns/status`, `jobs`, `tokenreviews`... from an API path."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if "namespaces" in parts and parts.index("namespaces") + 2 < len(parts):
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[-1:]
    return parts[0] + ("/status" if parts[-1] == "status" and len(parts) > 2 else "")


def _message_of(text: str) -> str:
    try:
        message = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        return text
    return str(message)


def _retry_after(value: str | None) -> float:
    """Seconds to wait, from a Retry-After header in seconds (the API server's form)."""
    try:
        seconds = float(value) if value else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
