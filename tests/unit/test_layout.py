"""The project's layout rules: `operator/` is a source root, never a package, and the engine and
API models import nothing of the outside world (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_operator_dir_is_not_a_package():
    assert not (REPO / "operator" / "__init__.py").exists(), (
        "operator/__init__.py would make `operator` a package shadowing the standard library"
    )


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO / "operator",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken" in done.stdout
