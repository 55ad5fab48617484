"""End to end: what GitOps tools make of runs in each phase. Argo CD's health check (the Lua
script shipped with the chart, run in a real Lua 5.1 runtime like Argo CD's) and kstatus (the
library behind Flux health checks, built from its module) read the objects the operator wrote."""

from __future__ import annotations

import json
import subprocess

import pytest
from lupa import lua51

from testenv import ensure_binaries
from tests.support import REPO, Cluster, Runs, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]
HEALTH_LUA = REPO / "charts" / "seqflow" / "health" / "workflowrun.lua"

EXPECTED = {  # run: (phase, Argo CD health, kstatus)
    "running": ("Running", "Progressing", "InProgress"),
    "suspended": ("Suspended", "Suspended", "InProgress"),  # not done yet: Ready is False
    "succeeded": ("Succeeded", "Healthy", "Current"),
    "failed": ("Failed", "Degraded", "Failed"),
    "cancelled": ("Cancelled", "Degraded", "Failed"),
}


def argocd_health(run: dict) -> dict:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval(f"function(obj) {HEALTH_LUA.read_text()} end")
    result = check(lua.table_from(run, recursive=True))
    return {"status": result["status"], "message": result["message"]}


def kstatus(runs: list[dict]) -> dict[str, str]:
    done = subprocess.run(
        [str(ensure_binaries().kstatus)], input=json.dumps(runs), capture_output=True, text=True, check=True
    )
    return {line.split("\t")[0]: line.split("\t")[1] for line in done.stdout.splitlines()}


def test_argocd_and_kstatus_read_every_phase(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow("one", [{"name": "Only", "handler": "test.step"}]), namespace=namespace)
    cluster.apply(
        workflow("two", [{"name": n, "handler": "test.step"} for n in ("A", "B")]), namespace=namespace
    )
    cluster.apply(workflow("bad", [{"name": "Lookup", "handler": "test.permanent"}]), namespace=namespace)
    cluster.apply(workflow_run("running", "one", {"sleep": 120}), namespace=namespace)
    cluster.apply(workflow_run("succeeded", "one"), namespace=namespace)
    cluster.apply(workflow_run("failed", "bad"), namespace=namespace)
    suspended = workflow_run("suspended", "two")
    suspended["spec"]["suspend"] = True
    cluster.apply(suspended, namespace=namespace)
    cancelled = workflow_run("cancelled", "one", {"sleep": 120})
    cluster.apply(cancelled, namespace=namespace)
    runs.watch(namespace, "cancelled", until=lambda s: s.get("current") == ["Only"], timeout=30)
    cancelled["spec"]["cancel"] = True
    cluster.apply(cancelled, namespace=namespace)  # a GitOps commit sets the field

    for name, (phase, _, _) in EXPECTED.items():
        runs.watch(namespace, name, until=lambda s, phase=phase: s.get("phase") == phase, timeout=60)
    cluster.kubectl(
        "wait", "-n", namespace, "workflowrun/succeeded", "--for=condition=Ready", "--timeout=30s"
    )

    objects = {name: runs.get(namespace, name) for name in EXPECTED}
    computed = kstatus(list(objects.values()))
    for name, (_, health, status) in EXPECTED.items():
        assert argocd_health(objects[name])["status"] == health, (name, objects[name]["status"])
        assert computed[name] == status, (name, objects[name]["status"]["conditions"])
    assert "permanent error" in argocd_health(objects["failed"])["message"]
    assert argocd_health({"metadata": {"name": "new"}, "spec": {}})["status"] == "Progressing"
