"""Per-attempt links of Job steps: where an attempt's pod fetches an input too large to pass in
its manifest, and sends an output too large for its termination message, on the operator's
HTTP API (SEQFLOW_API_URL).

Each link carries a token that names the attempt (namespace, run, step, attempt, and the input
it may read) signed with HMAC-SHA256 under the operator's key: it lets its holder read that
attempt's input and write that attempt's output, and nothing else. Any image can use them with
`curl -fsS "$SEQFLOW_INPUT_URL"` and `curl -fsS -T output.json "$SEQFLOW_OUTPUT_URL"`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

OUTPUT_ANNOTATION = "seqflow.io/output"  # on the attempt's Job (or pod): its stored output's reference


@dataclass(frozen=True)
class AttemptClaim:
    """What a token lets its holder do: read `input` (a digest, if any) and write the output of
    one attempt."""

    namespace: str
    run: str
    run_uid: str
    node: str
    attempt: int
    job: str  # the attempt's Job (or pod) by name
    input: str | None = None


@dataclass(frozen=True)
class AttemptLinks:
    api_url: str  # the operator's HTTP API as the pods reach it
    key: bytes

    def token(self, claim: AttemptClaim) -> str:
        payload = json.dumps(
            [claim.namespace, claim.run, claim.run_uid, claim.node, claim.attempt, claim.job, claim.input],
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def input_url(self, token: str) -> str:
        return f"{self.api_url.rstrip('/')}/api/v1/attempts/{token}/input"

    def output_url(self, token: str) -> str:
        return f"{self.api_url.rstrip('/')}/api/v1/attempts/{token}/output"

    def verify(self, token: str) -> AttemptClaim | None:
        """The claim of a token this operator signed, or None."""
        payload_part, _, signature_part = token.partition(".")
        try:
            payload, signature = _unb64(payload_part), _unb64(signature_part)
            if not hmac.compare_digest(signature, self._sign(payload)):
                return None
            namespace, run, uid, node, attempt, job, input = json.loads(payload)
        except (ValueError, binascii.Error, TypeError):
            return None
        return AttemptClaim(
            namespace=namespace, run=run, run_uid=uid, node=node, attempt=attempt, job=job, input=input
        )

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self.key, payload, hashlib.sha256).digest()


def derived_key(secret: str) -> bytes:
    """A signing key from a secret every replica shares (the database URL, unless one is set)."""
    return hashlib.sha256(b"seqflow attempt links\0" + secret.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
