"""The API client's error handling against a small local HTTP server playing the API server:
typed errors, 429 answers waited out, refused credentials re-read once, the field manager."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from kubernetes import client as k8s_client

from seqflow.cluster.kube import (
    ApiError,
    Conflict,
    EntityTooLarge,
    Gone,
    Invalid,
    KubeApi,
    NotFound,
    TooManyRequests,
    Unauthorized,
    api_error,
)


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        (404, "not found", NotFound),
        (409, "the object has been modified", Conflict),
        (410, "too old resource version", Gone),
        (413, "request entity too large", EntityTooLarge),
        (500, "etcdserver: request is too large", EntityTooLarge),
        (422, "spec.template: Required value", Invalid),
        (400, "bad request", Invalid),
        (429, "too many requests", TooManyRequests),
        (503, "unavailable", ApiError),
    ],
)
def test_answers_map_to_typed_errors(status: int, message: str, kind: type[ApiError]):
    error = api_error(status, message)
    assert type(error) is kind and error.status == status and error.message == message


Handler = Callable[[web.Request], Awaitable[web.Response]]


def serve_and_call(
    handler: Handler, call: Callable[[KubeApi], Awaitable[object]], *, qps: float = 0.0, burst: int = 0
) -> object:
    async def main() -> object:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        configuration = k8s_client.Configuration(host=f"http://127.0.0.1:{port}")
        configuration.api_key = {"authorization": "Bearer t0"}
        api = KubeApi(configuration, connections=2, qps=qps, burst=burst)
        try:
            return await call(api)
        finally:
            await api.close()
            await runner.cleanup()

    return asyncio.run(main())


def test_too_many_requests_are_waited_out_as_retry_after_says():
    seen: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(asyncio.get_running_loop().time())
        if len(seen) < 3:
            return web.json_response({"message": "slow down"}, status=429, headers={"Retry-After": "0.2"})
        return web.json_response({"ok": True})

    assert serve_and_call(handler, lambda api: api.get_run("ns", "r")) == {"ok": True}
    assert len(seen) == 3 and seen[1] - seen[0] >= 0.2 and seen[2] - seen[1] >= 0.2


def test_throttling_that_does_not_end_raises_too_many_requests():
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"message": "slow down"}, status=429, headers={"Retry-After": "0"})

    with pytest.raises(TooManyRequests):
        serve_and_call(handler, lambda api: api.get_run("ns", "r"))


def test_refused_credentials_are_read_again_once():
    tokens: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        tokens.append(request.headers["Authorization"])
        return web.json_response({"message": "Unauthorized"}, status=401)

    with pytest.raises(Unauthorized):
        serve_and_call(handler, lambda api: api.get_run("ns", "r"))
    assert tokens == ["Bearer t0", "Bearer t0"]  # one more try, with the credentials re-read


def test_writes_name_seqflow_as_their_field_manager():
    queries: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        queries.append(dict(request.query))
        return web.json_response({})

    async def calls(api: KubeApi) -> None:
        await api.patch_run_status("ns", "r", {"status": {}})
        await api.create_job("ns", {"metadata": {}})
        await api.get_run("ns", "r")

    serve_and_call(handler, calls)
    assert queries == [{"fieldManager": "seqflow"}, {"fieldManager": "seqflow"}, {}]


def test_requests_keep_to_the_qps_after_a_burst():
    seen: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(asyncio.get_running_loop().time())
        return web.json_response({})

    async def calls(api: KubeApi) -> None:
        await asyncio.gather(*(api.get_run("ns", f"r{i}") for i in range(14)))

    serve_and_call(handler, calls, qps=20, burst=4)
    assert len(seen) == 14
    # 4 at once, then 20 per second: the other 10 take about half a second (the upper bounds
    # leave room for a loaded machine; the lower one is the limit)
    assert seen[3] - seen[0] < 0.3 and 0.4 <= seen[-1] - seen[0] < 3.0
