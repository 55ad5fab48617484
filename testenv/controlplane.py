"""A real local Kubernetes control plane for tests: etcd + kube-apiserver on free loopback ports.

Everything lives in one temp dir (data, certificates, tokens, kubeconfigs, one log per process).
Authentication is by static tokens: `admin` is in system:masters, the other users (by default
`alice` and `bob`) have no rights beyond system:authenticated, for RBAC tests. With
`with_jobs=True` it also runs kube-controller-manager, kube-scheduler and kwok with one fake
node, so batch/v1 Jobs run without a container runtime: by default with kwok's "fast" node
stages and seqflow's pod stages (kwok-stages.yaml: a pod's annotations decide how long it runs,
its exit code and its termination message); pass `kwok_configs` to use other Stage files.
With `real_node=True` (root only) the node is real instead: containerd, runc and a kubelet
(testenv/realnode.py) running the OCI archives in `node_images` (the pause image among them:
hack/image.sh makes it), and the API server and
controller-manager run what real pods need (ServiceAccount admission, the root CA publisher,
Deployments, ReplicaSets, EndpointSlices).

Call `start()` from a long-lived thread: the children die when the starting thread exits.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from testenv._proc import Child, free_port, make_workdir, register_cleanup, unregister_cleanup, wait_until
from testenv.binaries import Binaries, ensure_binaries, kwok_stages
from testenv.realnode import RealNode

ADMIN = "admin"
KWOK_NODE = "kwok-node-0"
POD_STAGES = Path(__file__).resolve().parent / "kwok-stages.yaml"
JOB_CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
)
REAL_NODE_CONTROLLERS = (
    "root-ca-certificate-publisher-controller",
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "pod-garbage-collector-controller",
)
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service: the first address of the service range

_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE


class ControlPlane:
    """etcd + kube-apiserver (+ controller-manager, scheduler and kwok with `with_jobs`)."""

    def __init__(
        self,
        *,
        with_jobs: bool = False,
        users: Sequence[str] = ("alice", "bob"),
        kwok_configs: Sequence[Path] | None = None,
        real_node: bool = False,
        node_images: Sequence[Path] = (),
        binaries: Binaries | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.with_jobs = with_jobs or real_node
        self.real_node = real_node
        self.node_images = tuple(node_images)
        self.node: RealNode | None = None
        self.kwok_configs = kwok_configs
        self.start_timeout = start_timeout
        self.users = tuple(users)
        self._binaries = binaries
        self._tokens = {user: secrets.token_hex(16) for user in (ADMIN, *users)}
        self.port = 0
        self.start_seconds: float | None = None
        self._tmp: Path | None = None
        self._children: list[Child] = []

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin (system:masters) kubeconfig."""
        return self._dir / f"{ADMIN}.kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The apiserver's self-signed serving certificate, which also holds its CA."""
        return self._dir / "pki" / "apiserver.crt"

    @property
    def _dir(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("ControlPlane is not started")
        return self._tmp

    def token_for(self, user: str) -> str:
        try:
            return self._tokens[user]
        except KeyError:
            raise KeyError(f"no token user {user!r}; known: {sorted(self._tokens)}") from None

    def kubeconfig_for(self, user: str) -> Path:
        """Writes (if needed) and returns a kubeconfig that authenticates as `user`."""
        path = self._dir / f"{user}.kubeconfig"
        if path.exists():
            return path
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": user,
            "clusters": [
                {
                    "name": "seqflow-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": self.token_for(user)}}],
            "contexts": [
                {"name": user, "context": {"cluster": "seqflow-test", "user": user, "namespace": "default"}}
            ],
        }
        path.write_text(json.dumps(config, indent=2) + "\n")
        return path

    def start(self) -> ControlPlane:
        began = time.monotonic()
        binaries = self._binaries = self._binaries or ensure_binaries()
        self._tmp = make_workdir("seqflow-cp-")
        register_cleanup(self.stop)
        try:
            self._start_core(binaries)
            self.kubeconfig_for(ADMIN)
            if self.with_jobs:
                self._start_job_runtime(binaries)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _spawn(
        self, name: str, argv: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None
    ) -> Child:
        child = Child(name, argv, log=self._dir / f"{name}.log", env=env)
        self._children.append(child)
        return child

    def _start_core(self, binaries: Binaries) -> None:
        etcd_port, self.port = free_port(), free_port()
        tokens = self._dir / "tokens.csv"
        tokens.write_text(
            "".join(
                f"{token},{user},{user}{',system:masters' if user == ADMIN else ''}\n"
                for user, token in self._tokens.items()
            )
        )
        sa_key = self._dir / "sa.key"
        subprocess.run(
            ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(sa_key)],
            check=True,
            capture_output=True,
        )
        etcd = self._spawn(
            "etcd",
            [
                binaries.etcd,
                f"--data-dir={self._dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{free_port()}",
                "--unsafe-no-fsync=true",
            ],
        )
        self._apiserver_argv: list[str | os.PathLike[str]] = [
            binaries.kube_apiserver,
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self._dir / 'pki'}",
            f"--token-auth-file={tokens}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            # Pods on kwok's node need no service account token; real ones do.
            "--disable-admission-plugins="
            + ("TaintNodesByCondition" if self.real_node else "ServiceAccount,TaintNodesByCondition"),
        ]
        self._apiserver = self._spawn("kube-apiserver", self._apiserver_argv)
        wait_until(
            self._apiserver_ready,
            what="kube-apiserver /readyz",
            timeout=self.start_timeout,
            children=[etcd, self._apiserver],
        )

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM) and start it again on the same port and data."""
        self._apiserver.stop()
        self._children.remove(self._apiserver)
        self._apiserver = self._spawn("kube-apiserver", self._apiserver_argv)
        wait_until(
            self._apiserver_ready,
            what="kube-apiserver /readyz",
            timeout=self.start_timeout,
            children=[self._apiserver],
        )

    def _apiserver_ready(self) -> bool:
        try:
            return self._get("/readyz", timeout=1.0) == b"ok"
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _start_job_runtime(self, binaries: Binaries) -> None:
        kubeconfig = f"--kubeconfig={self.kubeconfig}"
        controllers = JOB_CONTROLLERS + (REAL_NODE_CONTROLLERS if self.real_node else ())
        self._spawn(
            "kube-controller-manager",
            [
                binaries.kube_controller_manager,
                kubeconfig,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                f"--controllers={','.join(controllers)}",
                f"--root-ca-file={self.ca_file}",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                binaries.kube_scheduler,
                kubeconfig,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        )
        if self.real_node:
            self.node = RealNode(
                kubeconfig=self.kubeconfig,
                kubelet=binaries.kube_bin_dir / "kubelet",
                kubectl=binaries.kubectl,
                apiserver_port=self.port,
                service_ip=SERVICE_IP,
                images=self.node_images,
            ).start()
            return
        kwok_dir = self._dir / "kwok"
        kwok_dir.mkdir()
        configs = self.kwok_configs
        if configs is None:
            configs = [*kwok_stages("node/fast", binaries=binaries), POD_STAGES]
        self._spawn(
            "kwok",
            [
                binaries.kwok,
                kubeconfig,
                *(f"--config={c}" for c in configs),
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--manage-nodes-with-label-selector=",
                "--manage-single-node=",
                "--cidr=10.0.0.0/16",
                "--node-ip=10.0.0.1",
            ],
            env={**os.environ, "KWOK_WORKDIR": str(kwok_dir)},
        )
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": KWOK_NODE,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"type": "kwok", "kubernetes.io/hostname": KWOK_NODE},
            },
        }
        self.kubectl("create", "-f", "-", input=json.dumps(node))
        wait_until(
            self._node_ready, what=f"node {KWOK_NODE}", timeout=self.start_timeout, children=self._children
        )

    def _node_ready(self) -> bool:
        node = json.loads(self._get(f"/api/v1/nodes/{KWOK_NODE}"))
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )

    def _get(self, path: str, *, timeout: float = 5.0) -> bytes:
        """GET as admin without verifying TLS: the CA file may not be written yet."""
        request = urllib.request.Request(
            f"{self.server}{path}", headers={"Authorization": f"Bearer {self._tokens[ADMIN]}"}
        )
        with urllib.request.urlopen(request, timeout=timeout, context=_INSECURE) as response:
            body: bytes = response.read()
            return body

    def kubectl(self, *args: str, user: str = ADMIN, input: str | None = None) -> str:
        """Runs kubectl as `user`; returns stdout, raises with stderr on failure."""
        kubectl = (self._binaries or ensure_binaries()).kubectl
        done = subprocess.run(
            [str(kubectl), f"--kubeconfig={self.kubeconfig_for(user)}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        """Stops the processes (newest first) and removes the temp dir; safe to call twice."""
        unregister_cleanup(self.stop)
        if self.node is not None:
            self.node.stop()
            self.node = None
        while self._children:
            self._children.pop().stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
