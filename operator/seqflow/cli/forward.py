"""The operator's HTTP API from the user's machine: `kubectl port-forward` to its Service, and
the kubeconfig's bearer token to call it with (the API checks it as the API server would)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

from kubernetes import client

if TYPE_CHECKING:
    from seqflow.cli.plugin import Runs


class ForwardError(Exception):
    """The port-forward could not be made, or ended, in one line."""


class Forward:
    """A running `kubectl port-forward`, at `address` (http://127.0.0.1:PORT/)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self.address = _address(process)

    def wait(self) -> NoReturn:
        """Until kubectl ends, then a ForwardError saying why."""
        self._process.wait()
        assert self._process.stderr is not None
        raise ForwardError(f"the port-forward ended: {self._process.stderr.read().strip()}")


@contextlib.contextmanager
def forwarded(runs: Runs, *, namespace: str, service: str, port: int = 0) -> Iterator[Forward]:
    """A port-forward to the operator's Service while inside."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ForwardError(
            "kubectl is not on PATH (the operator's API is reached through kubectl port-forward)"
        )
    where = [f"--kubeconfig={runs.kubeconfig}"] if runs.kubeconfig else []
    where += [f"--context={runs.context}"] if runs.context else []
    forward = subprocess.Popen(
        [kubectl, *where, "port-forward", "-n", namespace, f"svc/{service}", f"{port}:http"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield Forward(forward)
    finally:
        forward.terminate()
        forward.wait()


def _address(forward: subprocess.Popen[str]) -> str:
    """The local address once kubectl says it forwards, or a ForwardError with why not."""
    assert forward.stdout is not None and forward.stderr is not None
    for line in forward.stdout:
        found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
        if found:  # kubectl goes on writing a line per connection: keep reading them
            threading.Thread(target=forward.stdout.read, daemon=True).start()
            return f"http://127.0.0.1:{found.group(1)}/"
    forward.wait()
    raise ForwardError(f"kubectl port-forward failed: {forward.stderr.read().strip()}")


def bearer_token() -> str:
    """The loaded kubeconfig's bearer token (static, OIDC or from an exec plugin), or ""."""
    configuration = client.Configuration.get_default_copy()
    bearer = configuration.get_api_key_with_prefix("BearerToken") or ""
    return bearer.removeprefix("Bearer ").strip()
