"""Helpers shared by the integration and e2e tests: a cluster handle and polling."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testenv import ControlPlane


@dataclass
class Cluster:
    """A reachable cluster and the kubectl to talk to it."""

    kubeconfig: Path
    kubectl_path: str
    control_plane: ControlPlane | None  # None when an existing cluster is used

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        kubeconfig = self.kubeconfig_for(user) if user else self.kubeconfig
        done = subprocess.run(
            [self.kubectl_path, f"--kubeconfig={kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
        return done

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, manifest: str | dict, *, namespace: str, check: bool = True):
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self.kubectl("apply", "-n", namespace, "-f", "-", input=text, check=check)

    def kubeconfig_for(self, user: str) -> Path:
        if self.control_plane is None:
            pytest.skip("token users exist only on the local control plane")
        return self.control_plane.kubeconfig_for(user)


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate()` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
