"""The parts the other tests rely on are real: an API server with CRDs, watches and RBAC, and a
MySQL-compatible server reached through SQLAlchemy and PyMySQL."""

from __future__ import annotations

import threading
import uuid

import pytest

from tests.support import Cluster

pytestmark = pytest.mark.cluster


def test_crd_object_is_created_and_watched(cluster: Cluster, crds: None):
    from kubernetes import client, config, watch

    api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    name = f"watched-{uuid.uuid4().hex[:6]}"
    seen: list[tuple[str, str]] = []
    ready = threading.Event()

    def watch_workflows() -> None:
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object,
            "seqflow.io",
            "v1alpha1",
            "default",
            "workflows",
            timeout_seconds=20,
        )
        ready.set()
        for event in stream:
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if seen[-1] == ("ADDED", name):
                return

    watcher = threading.Thread(target=watch_workflows)
    watcher.start()
    ready.wait(10)
    body = {
        "apiVersion": "seqflow.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"tasks": [{"name": "A", "handler": "x"}]},
    }
    created = api.create_namespaced_custom_object("seqflow.io", "v1alpha1", "default", "workflows", body)
    watcher.join(25)
    assert created["metadata"]["uid"]
    assert ("ADDED", name) in seen


def test_token_user_without_rbac_binding_is_denied(cluster: Cluster, crds: None):
    denied = cluster.kubectl("get", "workflowruns", "-n", "default", user="alice", check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr and '"alice"' in denied.stderr

    namespace = f"rbac-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "create", "role", "reader", "-n", namespace, "--verb=get,list", "--resource=workflowruns.seqflow.io"
    )
    cluster.kubectl("create", "rolebinding", "alice-reads", "-n", namespace, "--role=reader", "--user=alice")
    assert cluster.kubectl("get", "workflowruns", "-n", namespace, user="alice").returncode == 0
    elsewhere = cluster.kubectl("get", "workflowruns", "-n", "default", user="alice", check=False)
    assert "Forbidden" in elsewhere.stderr


@pytest.mark.mysql
def test_sqlalchemy_pymysql_round_trip(database_url: str):
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    table = f"probe_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {table} (id INT PRIMARY KEY, payload JSON)"))
        connection.execute(sa.text(f"INSERT INTO {table} VALUES (1, :p)"), {"p": '{"order": "ORD-1"}'})
    with engine.connect() as connection:
        version = connection.execute(sa.text("SELECT VERSION()")).scalar_one()
        payload = connection.execute(
            sa.text(f"SELECT JSON_VALUE(payload, '$.order') FROM {table}")
        ).scalar_one()
        connection.execute(sa.text(f"DROP TABLE {table}"))
    assert engine.dialect.driver == "pymysql"
    assert "MariaDB" in version or version[0].isdigit()
    assert payload == "ORD-1"
