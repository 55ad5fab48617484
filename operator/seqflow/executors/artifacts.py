"""The object store of steps' files (artifacts), through obstore: presigned links for Job
steps' pods (which never hold credentials), the files of in-process steps fetched and kept
directly, a file's bytes for the HTTP API's download, and the deletion of a run's files with
its history.

A link lets its holder do one thing to one key (GET an input, PUT an output) until it expires
(SEQFLOW_ARTIFACTS_LINK_SECONDS); the operator holds the only credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Literal

import obstore
from obstore.store import S3Store

from seqflow.api.artifacts import run_prefix
from seqflow.settings import Settings

DOWNLOAD_CHUNK = 1024 * 1024


class ArtifactStore:
    def __init__(self, store: S3Store, *, link_seconds: int, image: str) -> None:
        self._store = store
        self._expires = timedelta(seconds=link_seconds)
        self.image = image  # the seqflow image, whose containers move a Job step's files ("": none)

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore | None:
        """The store the settings name, or None when they name none."""
        if not settings.artifacts_url:
            return None
        store = S3Store(
            settings.artifacts_bucket,
            endpoint=settings.artifacts_url.rstrip("/"),
            access_key_id=settings.artifacts_access_key_id,
            secret_access_key=settings.artifacts_secret_access_key.get_secret_value(),
            region=settings.artifacts_region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": settings.artifacts_url.startswith("http://")},
        )
        return cls(store, link_seconds=settings.artifacts_link_seconds, image=settings.artifacts_image)

    async def links(self, method: Literal["GET", "PUT"], keys: Sequence[str]) -> list[str]:
        """Presigned URLs (signed here, no request made) to GET or PUT each key."""
        if not keys:
            return []
        return list(await obstore.sign_async(self._store, method, list(keys), self._expires))

    async def download(self, key: str, path: Path) -> None:
        """Write a file of the store to `path` (an in-process step's input)."""
        _, chunks = await self.read(key)
        with path.open("wb") as out:
            async for chunk in chunks:
                await asyncio.to_thread(out.write, chunk)

    async def upload(self, path: Path, key: str) -> tuple[int, str]:
        """Keep a file (an in-process step's output) under `key`; its size and sha256."""
        size, digest = await asyncio.to_thread(_measured, path)
        await obstore.put_async(self._store, key, path)
        return size, digest

    async def read(self, key: str) -> tuple[int, AsyncIterator[bytes]]:
        """A file's size and its bytes; FileNotFoundError when it is not there."""
        found = await obstore.get_async(self._store, key)
        return found.meta["size"], _chunks(found.stream(min_chunk_size=DOWNLOAD_CHUNK))

    async def delete_run(self, *, namespace: str, run_uid: str) -> int:
        """Delete every file of one run; how many there were."""
        keys = [
            meta["path"]
            async for batch in obstore.list(
                self._store, prefix=run_prefix(namespace=namespace, run_uid=run_uid)
            )
            for meta in batch
        ]
        if keys:
            await obstore.delete_async(self._store, keys)
        return len(keys)


def _measured(path: Path) -> tuple[int, str]:
    with path.open("rb") as file:
        return path.stat().st_size, hashlib.file_digest(file, "sha256").hexdigest()


async def _chunks(stream: obstore.BytesStream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield bytes(chunk)
