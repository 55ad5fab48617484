"""Values by reference: the shape of a reference to a stored value, and the bytes a value is
stored and addressed as.

A value (a run's input, a step's output) larger than the inline threshold is stored in the
history store under the sha256 of its compact JSON, and wherever the value would stand (the
status, the activity log, the history rows) stands `{"ref": "sha256:<hex>", "size": <bytes>}`
instead. No value that seqflow takes in may have that shape itself (inputs, handler and Job
outputs, signal payloads are refused when they do), so every object of that shape is a
reference.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from seqflow.api.models import JsonObject

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
_DIGEST = re.compile(DIGEST_PATTERN)
REF_SHAPE = "an object of exactly the keys ref (sha256:<hex>) and size"


@dataclass(frozen=True)
class ValueRef:
    """A stored value: the sha256 of its compact JSON and that JSON's length in bytes."""

    digest: str
    size: int

    def wire(self) -> JsonObject:
        return {"ref": self.digest, "size": self.size}


def ref_of(value: Any) -> ValueRef | None:
    """The reference `value` is, or None when it is a value of its own."""
    if not isinstance(value, dict) or len(value) != 2:
        return None
    digest, size = value.get("ref"), value.get("size")
    if isinstance(digest, str) and _DIGEST.match(digest) and type(size) is int and size >= 0:
        return ValueRef(digest, size)
    return None


def digests_in(values: Iterable[Any]) -> set[str]:
    """The digests of the references among `values`."""
    return {ref.digest for value in values if (ref := ref_of(value)) is not None}


def encode(value: Any) -> bytes:
    """`value` as compact JSON: what is stored, hashed and measured."""
    return json.dumps(value, separators=(",", ":")).encode()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Encoded:
    """A value to store, and its compact JSON."""

    value: JsonObject
    data: bytes


def stored(value: JsonObject, *, inline_bytes: int) -> tuple[JsonObject, Encoded | None]:
    """What stands for `value` where it is kept: itself when it is a reference or small enough
    to stay inline (and None), else its reference and what to store under it."""
    if ref_of(value) is not None:
        return value, None
    data = encode(value)
    if len(data) <= inline_bytes:
        return value, None
    return ValueRef(digest_of(data), len(data)).wire(), Encoded(value, data)


def size_of(value: Any) -> int:
    """Bytes of `value` as compact JSON; a reference's, of the value it stands for."""
    ref = ref_of(value)
    return ref.size if ref is not None else len(encode(value))
