"""The webhook signature check: a table of deliveries and whether each is genuine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from seqflow.http.webhooks import WINDOW_SECONDS, Webhooks, signature
from tests.clocks import FixedClock

SECRET, BODY, NOW = b"shared", b'{"order": 1}', 1_800_000_000


@pytest.mark.parametrize(
    ("stamp", "signed", "genuine"),
    [
        (str(NOW), signature(SECRET, timestamp=str(NOW), body=BODY), True),
        (str(NOW - WINDOW_SECONDS), signature(SECRET, timestamp=str(NOW - WINDOW_SECONDS), body=BODY), True),
        (
            str(NOW - WINDOW_SECONDS - 1),
            signature(SECRET, timestamp=str(NOW - WINDOW_SECONDS - 1), body=BODY),
            False,
        ),
        (
            str(NOW + WINDOW_SECONDS + 1),
            signature(SECRET, timestamp=str(NOW + WINDOW_SECONDS + 1), body=BODY),
            False,
        ),
        (str(NOW), signature(b"other", timestamp=str(NOW), body=BODY), False),
        (str(NOW), signature(SECRET, timestamp=str(NOW), body=b"{}"), False),  # signed another body
        (str(NOW + 1), signature(SECRET, timestamp=str(NOW), body=BODY), False),  # another time
        ("yesterday", signature(SECRET, timestamp="yesterday", body=BODY), False),
        (str(NOW), "", False),
    ],
)
def test_only_a_recent_delivery_signed_with_the_secret_is_genuine(stamp, signed, genuine):
    hooks = Webhooks(api=None, clock=FixedClock(datetime.fromtimestamp(NOW, UTC)))  # type: ignore[arg-type]
    assert hooks._genuine(SECRET, stamp=stamp, signed=signed, body=BODY) is genuine
