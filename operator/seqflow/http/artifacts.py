"""The download of a Job step's file (artifact) from the object store, for the dashboard and
`curl`, under the run's RBAC (get workflowruns in its namespace):

    GET /api/v1/namespaces/{namespace}/artifacts/{key}   the file whose key is NAMESPACE/KEY

A run's status and history name each file by its key (`artifacts` of a node or attempt).
"""

from __future__ import annotations

import logging

from aiohttp import web

from seqflow.executors.artifacts import ArtifactStore
from seqflow.http.auth import Authorizer, HttpError, authorize

logger = logging.getLogger(__name__)


class ArtifactApi:
    def __init__(self, *, artifacts: ArtifactStore | None, authorizer: Authorizer | None) -> None:
        self._artifacts = artifacts
        self._authorizer = authorizer

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/namespaces/{namespace}/artifacts/{key:.+}", self.download)

    async def download(self, request: web.Request) -> web.StreamResponse:
        namespace, rest = request.match_info["namespace"], request.match_info["key"]
        await authorize(self._authorizer, request, verb="get", namespace=namespace)
        if self._artifacts is None:
            raise HttpError(404, "this operator keeps no files (SEQFLOW_ARTIFACTS_URL is unset)")
        if ".." in rest.split("/"):
            raise HttpError(400, "a file's key has no '..' in it")
        key = f"{namespace}/{rest}"
        try:
            size, chunks = await self._artifacts.read(key)
        except FileNotFoundError:
            raise HttpError(404, f"no file {key} (deleted with its run's history, or never kept)") from None
        except Exception as error:  # obstore's errors: the store is away or refuses
            logger.warning("artifact %s could not be read: %s", key, error)
            raise HttpError(503, f"the object store did not answer for {key}") from error
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{rest.rsplit("/", 1)[-1]}"',
            }
        )
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response
