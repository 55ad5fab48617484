"""Child-process hygiene shared by the test servers: spawning, stopping, ports, cleanup.

Every child gets PR_SET_PDEATHSIG=SIGKILL, so the kernel kills it when the thread that started
it exits (including `kill -9` of the test process). Start servers from a long-lived thread
(normally the main thread): a child started from a short-lived worker thread dies with it.
Children also get their own process group, so a terminal's Ctrl-C reaches only the Python
process, which then stops them in order. An atexit hook stops whatever is still running, and
temp dirs left behind by a killed test process are removed when the next server starts.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_cleanups: list[Callable[[], None]] = []


def make_workdir(prefix: str) -> Path:
    """A new temp dir tagged with our pid; first removes same-prefix dirs of dead owners."""
    for stale in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        owner = _owner(stale)
        if owner is not None and not _alive(owner):
            shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    (workdir / "owner.pid").write_text(str(os.getpid()))
    return workdir


def _owner(workdir: Path) -> int | None:
    try:
        return int((workdir / "owner.pid").read_text())
    except (OSError, ValueError):  # not ours, still being created, or already being removed
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        if _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(127)

    return preexec


class Child:
    """One server process whose stdout and stderr go to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | os.PathLike[str]],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                process_group=0,
                preexec_fn=_die_with_parent(os.getpid()),
            )

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL."""
        if self.running():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def exited_error(self) -> RuntimeError:
        return RuntimeError(
            f"{self.name} exited with code {self.popen.returncode}; last lines of {self.log}:\n{self.tail()}"
        )


def wait_until(
    ready: Callable[[], bool], *, what: str, timeout: float, children: Sequence[Child], interval: float = 0.05
) -> None:
    """Polls `ready()` until it is true; fails fast if one of `children` exits."""
    deadline = time.monotonic() + timeout
    while not ready():
        for child in children:
            if not child.running():
                raise child.exited_error()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {c.name} ({c.log}):\n{c.tail()}" for c in children)
            raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{logs}")
        time.sleep(interval)


def register_cleanup(stop: Callable[[], None]) -> None:
    _cleanups.append(stop)


def unregister_cleanup(stop: Callable[[], None]) -> None:
    if stop in _cleanups:
        _cleanups.remove(stop)


@atexit.register
def _cleanup_at_exit() -> None:
    for stop in reversed(list(_cleanups)):
        stop()
