"""End to end: Workflow revisions on the real API server (ControllerRevisions, runs pinned to one,
the latest Ready one for runs that name none, pruning, the plugin's revisions/diff/rollback) and
outputSchema."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.e2e.test_job_tasks import wait_phase
from tests.e2e.test_plugin import plugin
from tests.support import Cluster, Runs, condition, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def steps(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "handler": "test.step"} for n in names]


def pinned(
    name: str, workflow_name: str, revision: int, input: dict[str, Any] | None = None
) -> dict[str, Any]:
    run = workflow_run(name, workflow_name, input)
    run["spec"]["workflowRef"]["revision"] = revision
    return run


def at_revision(cluster: Cluster, namespace: str, name: str, revision: int) -> dict[str, Any]:
    """The Workflow once the operator has kept `revision` of it."""
    return wait_for(
        lambda: (
            (w := cluster.get_json("workflow", name, "-n", namespace)).get("status", {}).get("revision")
            == revision
            and w
        ),
        timeout=30,
        what=f"revision {revision} of {name}",
    )


def kept(cluster: Cluster, namespace: str, name: str) -> list[int]:
    listed = cluster.get_json("controllerrevisions", "-n", namespace, "-l", f"seqflow.io/workflow={name}")
    return sorted(r["revision"] for r in listed["items"])


def trail(runs: Runs, cluster: Cluster, namespace: str, name: str) -> list[str]:
    wait_phase(cluster, namespace, name, "Succeeded", timeout=60)
    return runs.get(namespace, name)["status"]["output"]["trail"]


def test_a_pinned_run_runs_its_revision_and_a_rollback_is_a_new_revision(
    cluster: Cluster, runs: Runs, namespace: str
):
    cluster.apply(workflow("evolving", steps("A")), namespace=namespace)
    at_revision(cluster, namespace, "evolving", 1)
    cluster.apply(pinned("during", "evolving", 1, {"sleep": 3}), namespace=namespace)
    wait_for(lambda: runs.get(namespace, "during").get("status", {}).get("current") == ["A"], timeout=30)
    cluster.apply(workflow("evolving", steps("A", "B")), namespace=namespace)
    at_revision(cluster, namespace, "evolving", 2)
    cluster.apply(workflow("evolving", steps("A", "B", "C")), namespace=namespace)
    at_revision(cluster, namespace, "evolving", 3)
    cluster.apply(pinned("after", "evolving", 1), namespace=namespace)
    cluster.apply(workflow_run("latest", "evolving"), namespace=namespace)

    assert trail(runs, cluster, namespace, "during") == ["A"]  # started on revision 1, finished on it
    assert trail(runs, cluster, namespace, "after") == ["A"]  # created after both edits
    assert trail(runs, cluster, namespace, "latest") == ["A", "B", "C"]
    assert runs.get(namespace, "after")["status"]["workflowGeneration"] == 1
    assert kept(cluster, namespace, "evolving") == [1, 2, 3]

    listed = plugin(cluster, "-n", namespace, "revisions", "evolving")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [(r[0], r[2]) for r in rows] == [("3", "1"), ("2", "0"), ("1", "2")]  # revision, runs on it
    assert rows[0][3:] == ["current,", "ready"]

    diffed = plugin(cluster, "-n", namespace, "diff", "evolving", "1", "3")
    assert diffed.returncode == 1, diffed.stderr
    assert "--- revision 1\n+++ revision 3\n" in diffed.stdout
    assert "+- handler: test.step\n+  name: B\n" in diffed.stdout

    back = plugin(cluster, "-n", namespace, "rollback", "evolving", "--to", "1")
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith("# workflow/evolving rolled back to revision 1 (as revision 4)")
    printed = yaml.safe_load(back.stdout)
    assert printed["spec"] == workflow("evolving", steps("A"))["spec"]
    assert printed["metadata"] == {"name": "evolving", "namespace": namespace}
    at_revision(cluster, namespace, "evolving", 4)
    same = plugin(cluster, "-n", namespace, "diff", "evolving", "1", "4")
    assert (same.returncode, same.stdout) == (0, "")
    cluster.apply(workflow_run("rolled-back", "evolving"), namespace=namespace)
    assert trail(runs, cluster, namespace, "rolled-back") == ["A"]

    missing = plugin(cluster, "-n", namespace, "diff", "evolving", "9")
    assert missing.returncode == 2
    assert 'Workflow "evolving" has no revision 9 (kept: 1, 2, 3, 4)' in missing.stderr


def test_a_run_naming_no_revision_takes_the_latest_ready_one(cluster: Cluster, runs: Runs, namespace: str):
    cluster.apply(workflow("edited", steps("A", "B")), namespace=namespace)
    at_revision(cluster, namespace, "edited", 1)
    broken = steps("A", "B")
    broken[1]["handler"] = "test.not_registered"
    cluster.apply(workflow("edited", broken), namespace=namespace)
    found = at_revision(cluster, namespace, "edited", 2)
    assert condition(found["status"], "Ready")["status"] == "False"
    assert found["status"]["readyRevision"] == 1
    cluster.apply(workflow_run("r", "edited"), namespace=namespace)
    assert trail(runs, cluster, namespace, "r") == ["A", "B"]
    assert runs.get(namespace, "r")["status"]["workflowGeneration"] == 1

    cluster.apply(pinned("unknown", "edited", 9), namespace=namespace)
    waiting = wait_for(
        lambda: (s := runs.get(namespace, "unknown").get("status", {})).get("conditions") and s, timeout=30
    )
    assert condition(waiting)["message"].startswith('Workflow "edited" revision 9 not found; waiting until')


def test_old_revisions_are_pruned_except_those_runs_use(cluster: Cluster, runs: Runs, namespace: str):
    def edition(n: int) -> dict[str, Any]:
        held = [{"name": "Hold", "wait": {"signal": "go"}}, *steps(*(f"S{i}" for i in range(n)))]
        return workflow("pruned", held, revisionHistoryLimit=1)

    cluster.apply(edition(1), namespace=namespace)
    at_revision(cluster, namespace, "pruned", 1)
    cluster.apply(workflow_run("held", "pruned"), namespace=namespace)
    wait_for(lambda: runs.get(namespace, "held").get("status", {}).get("workflowGeneration") == 1, timeout=30)
    for revision in (2, 3, 4):
        cluster.apply(edition(revision), namespace=namespace)
        at_revision(cluster, namespace, "pruned", revision)
    # 4 is the Workflow's own, 3 the one more it keeps, 1 the held run's
    wait_for(lambda: kept(cluster, namespace, "pruned") == [1, 3, 4], timeout=30, what="pruning")


def test_an_output_that_does_not_match_the_output_schema_fails_the_run(
    cluster: Cluster, runs: Runs, namespace: str
):
    schema = {"type": "object", "required": ["receipt"], "properties": {"receipt": {"type": "string"}}}
    cluster.apply(workflow("receipts", steps("A"), outputSchema=schema), namespace=namespace)
    cluster.apply(workflow_run("bad", "receipts"), namespace=namespace)
    cluster.apply(workflow_run("good", "receipts", {"receipt": "R-1"}), namespace=namespace)
    wait_phase(cluster, namespace, "bad", "Failed", timeout=60)
    summary = condition(runs.get(namespace, "bad")["status"])
    assert summary["reason"] == "OutputInvalid"
    assert summary["message"] == (
        "The output does not match the Workflow's outputSchema: $: 'receipt' is a required property"
    )
    wait_phase(cluster, namespace, "good", "Succeeded", timeout=60)
    assert json.dumps(runs.get(namespace, "good")["status"]["output"]["receipt"]) == '"R-1"'
