"""The command line as a user meets it: a mistake in a setting, a missing kubeconfig or a
history store that is not there is one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO


def seqflow(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SEQFLOW_", "KUBERNETES_"))}
    return subprocess.run(
        [sys.executable, "-m", "seqflow", *args],
        env={**base, "PYTHONPATH": str(REPO / "operator"), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        (
            {"SEQFLOW_HANDLER_MODULES": "does.not.exist"},
            "seqflow: SEQFLOW_HANDLER_MODULES: cannot import does.not.exist: "
            "ModuleNotFoundError: No module named 'does'",
        ),
        (
            {"SEQFLOW_MAX_CONCURRENT_RUNS": "0"},
            "seqflow: SEQFLOW_MAX_CONCURRENT_RUNS=0: Input should be greater than or equal to 1",
        ),
        (
            {"KUBECONFIG": "/nonexistent/kubeconfig"},
            "seqflow: no Kubernetes credentials: not running in a pod, and no usable kubeconfig",
        ),
    ],
)
def test_startup_mistakes_are_one_line(tmp_path: Path, settings: dict[str, str], line: str):
    done = seqflow(
        "run",
        cwd=tmp_path,
        SEQFLOW_DATABASE_URL=f"sqlite:///{tmp_path}/h.sqlite",
        SEQFLOW_HTTP_PORT="0",
        SEQFLOW_METRICS_PORT="0",
        HOME=str(tmp_path),
        **settings,
    )
    assert done.returncode != 0
    assert done.stderr.strip().startswith(line), done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_history_from_another_directory_reads_the_default_store_or_says_it_is_missing(tmp_path: Path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = seqflow("history", "list", cwd=elsewhere, HOME=str(home))
    store = home / ".local" / "share" / "seqflow" / "history.sqlite"
    assert done.returncode != 0
    assert done.stderr.strip() == f"seqflow: no history store at {store} (set SEQFLOW_DATABASE_URL)"
    assert not store.exists() and not list(elsewhere.iterdir())  # nothing created by a reader

    migrated = seqflow("migrate", cwd=tmp_path, HOME=str(home))
    assert migrated.returncode == 0, migrated.stderr
    began = time.monotonic()
    listed = seqflow("history", "list", cwd=elsewhere, HOME=str(home))
    took = time.monotonic() - began
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr
    print(f"seqflow history list answered in {took:.2f} s")


def test_history_of_a_store_without_schema_says_so(tmp_path: Path):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    done = seqflow("history", "list", cwd=tmp_path, SEQFLOW_DATABASE_URL=f"sqlite:///{empty}")
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"seqflow: the history store sqlite:///{empty} has no schema yet: run `seqflow migrate`, "
        "or start the operator with this SEQFLOW_DATABASE_URL"
    )
