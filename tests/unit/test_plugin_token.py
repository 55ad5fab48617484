"""`kubectl seqflow dashboard` signs the user in with the kubeconfig's own bearer token."""

from __future__ import annotations

from pathlib import Path

import yaml

from seqflow.cli.forward import bearer_token
from seqflow.cli.plugin import Runs


def kubeconfig(path: Path, user: dict[str, str]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "here",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}],
            }
        )
    )
    return path


def test_the_token_of_a_token_kubeconfig(tmp_path: Path):
    runs = Runs(
        kubeconfig=str(kubeconfig(tmp_path / "k", {"token": "abc.def"})), context=None, namespace=None
    )
    assert bearer_token() == "abc.def" and runs.namespace == "shop"


def test_no_token_for_a_client_certificate(tmp_path: Path):
    (tmp_path / "crt").write_text("x")
    (tmp_path / "key").write_text("x")
    user = {"client-certificate": str(tmp_path / "crt"), "client-key": str(tmp_path / "key")}
    Runs(kubeconfig=str(kubeconfig(tmp_path / "k", user)), context=None, namespace=None)
    assert bearer_token() == ""
