"""A throwaway MariaDB server for tests: its own datadir, port and socket in a temp dir.

`start()` initialises the datadir, runs `mariadbd` on a free loopback port and creates the
database and user behind `url`. Tests trade durability for speed (the redo log is written at each
commit but flushed to disk once a second); benchmarks ask for `durable=True`: every commit flushed,
as a production server does by default. `stop_server()`/`start_server()` stop and restart the same
datadir on the same port, to simulate an outage. Call `start()` from a long-lived thread (see
`testenv._proc`).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from pathlib import Path

from testenv._proc import Child, free_port, make_workdir, register_cleanup, unregister_cleanup, wait_until

_SBIN = "/usr/sbin:/usr/bin"


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=_SBIN)
    if path is None:
        raise FileNotFoundError(f"{name} not found; install the Debian package mariadb-server")
    return path


class MariaDB:
    """One MariaDB server; `url` is a SQLAlchemy URL for the PyMySQL driver."""

    def __init__(
        self,
        *,
        database: str = "seqflow",
        user: str = "seqflow",
        start_timeout: float = 30.0,
        durable: bool = False,
    ) -> None:
        self.database = database
        self.durable = durable
        self.user = user
        self.password = secrets.token_hex(12)
        self.start_timeout = start_timeout
        self.port = 0
        self.start_seconds: float | None = None
        self._tmp: Path | None = None
        self._server: Child | None = None

    @property
    def url(self) -> str:
        return f"mysql+pymysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_socket(self) -> Path:
        """Unix socket on which root connects without a password."""
        return self._dir / "mysqld.sock"

    @property
    def _dir(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("MariaDB is not started")
        return self._tmp

    def start(self) -> MariaDB:
        began = time.monotonic()
        self._tmp = make_workdir("seqflow-db-")
        register_cleanup(self.stop)
        try:
            self._install_db()
            self.port = free_port()
            self.start_server()
            self.admin_sql(
                f"CREATE DATABASE `{self.database}`;"
                f" CREATE USER '{self.user}'@'%' IDENTIFIED BY '{self.password}';"
                f" GRANT ALL ON `{self.database}`.* TO '{self.user}'@'%';"
            )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _install_db(self) -> None:
        log = self._dir / "install-db.log"
        with open(log, "wb") as out:
            done = subprocess.run(
                [
                    _tool("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={self._dir / 'data'}",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed; see {log}:\n{log.read_text()}")

    def start_server(self) -> None:
        """Starts mariadbd on the existing datadir and port; waits until it answers."""
        self._server = Child(
            "mariadbd",
            [
                _tool("mariadbd"),
                "--no-defaults",
                f"--datadir={self._dir / 'data'}",
                "--user=root",
                "--bind-address=127.0.0.1",
                f"--port={self.port}",
                f"--socket={self.admin_socket}",
                f"--pid-file={self._dir / 'mysqld.pid'}",
                "--skip-log-bin",
                f"--innodb-flush-log-at-trx-commit={1 if self.durable else 2}",
            ],
            log=self._dir / "mariadbd.log",
        )
        wait_until(self._answers, what="mariadbd", timeout=self.start_timeout, children=[self._server])

    def stop_server(self) -> None:
        """Stops mariadbd, keeping the datadir for `start_server()`."""
        if self._server is not None:
            self._server.stop(timeout=30.0)
            self._server = None

    def _answers(self) -> bool:
        ping = [
            _tool("mariadb-admin"),
            "--no-defaults",
            "-uroot",
            f"--socket={self.admin_socket}",
            "--connect-timeout=1",
            "ping",
        ]
        return subprocess.run(ping, capture_output=True, check=False).returncode == 0

    def admin_sql(self, sql: str) -> str:
        """Runs SQL as root over the admin socket; returns the tab-separated output."""
        done = subprocess.run(
            [
                _tool("mariadb"),
                "--no-defaults",
                "-uroot",
                f"--socket={self.admin_socket}",
                "--batch",
                "-e",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"mariadb failed on {sql!r}: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Stops the server and removes its temp dir; safe to call twice."""
        unregister_cleanup(self.stop)
        self.stop_server()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> MariaDB:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
