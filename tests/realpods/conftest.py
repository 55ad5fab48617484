"""The real-pod session: a control plane whose node is real (containerd, runc, a kubelet), the
seqflow image built from the Dockerfile and a handlers image built FROM it, loaded into the
node. It runs on its own (`pytest tests/realpods`, as `make test` does after the rest): the two
control planes of the two sessions must not run at once on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testenv import ControlPlane, ensure_binaries
from testenv.realnode import missing_requirements
from tests.support import REPO, Cluster

IMAGE_SCRIPT = REPO / "hack" / "image.sh"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    ours = [i for i in items if here in Path(i.fspath).parents]
    if len(ours) < len(items):
        reason = "the real-pod tests run in a session of their own: pytest tests/realpods"
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The seqflow image and the test handlers image, as OCI archives (built by hack/image.sh)."""
    missing = missing_requirements()
    if missing:
        pytest.skip(missing)
    archives = tmp_path_factory.mktemp("images")
    done = subprocess.run(
        ["bash", str(IMAGE_SCRIPT), "all"],
        env={**os.environ, "SAVE_DIR": str(archives), "PAUSE": str(ensure_binaries().kube_bin_dir / "pause")},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {name: Path(path) for name, path in found.items() if name.endswith("_archive")}


@pytest.fixture(scope="session")
def cluster(images: dict[str, Path]) -> Iterator[Cluster]:
    with ControlPlane(real_node=True, node_images=list(images.values())) as control_plane:
        print(f"\ncontrol plane with a real node ready in {control_plane.start_seconds:.1f} s")
        yield Cluster(control_plane.kubeconfig, str(ensure_binaries().kubectl), control_plane)
