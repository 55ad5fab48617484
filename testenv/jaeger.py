"""A throwaway tracing backend for tests: Jaeger v2 (built once by hack/build-k8s.sh) with an
in-memory store, on free ports of loopback. `otlp_endpoint` takes OTLP over HTTP (what seqflow
exports to); `trace(id)` reads one trace back from Jaeger's query API, as the UI would. Call
`start()` from a long-lived thread (see `testenv._proc`).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from testenv._proc import Child, free_port, make_workdir, register_cleanup, unregister_cleanup, wait_until
from testenv.binaries import Binaries, ensure_binaries

CONFIG = """
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
"""


class Jaeger:
    def __init__(self, *, start_timeout: float = 60.0, binaries: Binaries | None = None) -> None:
        self.start_timeout = start_timeout
        self._binaries = binaries
        self._ports: dict[str, int] = {}
        self._tmp: Path | None = None
        self._server: Child | None = None

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._ports['otlp']}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self._ports['query']}"

    def start(self) -> Jaeger:
        jaeger = (self._binaries or ensure_binaries()).jaeger
        self._tmp = make_workdir("seqflow-jaeger-")
        register_cleanup(self.stop)
        try:
            self._ports = {name: free_port() for name in ("otlp", "query", "query_grpc", "health")}
            config = self._tmp / "config.yaml"
            config.write_text(CONFIG.format(**self._ports))
            server = self._server = Child(
                "jaeger", [jaeger, f"--config={config}"], log=self._tmp / "jaeger.log"
            )
            wait_until(self._healthy, what="jaeger", timeout=self.start_timeout, children=[server])
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._ports['health']}/status", timeout=2):
                return True
        except (urllib.error.URLError, OSError):
            return False

    def trace(self, trace_id: str, *, spans: int, timeout: float = 30.0) -> dict[str, Any]:
        """The trace of that id once it holds at least `spans` spans (Jaeger's JSON: `spans`, each
        with `operationName`, `spanID`, `references`, `tags`, `startTime`, `duration`, and
        `processes`), or the last read when the time runs out."""
        deadline = time.monotonic() + timeout
        found: dict[str, Any] = {"spans": []}
        while True:
            try:
                with urllib.request.urlopen(f"{self.query_url}/api/traces/{trace_id}", timeout=5) as response:
                    found = json.load(response)["data"][0]
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
            if len(found["spans"]) >= spans or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def log(self) -> str:
        return (self._tmp / "jaeger.log").read_text() if self._tmp else ""

    def stop(self) -> None:
        """Stops the server; safe to call twice."""
        unregister_cleanup(self.stop)
        if self._server is not None:
            self._server.stop(timeout=10.0)
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Jaeger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
