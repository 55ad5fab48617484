"""The http step's request against a small local HTTP server: the response's JSON object as the
output (other bodies as `{body}`), statuses retried or failed for good with the body's start,
Retry-After, redirects not followed, hosts outside the allow-list refused, headers from Secrets."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from yarl import URL

from seqflow.api.models import PinnedMember, RetryPolicy
from seqflow.engine import AttemptResult, RunHandler
from seqflow.executors.http import AllowedHosts, HttpCaller

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class FixedClock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0


async def no_secrets(namespace: str, name: str) -> dict[str, Any]:
    if name != "hooks":
        raise LookupError(f'secrets "{name}" not found')
    return {"data": {"token": base64.b64encode(b"Bearer s3cret").decode()}}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def call(
    handler: Handler, *, allowed: tuple[str, ...] = ("127.0.0.1",), path: str = "/x", **http: Any
) -> tuple[AttemptResult, list[tuple[str, dict[str, str], str]]]:
    seen: list[tuple[str, dict[str, str], str]] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, dict(request.headers), await request.text()))
        return await handler(request)

    async def main() -> AttemptResult:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", recording)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        caller = HttpCaller(allowed=AllowedHosts(allowed), secrets=no_secrets, clock=FixedClock())
        task = PinnedMember.model_validate(
            {
                "name": "Call",
                "http": {"url": f"http://127.0.0.1:{port}{path}", **http},
                "retry": RetryPolicy(),
                "timeoutSeconds": 1,
            }
        )
        try:
            return await caller.call(
                RunHandler(node="Call", task=task, attempt=1, input={}), namespace="shop"
            )
        finally:
            await caller.close()
            await runner.cleanup()

    return asyncio.run(main()), seen


def answer(status: int = 200, **kw: Any) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if "json" in kw:
            return web.json_response(kw["json"], status=status)
        return web.Response(status=status, **kw)

    return handler


@pytest.mark.parametrize(
    ("response", "output"),
    [
        (answer(json={"id": 7, "ok": True}), {"id": 7, "ok": True}),
        (answer(json=[1, 2]), {"body": [1, 2]}),
        (answer(text="plain words"), {"body": "plain words"}),
        (answer(status=204), {}),
        (
            answer(json={"ref": "sha256:" + "0" * 64, "size": 3}),
            {"body": {"ref": "sha256:" + "0" * 64, "size": 3}},
        ),
    ],
)
def test_the_responses_json_object_is_the_output_and_any_other_body_is_under_body(response, output):
    result, _ = call(response)
    assert (result.error, result.output) == (None, output)


def test_method_headers_from_values_and_secrets_and_body_are_sent():
    result, ((method, headers, body),) = call(
        answer(json={}),
        method="POST",
        headers=[
            {"name": "Content-Type", "value": "application/json"},
            {"name": "Authorization", "secretKeyRef": {"name": "hooks", "key": "token"}},
        ],
        body='{"n":1}',
    )
    assert result.succeeded
    assert (method, headers["Authorization"], body) == (
        "POST",
        "Bearer s3cret",
        '{"n":1}',
    )


@pytest.mark.parametrize(
    ("response", "permanent", "message"),
    [
        (answer(404, text="no order 12 here"), True, "answered 404 Not Found: no order 12 here"),
        (answer(503, text="later"), False, "answered 503 Service Unavailable: later"),
        (answer(429), False, "answered 429 Too Many Requests"),
        (answer(400, text="x" * 300), True, "answered 400 Bad Request: " + "x" * 200 + "..."),
        (answer(302, headers={"Location": "http://example.com/"}), True, "answered 302 Found"),
    ],
)
def test_5xx_and_429_are_retried_and_any_other_status_fails_for_good_with_the_bodys_start(
    response, permanent, message
):
    result, _ = call(response)
    assert result.error is not None and result.error.endswith(message), result.error
    assert result.permanent is permanent


def test_success_codes_replace_the_2xx_default():
    assert call(answer(404, json={"gone": True}), successCodes=[404])[0].output == {"gone": True}
    assert call(answer(200), successCodes=[201])[0].permanent


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ((NOW + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT"), 90.0),
        ("99999", 3600.0),
    ],
)
def test_retry_after_is_passed_on_in_seconds(header: str, seconds: float):
    result, _ = call(answer(503, headers={"Retry-After": header}))
    assert (result.permanent, result.retry_after) == (False, seconds)


def test_a_host_outside_the_allow_list_is_refused_without_a_request():
    result, seen = call(answer(json={}), allowed=("*.svc",))
    assert (result.permanent, result.reason, seen) == (True, "HostNotAllowed", [])
    assert "is not in SEQFLOW_HTTP_ALLOWED_HOSTS (*.svc)" in (result.error or "")


def test_a_missing_secret_is_retried_and_says_which():
    result, seen = call(answer(), headers=[{"name": "X-Key", "secretKeyRef": {"name": "gone", "key": "k"}}])
    assert (result.permanent, seen) == (False, [])
    assert 'header from Secret "gone" key "k": LookupError' in (result.error or "")


def test_no_answer_within_the_timeout_is_retried():
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.5)
        return web.Response()

    result, _ = call(slow)
    assert result.permanent is False and (result.error or "").endswith("/x: no response within 1 s")


@pytest.mark.parametrize(
    ("patterns", "url", "admitted"),
    [
        (("*.svc",), "http://orders.shop.svc/x", True),
        (("*.svc",), "http://svc/x", False),
        (("*.svc",), "http://orders.shop.svc.evil.com/x", False),
        (("*.svc.cluster.local",), "https://a.b.svc.cluster.local./x", True),
        (("127.0.0.1:8080",), "http://127.0.0.1:8080/x", True),
        (("127.0.0.1:8080",), "http://127.0.0.1:8081/x", False),
        (("api.example.com:443",), "https://API.example.com/x", True),
        ((), "http://a.svc/", False),
    ],
)
def test_allowed_hosts(patterns: tuple[str, ...], url: str, admitted: bool):
    assert AllowedHosts(patterns).admit(URL(url)) is admitted
