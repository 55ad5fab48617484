"""A database outage delays history but never loses it: mariadbd stopped for 30 s in the middle
of 20 runs, the operator SIGKILLed once while it is down; afterwards every run, attempt and
activity log entry is in the database exactly once."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.operators import http_url, start_operator
from tests.support import Cluster, Runs, wait_for, workflow, workflow_run

pytestmark = [pytest.mark.cluster, pytest.mark.mysql]
RUNS = 20
OUTAGE_SECONDS = 30


def statuses(runs: Runs, namespace: str) -> dict[str, dict]:
    return {f"r{i:02d}": runs.get(namespace, f"r{i:02d}").get("status") or {} for i in range(RUNS)}


def test_outage_delays_history_and_loses_nothing(
    cluster: Cluster, runs: Runs, crds: None, mariadb, operator_kubeconfig, tmp_path
):
    namespace = f"outage-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    operator = start_operator(operator_kubeconfig, tmp_path / "first.log", "outage-*", mariadb.url)
    tasks = [{"name": n, "handler": "test.step", "retry": {"backoffSeconds": 0.5}} for n in ("A", "B", "C")]
    cluster.apply(workflow("steps", tasks), namespace=namespace)
    for i in range(RUNS // 2):
        cluster.apply(workflow_run(f"r{i:02d}", "steps", {"sleep": 0.5}), namespace=namespace)
    time.sleep(1)

    mariadb.stop_server()
    down_at = time.monotonic()
    for i in range(RUNS // 2, RUNS):
        cluster.apply(workflow_run(f"r{i:02d}", "steps", {"sleep": 1.5}), namespace=namespace)
    time.sleep(3)
    operator.kill()  # while the database is down, in the middle of the second half's tasks
    operator = start_operator(operator_kubeconfig, tmp_path / "second.log", "outage-*", mariadb.url)
    try:
        # Runs go on without the database: they finish, their history waiting in their status.
        wait_for(
            lambda: all(s.get("phase") == "Succeeded" for s in statuses(runs, namespace).values()),
            timeout=OUTAGE_SECONDS - (time.monotonic() - down_at),
            what="runs to finish during the outage",
        )
        pending = sum(len(s.get("pendingHistory", [])) for s in statuses(runs, namespace).values())
        assert pending > 0
        ready = urllib.request.Request(http_url(operator) + "/readyz")
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(ready, timeout=10)
        assert not_ready.value.code == 503  # readiness follows the history store
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        mariadb.start_server()
        wait_for(
            lambda: not any(s.get("pendingHistory") for s in statuses(runs, namespace).values()),
            timeout=90,
            what="pending history to be written after the outage",
        )
    finally:
        operator.stop()

    final = statuses(runs, namespace)
    engine = create_engine(mariadb.url)
    with engine.connect() as db:
        rows = db.execute(
            text("SELECT name, uid, phase, history_seq FROM workflow_runs WHERE namespace = :ns"),
            {"ns": namespace},
        ).all()
        assert sorted(r.name for r in rows) == sorted(final)  # every run, once
        interrupted = 0
        for row in rows:
            status = final[row.name]
            assert row.phase == "Succeeded" and row.history_seq == status["historySeq"]
            seqs = db.scalars(
                text("SELECT seq FROM activity_log WHERE run_uid = :u ORDER BY seq"), {"u": row.uid}
            ).all()
            assert seqs == list(range(1, status["historySeq"] + 1))  # every entry, once, in order
            attempts = db.execute(
                text(
                    "SELECT task, attempt, phase FROM task_attempts WHERE run_uid = :u "
                    "ORDER BY task_index, attempt"
                ),
                {"u": row.uid},
            ).all()
            expected = [(t["id"], a) for t in status["nodes"] for a in range(1, t["attempts"] + 1)]
            assert [(a.task, a.attempt) for a in attempts] == expected  # every attempt, once
            assert [
                a.phase
                for a in attempts
                if (a.task, a.attempt) in {(t["id"], t["attempts"]) for t in status["nodes"]}
            ] == ["Succeeded"] * 3
            interrupted += len(attempts) - 3
    assert interrupted >= 1  # the SIGKILL interrupted attempts, and their retries are recorded
