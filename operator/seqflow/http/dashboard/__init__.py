"""The web dashboard: a page and its scripts and styles, served by the operator's HTTP server.

The page is plain HTML, CSS and JavaScript modules, committed as written (no build step, no Node
toolchain): it reads and acts only through the HTTP API, with the bearer token the user gave
it, kept in the tab's session storage. Every answer carries a Content-Security-Policy that
allows scripts, styles and requests from this origin only, and nothing inline.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class Asset:
    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.content_type = CONTENT_TYPES[path.suffix]
        self.etag = f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'


class Dashboard:
    """Serves `/` (the page) and `/ui/<file>` (its assets), read once at start."""

    def __init__(self, directory: Path = STATIC) -> None:
        self._assets = {
            path.name: Asset(path) for path in directory.iterdir() if path.suffix in CONTENT_TYPES
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.page)
        app.router.add_get("/ui/{name}", self.asset)

    async def page(self, request: web.Request) -> web.Response:
        return self._answer(request, self._assets["index.html"])

    async def asset(self, request: web.Request) -> web.Response:
        found = self._assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(text="no such file", headers=SECURITY_HEADERS)
        return self._answer(request, found)

    @staticmethod
    def _answer(request: web.Request, asset: Asset) -> web.Response:
        headers = {**SECURITY_HEADERS, "ETag": asset.etag}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = asset.content_type
        return web.Response(body=asset.body, content_type=None, headers=headers)
