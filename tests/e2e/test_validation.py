"""Bad manifests are refused by the API server (the CRD schemas) with messages a user can act on."""

from __future__ import annotations

import pytest

from tests.support import Cluster, workflow
from tests.validation_cases import (
    BAD_WORKFLOWS,
    HANDLER_TASK,
    INPUT_NOT_AN_OBJECT,
    NO_WORKFLOW_REF,
    SIGNAL_NOT_AN_OBJECT,
    SIGNAL_PAYLOADS,
    run_with_signal,
    run_with_string_input,
    run_without_workflow_ref,
)

pytestmark = pytest.mark.cluster


def refused(cluster: Cluster, namespace: str, manifest: dict) -> str:
    done = cluster.apply(manifest, namespace=namespace, check=False)
    assert done.returncode != 0, f"accepted: {manifest}"
    return done.stderr


@pytest.mark.parametrize(("manifest", "message"), BAD_WORKFLOWS.values(), ids=BAD_WORKFLOWS.keys())
def test_bad_workflow_is_refused(cluster: Cluster, crds: None, manifest: dict, message: str):
    assert message in refused(cluster, "default", manifest)


def test_run_input_must_be_an_object(cluster: Cluster, crds: None):
    assert INPUT_NOT_AN_OBJECT in refused(cluster, "default", run_with_string_input())


@pytest.mark.parametrize("payload", SIGNAL_PAYLOADS.values(), ids=SIGNAL_PAYLOADS.keys())
def test_a_signal_payload_must_be_an_object(cluster: Cluster, crds: None, payload: object):
    stderr = refused(cluster, "default", run_with_signal(payload))
    for message in SIGNAL_NOT_AN_OBJECT:
        assert message in stderr


def test_run_needs_a_workflow_ref(cluster: Cluster, crds: None):
    assert NO_WORKFLOW_REF in refused(cluster, "default", run_without_workflow_ref())


def test_good_manifests_are_accepted_unchanged(cluster: Cluster, crds: None):
    manifest = workflow(
        "valid",
        [HANDLER_TASK, {"name": "B", "job": {"image": "busybox", "command": ["true"]}}],
        defaults={"retry": {"maxRetries": 0}, "timeoutSeconds": 10},
    )
    cluster.apply(manifest, namespace="default")
    stored = cluster.get_json("workflow", "valid", "-n", "default")
    assert stored["spec"] == manifest["spec"]
