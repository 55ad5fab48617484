"""The endpoints a Job step's pod uses for data too large for its manifest or its termination
message (seqflow.executors.attempts), authorized by the attempt's token alone:

    GET /api/v1/attempts/{token}/input    the attempt's input (its JSON)
    PUT /api/v1/attempts/{token}/output   the attempt's output, a JSON object: stored, and named
                                          on the attempt's Job (or pod), where its end is read
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from seqflow.api.bodies import version_of
from seqflow.api.models import JsonObject
from seqflow.api.values import REF_SHAPE, Encoded, ValueRef, digest_of, encode, ref_of
from seqflow.cluster.kube import Conflict, KubeApi, NotFound
from seqflow.executors.attempts import OUTPUT_ANNOTATION, AttemptClaim, AttemptLinks
from seqflow.executors.jobs import owned_by
from seqflow.http.auth import HttpError, read_body
from seqflow.runs.values import Values

logger = logging.getLogger(__name__)
ANNOTATE_ATTEMPTS = 5


class AttemptApi:
    def __init__(self, *, api: KubeApi, values: Values, links: AttemptLinks, max_value_bytes: int) -> None:
        self._api = api
        self._values = values
        self._links = links
        self._max = max_value_bytes

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/attempts/{token}/input", self.input)
        app.router.add_put("/api/v1/attempts/{token}/output", self.output)

    async def input(self, request: web.Request) -> web.Response:
        claim = self._claim(request)
        if claim.input is None:
            raise HttpError(404, "this attempt's input is in its manifest (SEQFLOW_INPUT)")
        found = await self._values.read_encoded(claim.namespace, claim.input)
        if found is None:
            raise HttpError(404, f"the input {claim.input} is no longer stored")
        return web.Response(body=found, content_type="application/json")

    async def output(self, request: web.Request) -> web.Response:
        claim = self._claim(request)
        body = await read_body(request, limit=self._max, what="the output")
        try:
            value = json.loads(body)
        except ValueError as error:
            raise HttpError(400, f"the output is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise HttpError(400, f"the output must be a JSON object, got {type(value).__name__}")
        if ref_of(value) is not None:
            raise HttpError(422, f"the output may not be {REF_SHAPE}: that is a stored value's reference")
        data = encode(value)
        ref = ValueRef(digest_of(data), len(data))
        await self._values.upload(claim.namespace, ref.digest, Encoded(value, data), run_uid=claim.run_uid)
        await self._name_on_attempt(claim, ref)
        logger.info(
            "output of %s/%s step %s attempt %d sent (%d bytes)",
            claim.namespace,
            claim.run,
            claim.node,
            claim.attempt,
            ref.size,
        )
        return web.json_response(ref.wire(), status=201)

    def _claim(self, request: web.Request) -> AttemptClaim:
        claim = self._links.verify(request.match_info["token"])
        if claim is None:
            raise HttpError(403, "this link is not one the operator made for an attempt")
        return claim

    async def _name_on_attempt(self, claim: AttemptClaim, ref: ValueRef) -> None:
        """Annotate the attempt's Job (or its pod of its own) with the stored output, if it is
        that run's (guarded by its resourceVersion: the Job changes while it runs)."""
        annotation = {OUTPUT_ANNOTATION: json.dumps(ref.wire(), separators=(",", ":"))}
        for _ in range(ANNOTATE_ATTEMPTS):
            found = await self._attempt_object(claim)
            if found is None:
                break
            patch = self._api.patch_job if found.get("kind") == "Job" else self._api.patch_pod
            metadata = {"annotations": annotation, "resourceVersion": version_of(found)}
            try:
                await patch(claim.namespace, claim.job, {"metadata": metadata})
            except Conflict:
                continue
            return
        raise HttpError(409, f"the attempt's Job {claim.job} of run {claim.run} is gone or kept changing")

    async def _attempt_object(self, claim: AttemptClaim) -> JsonObject | None:
        for get in (self._api.get_job, self._api.get_pod):
            try:
                found = await get(claim.namespace, claim.job)
            except NotFound:
                continue
            return found if owned_by(found, claim.run_uid) else None
        return None
