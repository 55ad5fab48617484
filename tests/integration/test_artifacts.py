"""Files between Job steps through a real S3-compatible store (SeaweedFS): the containers seqflow
adds to a step's pod run as real subprocesses with the environment of their manifest and the
operator's presigned links; the operator's reading of their reports, its download endpoint and
its deletion of a run's files work on what they kept."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import obstore
import pytest
from aiohttp import web
from sqlalchemy import update

from seqflow.api.artifacts import AttemptId
from seqflow.api.models import JobTemplate, PinnedTask, RetryPolicy, StoredArtifact
from seqflow.app import delete_finished_history
from seqflow.engine import CreateJob
from seqflow.executors.artifacts import ArtifactStore
from seqflow.executors.jobs import ArtifactLinks, AttemptUrls, RunRef, job_manifest
from seqflow.executors.outcomes import read_outcome
from seqflow.history.migrate import upgrade
from seqflow.history.store import HistoryStore, RunIdentity, create_store_engine
from seqflow.history.tables import RunRow
from seqflow.http.artifacts import ArtifactApi
from seqflow.http.auth import HttpError
from seqflow.settings import Settings
from testenv.objectstore import ObjectStore
from tests.support import REPO

RUN = RunRef(namespace="data", name="nightly", uid="uid-7")
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def object_store() -> Iterator[ObjectStore]:
    with ObjectStore() as store:
        obstore.put(store.client(), "warm-up", b"")  # its first write makes the bucket's volumes
        yield store


@pytest.fixture
def artifacts(object_store: ObjectStore) -> ArtifactStore:
    settings = Settings(
        artifacts_url=object_store.endpoint_url,
        artifacts_bucket=object_store.bucket,
        artifacts_access_key_id=object_store.access_key,
        artifacts_secret_access_key=object_store.secret_key,
        artifacts_image="localhost/seqflow:dev",
    )
    store = ArtifactStore.from_settings(settings)
    assert store is not None
    return store


def pod_of(node: str, links: ArtifactLinks) -> dict:
    task = PinnedTask(name=node, job=JobTemplate(image="any"), retry=RetryPolicy(), timeout_seconds=60)
    action = CreateJob(node=node, name=f"nightly-{node.lower()}-1", task=task, attempt=1, input={})
    manifest = job_manifest(run=RUN, action=action, ttl_seconds=None, urls=AttemptUrls(artifacts=links))
    return manifest["spec"]["template"]


def start_container(container: dict, directory: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    """A container of the pod as a subprocess: its command and env, its volume a directory."""
    env = {e["name"]: e["value"] for e in container["env"]}
    message = tmp_path / f"{container['name']}.message"
    env |= {
        "SEQFLOW_ARTIFACTS_DIR": str(directory),
        "SEQFLOW_OUTPUT_PATH": str(message),
        "PYTHONPATH": str(REPO / "operator"),
        "PATH": os.environ["PATH"],
    }
    argv = [sys.executable, *container["command"][1:]]  # python -m seqflow artifacts VERB
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, message


def terminated(name: str, code: int, message: Path) -> dict:
    text = message.read_text() if message.exists() else ""
    return {"name": name, "state": {"terminated": {"exitCode": code, "message": text}}}


def ended_pod(init_statuses: list[dict]) -> dict:
    return {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "task"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "task", "state": {"terminated": {"exitCode": 0, "message": "{}"}}}
            ],
            "initContainerStatuses": init_statuses,
        },
    }


def keep_outputs(pod: dict, directory: Path, tmp_path: Path) -> tuple[int, Path]:
    """The sidecar: started before the task, stopped with SIGTERM once it has ended."""
    keeper = next(c for c in pod["spec"]["initContainers"] if c["name"] == "seqflow-artifacts-out")
    process, message = start_container(keeper, directory, tmp_path)
    assert process.stdout is not None and "waiting" in process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    return 0, message


def test_a_50_mib_file_goes_from_one_step_to_the_next_and_is_deleted_with_its_run(
    artifacts: ArtifactStore, tmp_path: Path
):
    extract = AttemptId(namespace=RUN.namespace, run_uid=RUN.uid, node="Extract", attempt=1)
    puts = asyncio.run(artifacts.links("PUT", [extract.artifact_key("raw.bin")]))
    links = ArtifactLinks(image=artifacts.image, outputs=(("raw.bin", puts[0]),))
    produced = tmp_path / "extract"
    produced.mkdir()
    data = os.urandom(MIB) * 50  # what the task container wrote
    (produced / "raw.bin").write_bytes(data)
    began = time.monotonic()
    code, message = keep_outputs(pod_of("Extract", links), produced, tmp_path)
    kept_seconds = time.monotonic() - began
    outcome = read_outcome(
        job=None, pod=ended_pod([terminated("seqflow-artifacts-out", code, message)]), attempt=extract
    )
    digest = hashlib.sha256(data).hexdigest()
    assert outcome.succeeded, outcome.error
    assert outcome.artifacts == (
        StoredArtifact(name="raw.bin", key="data/uid-7/Extract/1/raw.bin", size=50 * MIB, sha256=digest),
    )
    print(f"\n50 MiB kept in {kept_seconds:.2f} s ({50 / kept_seconds:.0f} MiB/s)")

    gets = asyncio.run(artifacts.links("GET", [outcome.artifacts[0].key]))
    pod = pod_of("Load", ArtifactLinks(image=artifacts.image, inputs=(("in.bin", gets[0]),)))
    given = tmp_path / "load"
    given.mkdir()
    process, _ = start_container(pod["spec"]["initContainers"][0], given, tmp_path)
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    assert hashlib.sha256((given / "in.bin").read_bytes()).hexdigest() == digest
    assert [p.name for p in given.iterdir()] == ["in.bin"]  # (no partial file left)

    downloaded = asyncio.run(download(artifacts, "/api/v1/namespaces/data/artifacts/uid-7/Extract/1/raw.bin"))
    assert downloaded[0] == 200 and hashlib.sha256(downloaded[1]).hexdigest() == digest
    assert asyncio.run(artifacts.delete_run(namespace="data", run_uid="uid-7")) == 1
    assert (
        asyncio.run(download(artifacts, "/api/v1/namespaces/data/artifacts/uid-7/Extract/1/raw.bin"))[0]
        == 404
    )


def test_a_missing_output_and_a_refused_link_are_reported_and_a_failed_fetch_says_why(
    artifacts: ArtifactStore, tmp_path: Path
):
    attempt = AttemptId(namespace="data", run_uid="uid-8", node="Write", attempt=2)
    puts = asyncio.run(artifacts.links("PUT", [attempt.artifact_key("out.txt")]))
    empty = tmp_path / "empty"
    empty.mkdir()
    links = ArtifactLinks(image=artifacts.image, outputs=(("out.txt", puts[0]),))
    code, message = keep_outputs(pod_of("Write", links), empty, tmp_path)
    outcome = read_outcome(
        job=None, pod=ended_pod([terminated("seqflow-artifacts-out", code, message)]), attempt=attempt
    )
    assert not outcome.succeeded and outcome.reason == "ArtifactMissing"
    assert outcome.error == "the step did not write its output artifacts /seqflow/artifacts/out.txt"

    (empty / "out.txt").write_text("x")
    forged = puts[0].replace("Write/2/out.txt", "Other/1/out.txt")  # a link to another key
    links = ArtifactLinks(image=artifacts.image, outputs=(("out.txt", forged),))
    code, message = keep_outputs(pod_of("Write", links), empty, tmp_path)
    report = json.loads(message.read_text())
    assert report["kept"] == [] and 'output artifact "out.txt" could not be kept: HTTP 403' in report["error"]

    gets = asyncio.run(artifacts.links("GET", ["data/uid-8/Nothing/1/none"]))
    pod = pod_of("Read", ArtifactLinks(image=artifacts.image, inputs=(("none", gets[0]),)))
    process, message = start_container(pod["spec"]["initContainers"][0], empty, tmp_path)
    assert process.wait(timeout=60) == 1
    assert message.read_text().startswith('input artifact "none" could not be fetched: HTTP 404')


async def download(artifacts: ArtifactStore, path: str) -> tuple[int, bytes]:
    """GET from the operator's download endpoint (no authentication: local development mode;
    its errors answered as the operator's HTTP API answers them)."""

    @web.middleware
    async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except HttpError as error:
            return web.json_response({"error": str(error)}, status=error.status)

    app = web.Application(middlewares=[errors])
    ArtifactApi(artifacts=artifacts, authorizer=None).add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            return response.status, await response.read()
    finally:
        await runner.cleanup()


def test_retention_deletes_a_finished_runs_files_with_its_history(
    artifacts: ArtifactStore, object_store: ObjectStore, tmp_path: Path
):
    engine = create_store_engine(f"sqlite:///{tmp_path / 'history.sqlite'}")
    upgrade(engine)
    store = HistoryStore(engine)
    finished_at = datetime(2001, 1, 1, tzinfo=UTC)
    for uid in ("old-run", "new-run"):
        store.write(RunIdentity(uid, "data", f"r-{uid}", "wf", {}, finished_at), [])
        key = AttemptId(namespace="data", run_uid=uid, node="Write", attempt=1).artifact_key("f.txt")
        obstore.put(object_store.client(), key, b"x")  # as a step's sidecar would have
    with engine.begin() as connection:
        connection.execute(
            update(RunRow).where(RunRow.uid == "old-run").values(finished_at=finished_at.replace(tzinfo=None))
        )

    deleted = asyncio.run(
        delete_finished_history(store, finished_at + timedelta(days=1), artifacts=artifacts)
    )
    assert deleted == 1 and store.finished_before(finished_at + timedelta(days=1)) == []
    left = [m["path"] for batch in obstore.list(object_store.client(), prefix="data/") for m in batch]
    assert left == ["data/new-run/Write/1/f.txt"]
