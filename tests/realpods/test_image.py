"""The image built from the Dockerfile, run with podman as a user would run it first."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("SEQFLOW_CACHE", Path.home() / ".cache" / "seqflow"))
IMAGE = "localhost/seqflow:dev"


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    """podman with the configuration hack/image.sh wrote (nothing global on the machine)."""
    settings = CACHE / "podman"
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(settings / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(settings / "storage.conf"),
    }
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_image_starts_as_non_root_and_fails_in_one_line_without_a_cluster(images: dict[str, Path]):
    began = time.monotonic()
    helped = podman("run", "--rm", "--network=none", IMAGE, "--help")
    print(f"\n`podman run {IMAGE} --help` took {time.monotonic() - began:.2f} s")
    assert helped.returncode == 0 and "run the operator" in helped.stdout, helped.stderr

    alone = podman("run", "--rm", "--network=none", IMAGE, "run")
    assert alone.returncode == 1
    (line,) = alone.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("seqflow: no Kubernetes credentials: not running in a pod"), line

    uid = podman("run", "--rm", "--network=none", "--entrypoint", "id", IMAGE, "-u")
    assert uid.stdout.strip() == "65532"
