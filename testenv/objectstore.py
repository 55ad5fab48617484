"""A throwaway S3-compatible object store for tests: SeaweedFS's `weed server` in a temp dir.

`start()` runs master, volume server, filer and S3 gateway in one `weed` process (built once by
hack/build-k8s.sh) on free ports of `host` (loopback unless told), with one identity allowed
every action, so every request must be signed with `access_key`/`secret_key` (SigV4, path-style
addressing, any region name). It creates `bucket` (a directory of the filer) and waits until a
signed list of it answers; `client()` is an obstore client of it. Data, metadata and the unix
sockets of the server live in the temp dir, except the gRPC sockets weed puts in /tmp itself,
which `stop()` removes. Telemetry is off: the server makes no outside connection. Call
`start()` from a long-lived thread (see `testenv._proc`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import obstore
from obstore.store import S3Store

from testenv._proc import Child, free_port, make_workdir, register_cleanup, unregister_cleanup, wait_until
from testenv.binaries import Binaries, ensure_binaries

_GRPC_SOCKET = "/tmp/seaweedfs-{service}-grpc-{port}.sock"  # hard-coded in weed server


class ObjectStore:
    """One SeaweedFS server; `endpoint_url`, `access_key`, `secret_key`, `region` and `bucket`
    are what an S3 client needs (boto3: `signature_version="s3v4"`, `addressing_style="path"`)."""

    def __init__(
        self,
        *,
        bucket: str = "seqflow",
        host: str = "127.0.0.1",
        region: str = "us-east-1",
        max_volumes: int = 16,
        volume_size_mb: int = 128,
        start_timeout: float = 60.0,
        binaries: Binaries | None = None,
    ) -> None:
        self.bucket = bucket
        self.host = host  # where every part listens (a pod network's gateway, for pods to reach it)
        self.region = region
        self.access_key = "SEQFLOW" + secrets.token_hex(6).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.max_volumes = max_volumes  # capacity is max_volumes * volume_size_mb, allocated lazily
        self.volume_size_mb = volume_size_mb
        self.start_timeout = start_timeout
        self.port = 0
        self.start_seconds: float | None = None
        self._binaries = binaries
        self._master_port = self._filer_port = 0
        self._grpc_ports: dict[str, int] = {}
        self._tmp: Path | None = None
        self._server: Child | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def _dir(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("ObjectStore is not started")
        return self._tmp

    def start(self) -> ObjectStore:
        began = time.monotonic()
        weed = (self._binaries or ensure_binaries()).weed
        self._tmp = make_workdir("seqflow-s3-")
        register_cleanup(self.stop)
        try:
            server = self._server = self._start_server(weed)
            self._create_bucket(weed)
            wait_until(self._answers, what="weed s3", timeout=self.start_timeout, children=[server])
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _start_server(self, weed: Path) -> Child:
        data = self._dir / "data"
        data.mkdir()
        config = self._dir / "s3.json"
        identity = {
            "name": "seqflow",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        self.port = free_port()
        http = {"master": free_port(), "volume": free_port(), "filer": free_port()}
        self._master_port, self._filer_port = http["master"], http["filer"]
        self._grpc_ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        g = self._grpc_ports
        argv: list[str | Path] = [
            weed,
            "server",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-dir={data}",
            f"-master.port={http['master']}",
            f"-master.port.grpc={g['master']}",
            f"-master.volumeSizeLimitMB={self.volume_size_mb}",
            "-master.telemetry=false",
            f"-volume.port={http['volume']}",
            f"-volume.port.grpc={g['volume']}",
            f"-volume.max={self.max_volumes}",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={http['filer']}",
            f"-filer.port.grpc={g['filer']}",
            f"-filer.localSocket={self._dir / 'filer.sock'}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={g['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self._dir / 's3.sock'}",
            f"-s3.config={config}",
        ]
        # Credentials in AWS_* variables would become a second identity; master.toml settings come
        # as WEED_* variables: grow one volume at a time (not 7), since every bucket is its own
        # collection and `max_volumes` would otherwise run out after one bucket.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_"))}
        env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"
        return Child("weed", argv, log=self._dir / "weed.log", env=env)

    def _create_bucket(self, weed: Path) -> None:
        """`s3.bucket.create` in `weed shell` (the S3 API's CreateBucket would need a signature
        by hand: obstore makes none)."""
        g = self._grpc_ports
        argv = [
            str(weed),
            "shell",
            f"-master={self.host}:{self._master_port}.{g['master']}",
            f"-filer={self.host}:{self._filer_port}.{g['filer']}",
        ]
        deadline = time.monotonic() + 30  # (the filer may not answer its gRPC port yet)
        while True:
            command = f"s3.bucket.create -name {self.bucket}\n"
            done = subprocess.run(argv, input=command, capture_output=True, text=True, timeout=60)
            if f"created bucket {self.bucket}" in done.stdout:
                return
            if "connection refused" not in done.stdout + done.stderr or time.monotonic() > deadline:
                said = done.stdout + done.stderr
                raise RuntimeError(f"weed shell did not create bucket {self.bucket}: {said}")
            time.sleep(0.5)

    def _answers(self) -> bool:
        """A signed list of the bucket answers: the S3 gateway and its identity are up."""
        try:
            obstore.list_with_delimiter(self.client())
        except Exception:  # obstore raises its own errors, whatever the cause
            return False
        return True

    def client(self) -> S3Store:
        """An obstore client of the bucket (the one seqflow uses)."""
        return S3Store(
            self.bucket,
            endpoint=self.endpoint_url,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            region=self.region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    def stop(self) -> None:
        """Stops the server and removes its data; safe to call twice."""
        unregister_cleanup(self.stop)
        if self._server is not None:
            self._server.stop(timeout=10.0)
            self._server = None
        for service, port in self._grpc_ports.items():
            Path(_GRPC_SOCKET.format(service=service, port=port)).unlink(missing_ok=True)
        self._grpc_ports = {}
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ObjectStore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
