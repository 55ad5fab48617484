"""Moving a Job step's files in its pod: `python -m seqflow artifacts fetch|keep`, run from the
seqflow image by the containers seqflow adds to the step's pod (seqflow.executors.jobs).

Both read SEQFLOW_ARTIFACTS, a JSON list of [name, URL] pairs of presigned object store URLs,
and SEQFLOW_ARTIFACTS_DIR, the directory the task container shares. `fetch` (an init container)
downloads each input to its file before the task starts; exit code 1 and the reason in its
termination message when one cannot be. `keep` (a sidecar) waits until the kubelet stops it,
which it does once the task container has ended, then uploads each output file and writes what
it kept, what was missing and what failed in its termination message (`KeptReport`; the
message goes to SEQFLOW_OUTPUT_PATH when set, as the task entrypoint's does).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from seqflow.api.artifacts import KeptFile, KeptReport

TRANSFER_TIMEOUT_SECONDS = 300
CHUNK = 1024 * 1024
TERMINATION_LOG = "/dev/termination-log"


class _Hashing:
    """A file read for an upload, hashed and counted on the way."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def _files(environ: dict[str, str]) -> tuple[Path, list[tuple[str, str]]]:
    directory = Path(environ.get("SEQFLOW_ARTIFACTS_DIR", "/seqflow/artifacts"))
    return directory, [
        (str(name), str(url)) for name, url in json.loads(environ.get("SEQFLOW_ARTIFACTS", "[]"))
    ]


def _why(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.read()[:300].decode(errors='replace')}"
    return f"{type(error).__name__}: {error}"


def fetch(environ: dict[str, str]) -> int:
    """Download every input file; 0 when all are there."""
    directory, files = _files(environ)
    message = _message_path(environ)
    for name, url in files:
        part = directory / f".{name}.part"
        try:
            with (
                urllib.request.urlopen(url, timeout=TRANSFER_TIMEOUT_SECONDS) as response,
                part.open("wb") as out,
            ):
                while chunk := response.read(CHUNK):
                    out.write(chunk)
            part.rename(directory / name)
        except (OSError, ValueError) as error:
            text = f'input artifact "{name}" could not be fetched: {_why(error)}'
            message.write_text(text)
            print(text, file=sys.stderr)
            return 1
        print(f"fetched {name} ({(directory / name).stat().st_size} bytes)")
    return 0


def keep_files(environ: dict[str, str]) -> KeptReport:
    """Upload every output file that is there."""
    directory, files = _files(environ)
    kept: list[KeptFile] = []
    missing: list[str] = []
    for name, url in files:
        path = directory / name
        if not path.is_file():
            missing.append(name)
            continue
        try:
            with path.open("rb") as file:
                body = _Hashing(file)
                request = urllib.request.Request(url, data=body, method="PUT")
                request.add_header("Content-Length", str(path.stat().st_size))
                request.add_header("Content-Type", "application/octet-stream")
                with urllib.request.urlopen(request, timeout=TRANSFER_TIMEOUT_SECONDS):
                    pass
        except (OSError, ValueError) as error:
            return KeptReport(
                kept=tuple(kept), error=f'output artifact "{name}" could not be kept: {_why(error)}'
            )
        kept.append(KeptFile(name=name, size=body.size, sha256=body.sha256.hexdigest()))
        print(f"kept {name} ({body.size} bytes)")
    return KeptReport(kept=tuple(kept), missing=tuple(missing))


def keep(environ: dict[str, str]) -> int:
    """Wait for SIGTERM (the task container has ended), then keep the output files."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    print("waiting for the task to end", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    _message_path(environ).write_text(keep_files(environ).to_message())
    return 0


def _message_path(environ: dict[str, str]) -> Path:
    return Path(environ.get("SEQFLOW_OUTPUT_PATH", TERMINATION_LOG))


def main(verb: str) -> None:
    environ = dict(os.environ)
    sys.exit(fetch(environ) if verb == "fetch" else keep(environ))
