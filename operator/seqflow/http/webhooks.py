"""Signed webhooks: `POST /hooks/{namespace}/{workflow}` starts a run of a Workflow that names a
Secret in `spec.webhook.secretRef`, for callers that hold no Kubernetes token.

The caller sends the input as the body, the Unix time in `X-Seqflow-Timestamp`, and in
`X-Seqflow-Signature` `sha256=` and the hex HMAC-SHA256 of `TIMESTAMP.BODY` keyed by the shared
secret. A time more than 5 minutes away, a wrong signature, a Workflow without a webhook, a
missing Secret, or a replay (the run is named from the signature, so a delivery sent again
finds the run it started): 401, without saying which.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from aiohttp import web

from seqflow.api.bodies import spec_of
from seqflow.api.manifests import workflow_run
from seqflow.api.models import MAX_INLINE_BYTES, WorkflowRef, WorkflowSpec, shortened_name
from seqflow.clock import Clock, SystemClock
from seqflow.cluster.kube import ApiError, Conflict, KubeApi
from seqflow.http.auth import CREATED_BY, HttpError, read_body
from seqflow.tracing import caller_annotations

WINDOW_SECONDS = 300
TIMESTAMP, SIGNATURE = "X-Seqflow-Timestamp", "X-Seqflow-Signature"


def signature(secret: bytes, *, timestamp: str, body: bytes) -> str:
    """The signature header's value for a delivery."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(self, *, api: KubeApi, clock: Clock | None = None) -> None:
        self._api = api
        self._clock = clock or SystemClock()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/{namespace}/{workflow}", self.deliver)

    async def deliver(self, request: web.Request) -> web.Response:
        namespace, workflow = request.match_info["namespace"], request.match_info["workflow"]
        body = await read_body(request, limit=MAX_INLINE_BYTES, what="the input")
        stamp, signed = request.headers.get(TIMESTAMP, ""), request.headers.get(SIGNATURE, "")
        secret = await self._secret(namespace, workflow)
        if secret is None or not self._genuine(secret, stamp=stamp, signed=signed, body=body):
            raise HttpError(401, "unauthorized")
        try:
            data = json.loads(body or b"{}")
        except ValueError as error:
            raise HttpError(400, f"the input is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise HttpError(400, "the input must be a JSON object")
        name = shortened_name(
            f"{workflow[:200]}-hook-{hashlib.sha256(signed.encode()).hexdigest()[:16]}", limit=253
        )
        run = workflow_run(
            workflow=WorkflowRef(name=workflow),
            input=data,
            metadata={
                "name": name,
                "annotations": {
                    CREATED_BY: "webhook",
                    **caller_annotations(request.headers.get("traceparent")),
                },
            },
        )
        try:
            await self._api.create_run(namespace, run)
        except Conflict:  # a replay: refused like any delivery that is not genuine
            raise HttpError(401, "unauthorized") from None
        return web.json_response(
            {"name": name, "namespace": namespace},
            status=201,
            headers={"Location": f"/api/v1/namespaces/{namespace}/runs/{name}"},
        )

    def _genuine(self, secret: bytes, *, stamp: str, signed: str, body: bytes) -> bool:
        try:
            age = abs(self._clock.now().timestamp() - int(stamp))
        except ValueError:
            return False
        expected = signature(secret, timestamp=stamp, body=body)
        return age <= WINDOW_SECONDS and hmac.compare_digest(expected, signed)

    async def _secret(self, namespace: str, workflow: str) -> bytes | None:
        """The Workflow's shared secret; None when it has no webhook or the Secret is missing."""
        try:
            body = await self._api.get_workflow(namespace, workflow)
            hook = WorkflowSpec.model_validate(spec_of(body)).webhook
            if hook is None:
                return None
            secret = await self._api.get_secret(namespace, hook.secret_ref.name)
            value = (secret.get("data") or {}).get(hook.secret_ref.key)
            return base64.b64decode(value) if value else None
        except (ApiError, ValueError, binascii.Error):
            return None
