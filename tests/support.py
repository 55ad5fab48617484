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

REPO = Path(__file__).resolve().parent.parent
OPERATOR_USER = "seqflow-operator"  # the e2e operators authenticate as this user, bound to the chart's RBAC
POD_STEPS_USER = "seqflow-pods-operator"  # the same, bound to the chart's RBAC for jobStepsAs=Pod
MANAGED_JOBS_USER = "seqflow-managed-operator"  # the same, for jobStepsAs=ManagedJob
REPLICAS_USER = "seqflow-replicas-operator"  # the same, bound to the chart's RBAC for buckets > 0


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

    def require_kwok(self) -> None:
        """Job tests decide a pod's fate through kwok stages (testenv/kwok-stages.yaml)."""
        if self.control_plane is None:
            pytest.skip("Job tests need the local control plane's kwok node")


# Chromium headless on a machine without a network beyond loopback, as root.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


class Runs:
    """Reads WorkflowRuns through the API (the `kubernetes` client), as a user's tool would."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config

        self._api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._api.get_namespaced_custom_object(
            "seqflow.io", "v1alpha1", namespace, "workflowruns", name
        )

    def watch(self, namespace: str, name: str, *, until, timeout: float) -> list[dict[str, Any]]:
        """Every status the run goes through, until `until(status)` holds; all of them."""
        from kubernetes import watch

        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stream = watch.Watch().stream(
                self._api.list_namespaced_custom_object,
                "seqflow.io",
                "v1alpha1",
                namespace,
                "workflowruns",
                field_selector=f"metadata.name={name}",
                timeout_seconds=max(1, int(deadline - time.monotonic())),
            )
            for event in stream:
                status = event["object"].get("status") or {}
                if not seen or seen[-1] != status:
                    seen.append(status)
                if until(status):
                    return seen
        raise AssertionError(
            f"run {namespace}/{name} did not get there in {timeout} s; last status: {seen[-1:]}"
        )


def condition(status: dict[str, Any], type_: str = "Succeeded") -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def workflow(name: str, tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "seqflow.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": tasks, **spec},
    }


def workflow_run(name: str, workflow_name: str, input: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "seqflow.io/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow_name}, "input": input or {}},
    }
