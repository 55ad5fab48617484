"""http steps: the one request of an attempt, made from the operator's pod to a host that
SEQFLOW_HTTP_ALLOWED_HOSTS admits, and its response as the step's output.

Never raises: a host not admitted and a status outside the retried ones fail the step for good
(the message gives the status and the start of the body); a connection error, a timeout, a 5xx
and a 429 are retried by the step's policy, not before the response's Retry-After.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from seqflow.api.models import MAX_VALUE_BYTES, ErrorType, HttpSpec, JsonObject, KeyRef, Reason
from seqflow.api.values import ref_of
from seqflow.clock import Clock
from seqflow.engine import AttemptResult, RunHandler

BODY_START = 200  # characters of a refused response's body in the step's error
MAX_RETRY_AFTER = 3600.0  # seconds: a longer Retry-After is waited for this long
RETRIED = frozenset({429}) | frozenset(range(500, 600))
READ_CHUNK = 64 * 1024
BAD = ErrorType.EXCEPTION  # a request that could not be made as written

SecretReader = Callable[[str, str], Awaitable[JsonObject]]  # (namespace, name) -> the Secret


class HttpStepError(Exception):
    """Why an attempt's request was not made or not taken (retried unless `permanent`)."""

    def __init__(
        self, message: str, *, kind: ErrorType, permanent: bool = False, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.permanent = permanent
        self.reason = reason
        self.retry_after: float | None = None


@dataclass(frozen=True)
class AllowedHosts:
    """Hosts http steps may call: a name, or `*.` and a suffix, each with `:port` or any port."""

    patterns: tuple[str, ...]

    def admit(self, url: URL) -> bool:
        host = (url.host or "").lower().rstrip(".")
        for pattern in self.patterns:
            name, _, port = pattern.lower().partition(":")
            if port and int(port) != url.port:
                continue
            if host == name or (name.startswith("*.") and host.endswith(name[1:])):
                return True
        return False


class HttpCaller:
    """Makes the requests of http steps on one pooled session (closed with `close`)."""

    def __init__(self, *, allowed: AllowedHosts, secrets: SecretReader, clock: Clock) -> None:
        self._allowed = allowed
        self._secrets = secrets
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, action: RunHandler, *, namespace: str) -> AttemptResult:
        http = action.task.http
        assert http is not None
        try:
            output = await self._request(http, namespace=namespace, timeout=action.task.timeout_seconds)
        except HttpStepError as error:
            return AttemptResult(
                node=action.node,
                attempt=action.attempt,
                error=str(error),
                permanent=error.permanent,
                reason=error.reason,
                retry_after=error.retry_after,
                error_type=error.kind,
            )
        return AttemptResult(node=action.node, attempt=action.attempt, output=output)

    async def _request(self, http: HttpSpec, *, namespace: str, timeout: int) -> JsonObject:
        url = URL(http.url)
        what = f"{http.method} {http.url}"
        if url.scheme not in ("http", "https") or not url.host:
            raise HttpStepError(
                f"{what}: not an http:// or https:// URL with a host", kind=BAD, permanent=True
            )
        if not self._allowed.admit(url):
            raise HttpStepError(
                f"{what}: host {url.host}:{url.port} is not in SEQFLOW_HTTP_ALLOWED_HOSTS "
                f"({', '.join(self._allowed.patterns) or 'none'})",
                kind=BAD,
                permanent=True,
                reason=Reason.HOST_NOT_ALLOWED,
            )
        headers = {h.name: h.value or "" for h in http.headers or [] if h.secret_key_ref is None}
        for header in http.headers or []:
            if header.secret_key_ref is not None:
                headers[header.name] = await self._secret(namespace, header.secret_key_ref, what=what)
        session = self._session = self._session or aiohttp.ClientSession(trust_env=False)
        try:
            async with session.request(
                http.method,
                url,
                headers=headers,
                data=None if http.body is None else http.body.encode(),
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await _bounded(response, what=what)
                return self._taken(http, response, body, what=what)
        except TimeoutError:
            raise HttpStepError(f"{what}: no response within {timeout} s", kind=ErrorType.TIMEOUT) from None
        except aiohttp.ClientError as error:
            message = f"{what}: {type(error).__name__}: {error}"
            raise HttpStepError(message, kind=ErrorType.CONNECTION_ERROR) from None

    async def _secret(self, namespace: str, ref: KeyRef, *, what: str) -> str:
        where = f'{what}: header from Secret "{ref.name}" key "{ref.key}"'
        try:
            found = await self._secrets(namespace, ref.name)
        except Exception as error:  # not there (yet), not readable: the next attempt reads again
            raise HttpStepError(f"{where}: {type(error).__name__}: {error}", kind=BAD) from None
        encoded = (found.get("data") or {}).get(ref.key)
        if encoded is None:
            raise HttpStepError(f"{where}: the Secret has no such key", kind=BAD)
        try:
            return base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise HttpStepError(f"{where}: its value is not UTF-8 text", kind=BAD, permanent=True) from None

    def _taken(
        self, http: HttpSpec, response: aiohttp.ClientResponse, body: bytes, *, what: str
    ) -> JsonObject:
        status = response.status
        succeeded = status in http.success_codes if http.success_codes else 200 <= status < 300
        if succeeded:
            return _output(body, content_type=response.content_type)
        text = " ".join(body.decode(errors="replace").split())  # (on one line)
        start = text[:BODY_START] + ("..." if len(text) > BODY_START else "")
        error = HttpStepError(
            f"{what} answered {status} {response.reason or ''}".rstrip() + (f": {start}" if start else ""),
            kind=ErrorType.HTTP_STATUS,
            permanent=status not in RETRIED,
        )
        error.retry_after = self._retry_after(response.headers.get("Retry-After"))
        raise error

    def _retry_after(self, value: str | None) -> float | None:
        """The seconds a Retry-After asks for (a number of seconds or an HTTP date)."""
        if not value:
            return None
        if value.strip().isdigit():
            return min(float(value), MAX_RETRY_AFTER)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return min(max((when - self._clock.now()).total_seconds(), 0.0), MAX_RETRY_AFTER)


async def _bounded(response: aiohttp.ClientResponse, *, what: str) -> bytes:
    """The response's body, refused past the largest value a step may return."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > MAX_VALUE_BYTES:
            raise HttpStepError(
                f"{what}: the response is larger than the {MAX_VALUE_BYTES} bytes a step may return",
                kind=BAD,
                permanent=True,
                reason=Reason.OUTPUT_TOO_LARGE,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _output(body: bytes, *, content_type: str) -> JsonObject:
    """A JSON object as it is; any other JSON, or text, as `{body: ...}`; nothing as `{}`."""
    if not body:
        return {}
    text = body.decode(errors="replace")
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            value = json.loads(text)
        except ValueError:
            return {"body": text}
        if isinstance(value, dict) and ref_of(value) is None:
            return value
        return {"body": value}
    return {"body": text}
