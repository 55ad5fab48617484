"""Locates the Kubernetes, kwok, helm, kstatus, SeaweedFS (weed) and Jaeger binaries, building them
once via hack/build-k8s.sh, and kwok's shipped Stage files.

The script caches its builds under ~/.cache/seqflow and is a fast no-op when they exist. Its
progress goes to our stderr; its stdout ends with `kube_bin_dir=`, `kwok=`, `helm=`, `kstatus=`,
`weed=` and `jaeger=` lines (kstatus: the library Flux health checks use, behind
hack/kstatus/main.go; weed: SeaweedFS, the S3-compatible object store of testenv/objectstore.py;
jaeger: the tracing backend of testenv/jaeger.py).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "hack" / "build-k8s.sh"


@dataclass(frozen=True)
class Binaries:
    kube_bin_dir: Path
    kwok: Path
    helm: Path
    kstatus: Path
    weed: Path
    jaeger: Path

    @property
    def kube_apiserver(self) -> Path:
        return self.kube_bin_dir / "kube-apiserver"

    @property
    def kube_controller_manager(self) -> Path:
        return self.kube_bin_dir / "kube-controller-manager"

    @property
    def kube_scheduler(self) -> Path:
        return self.kube_bin_dir / "kube-scheduler"

    @property
    def etcd(self) -> Path:
        return self.kube_bin_dir / "etcd"

    @property
    def kubectl(self) -> Path:
        return self.kube_bin_dir / "kubectl"


@functools.cache
def ensure_binaries() -> Binaries:
    """Runs the build script (once per process) and returns the paths it reports."""
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{BUILD_SCRIPT} failed with exit code {done.returncode} (its output is on stderr above)"
        )
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    missing = {"kube_bin_dir", "kwok", "helm", "kstatus", "weed", "jaeger"} - found.keys()
    if missing:
        raise RuntimeError(
            f"{BUILD_SCRIPT} did not report {', '.join(sorted(missing))}; its stdout was:\n{done.stdout}"
        )
    binaries = Binaries(
        kube_bin_dir=Path(found["kube_bin_dir"]),
        kwok=Path(found["kwok"]),
        helm=Path(found["helm"]),
        kstatus=Path(found["kstatus"]),
        weed=Path(found["weed"]),
        jaeger=Path(found["jaeger"]),
    )
    tools = (binaries.etcd, binaries.kube_apiserver, binaries.kubectl, binaries.kwok, binaries.helm)
    absent = [p for p in (*tools, binaries.kstatus, binaries.weed, binaries.jaeger) if not p.is_file()]
    if absent:
        raise RuntimeError(f"{BUILD_SCRIPT} reported missing files: {absent}")
    return binaries


def kwok_stages(*groups: str, binaries: Binaries | None = None) -> list[Path]:
    """kwok's own Stage files for `groups` such as "node/fast", "pod/fast" or "pod/general".

    kwok v0.8 has no built-in stages; these are the ones kwokctl uses, read from the source of
    the kwok version in use (`go mod download` fetches it if the module cache lacks it).
    """
    stage_dir = _kwok_source(binaries or ensure_binaries()) / "kustomize" / "stage"
    missing = [group for group in groups if not (stage_dir / group).is_dir()]
    if missing:
        raise FileNotFoundError(f"kwok has no stage groups {missing} under {stage_dir}")
    return [
        f
        for group in groups
        for f in sorted((stage_dir / group).glob("*.yaml"))
        if f.name != "kustomization.yaml"
    ]


@functools.cache
def _kwok_source(binaries: Binaries) -> Path:
    version = subprocess.run(
        [str(binaries.kwok), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]  # "kwok version v0.8.0 go1.26 ..."
    download = subprocess.run(
        ["go", "mod", "download", "-json", f"sigs.k8s.io/kwok@{version}"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GOWORK": "off", "GOFLAGS": ""},
    )
    if download.returncode != 0:
        raise RuntimeError(f"cannot fetch kwok {version} sources: {download.stdout}{download.stderr}")
    return Path(json.loads(download.stdout)["Dir"])
