"""Benchmark on a real node (root only; see testenv/realnode.py): the image, the operator pod
installed with Helm, and a run of Job steps in real containers.

Prints the image's size, the time from `helm install` to the operator pod being Ready, and for
one run of N Job steps (the test handlers image, `pod.step`): steps/s, the gap between a step
finishing and the next one starting as the run's status records it (p50, p95), and the gap
between a step's container ending and the next step's pod being created (whole seconds: pod
timestamps have no fractions).

    python bench/realpods.py --steps 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

from testenv import ControlPlane, ensure_binaries  # noqa: E402
from testenv.realnode import missing_requirements  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def build_images(save_dir: Path) -> list[Path]:
    began = time.monotonic()
    environment = {
        **os.environ,
        "SAVE_DIR": str(save_dir),
        "PAUSE": str(ensure_binaries().kube_bin_dir / "pause"),
    }
    out = subprocess.run(
        ["bash", str(REPO / "hack" / "image.sh"), "all"],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    print(f"images built (or found cached) in {time.monotonic() - began:.1f} s")
    settings = Path(os.environ.get("SEQFLOW_CACHE", Path.home() / ".cache" / "seqflow")) / "podman"
    podman_env = {
        **os.environ,
        "CONTAINERS_CONF": str(settings / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(settings / "storage.conf"),
    }
    size = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", "localhost/seqflow:dev"],
        env=podman_env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    print(f"image localhost/seqflow:dev: {int(size) / 1e6:.0f} MB")
    return [Path(line.split("=", 1)[1]) for line in out.splitlines() if "_archive=" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    missing = missing_requirements()
    if missing:
        sys.exit(f"cannot run: {missing}")
    with tempfile.TemporaryDirectory() as tmp:
        archives = build_images(Path(tmp))
        with ControlPlane(real_node=True, node_images=archives) as control_plane:
            print(f"control plane with a real node ready in {control_plane.start_seconds:.1f} s")
            run_benchmark(control_plane, Path(tmp), steps=args.steps)


def run_benchmark(control_plane: ControlPlane, home: Path, *, steps: int) -> None:
    kubectl = control_plane.kubectl
    helm = [str(ensure_binaries().helm), f"--kubeconfig={control_plane.kubeconfig}"]
    began = time.monotonic()
    subprocess.run(
        [*helm, "install", "seqflow", str(REPO / "charts" / "seqflow"), "-n", "seqflow-system",
         "--create-namespace", "--set", "image.repository=localhost/seqflow", "--set", "image.tag=dev",
         "--set", "image.pullPolicy=Never"],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, check=True, capture_output=True,
    )  # fmt: skip
    kubectl(
        "wait", "-n", "seqflow-system", "pod", "-l", "app.kubernetes.io/component=operator",
        "--for=condition=Ready", "--timeout=180s",
    )  # fmt: skip
    print(f"helm install to operator pod Ready: {time.monotonic() - began:.1f} s")

    job = {
        "image": "localhost/seqflow-handlers:dev",
        "command": ["python", "-m", "seqflow", "task", "pod.step"],
    }
    workflow = {
        "apiVersion": "seqflow.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "steps", "namespace": "default"},
        "spec": {"tasks": [{"name": f"s{i:02d}", "job": job} for i in range(steps)]},
    }
    run = {
        "apiVersion": "seqflow.io/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"workflowRef": {"name": "steps"}, "input": {}},
    }
    kubectl("apply", "-f", "-", input=json.dumps(workflow))
    kubectl("apply", "-f", "-", input=json.dumps(run))
    kubectl("wait", "workflowrun/bench", "--for=condition=Succeeded", f"--timeout={steps * 30}s")
    status = json.loads(kubectl("get", "workflowrun", "bench", "-o", "json"))["status"]
    nodes = status["nodes"]
    gaps = [(ts(b["startedAt"]) - ts(a["finishedAt"])).total_seconds() for a, b in itertools.pairwise(nodes)]
    total = (ts(nodes[-1]["finishedAt"]) - ts(nodes[0]["startedAt"])).total_seconds()
    pods = json.loads(kubectl("get", "pods", "-n", "default", "-o", "json"))["items"]
    by_step = {p["metadata"]["labels"]["seqflow.io/task"]: p for p in pods}
    pod_gaps = []
    for a, b in itertools.pairwise(nodes):
        ended = by_step[a["id"]]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
        pod_gaps.append((ts(by_step[b["id"]]["metadata"]["creationTimestamp"]) - ts(ended)).total_seconds())
    print(f"{steps} Job steps in {total:.1f} s: {steps / total:.2f} steps/s")
    print(
        f"step finished -> next step started (status): p50 {percentile(gaps, 0.5):.2f} s, "
        f"p95 {percentile(gaps, 0.95):.2f} s"
    )
    print(
        f"container ended -> next pod created: p50 {percentile(pod_gaps, 0.5):.0f} s, "
        f"p95 {percentile(pod_gaps, 0.95):.0f} s (whole seconds)"
    )


if __name__ == "__main__":
    main()
