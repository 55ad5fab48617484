"""The seqflow operator as a child process (`python -m seqflow run`), for e2e tests, the demo and
the benchmark. It runs with the same hygiene as the servers: it dies with its parent.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from testenv._proc import Child, register_cleanup, unregister_cleanup

REPO = Path(__file__).resolve().parent.parent


class OperatorProcess:
    def __init__(
        self,
        *,
        kubeconfig: Path,
        settings: Mapping[str, str],
        log: Path | None = None,
        python_path: tuple[Path, ...] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.settings = dict(settings)
        self.log = log or Path(tempfile.mkstemp(prefix="seqflow-operator-", suffix=".log")[1])
        self.python_path = python_path
        self._child: Child | None = None

    @property
    def pid(self) -> int:
        assert self._child is not None, "operator not started"
        return self._child.popen.pid

    def start(self) -> OperatorProcess:
        paths = [*map(str, self.python_path), str(REPO / "operator")]
        env = {
            **os.environ,
            **self.settings,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": os.pathsep.join(paths),
            "PYTHONUNBUFFERED": "1",
        }
        self._child = Child(
            "seqflow-operator", [sys.executable, "-m", "seqflow", "run"], log=self.log, env=env
        )
        register_cleanup(self.stop)
        return self

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to clean up, as in a node failure."""
        assert self._child is not None
        self._child.popen.send_signal(signal.SIGKILL)
        self._child.popen.wait()

    def stop(self) -> None:
        unregister_cleanup(self.stop)
        if self._child is not None:
            self._child.stop()

    def running(self) -> bool:
        return self._child is not None and self._child.running()

    def tail(self, lines: int = 60) -> str:
        return self._child.tail(lines) if self._child else ""
