"""A real node for the local control plane: containerd + runc, a CNI bridge and a kubelet, so
pods run real containers (the recipe is in the README's "Real pods" section).

It changes the machine, so it needs root and cleans up after itself: everything lives in one
state directory at a fixed path (kubelet and containerd use fixed host paths anyway, so there
is one real node per machine: a lock file serializes its users), iptables tables and sysctls are
saved before and restored after, and what it mounted, started, created or left in cgroups is
removed at `stop()`, at exit, and at the next `start()` when a killed run left it behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from testenv._proc import Child, register_cleanup, unregister_cleanup, wait_until

STATE = Path("/var/lib/seqflow-realnode")
LOCK = Path("/run/seqflow-realnode.lock")
BRIDGE = "seqflow0"
POD_SUBNET = "10.244.0.0/24"
PAUSE_IMAGE = "localhost/pause:3.10-local"
# Host paths kubelet and containerd use whatever their configuration says: removed at the end
# when they did not exist before.
FIXED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/cni",
    "/run/containerd",
    "/run/netns",
)
SYSCTLS = ("net/ipv4/ip_forward",)
TABLES = ("filter", "nat", "mangle")
PACKAGES = {"containerd": "containerd", "runc": "runc", "/usr/lib/cni/bridge": "containernetworking-plugins"}


def missing_requirements() -> str | None:
    """Why a real node cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "a real node needs root (it runs containerd and a kubelet and changes iptables)"
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        return "a real node needs cgroups mounted at /sys/fs/cgroup"
    absent = [
        package for path, package in PACKAGES.items() if not (shutil.which(path) or Path(path).exists())
    ]
    if absent:
        return f"a real node needs the Debian packages {', '.join(absent)} (make tools installs them)"
    if shutil.which("iptables-save") is None:
        return "a real node needs iptables"
    if not _loopback(_node_address()):
        return (
            f"a real node needs the machine's name ({socket.gethostname()}) to resolve to a loopback "
            "address (the kubelet listens there, and the API server reaches it by that name)"
        )
    return None


def _node_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return ""


def _loopback(address: str) -> bool:
    return address.startswith("127.")


class RealNode:
    """containerd and a kubelet registered as a node named like the machine with the control plane whose
    admin kubeconfig is given; `images` are OCI archives imported into containerd first (among
    them the sandboxes' pause image, `PAUSE_IMAGE`)."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        kubelet: Path,
        kubectl: Path,
        apiserver_port: int,
        service_ip: str,
        images: Sequence[Path],
        start_timeout: float = 120.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.kubelet = kubelet
        self.kubectl = kubectl
        self.apiserver_port = apiserver_port
        self.service_ip = service_ip
        self.images = tuple(images)
        self.start_timeout = start_timeout
        self.name = socket.gethostname()
        self._lock: IO[str] | None = None
        self._children: list[Child] = []

    @property
    def socket(self) -> Path:
        return STATE / "containerd" / "containerd.sock"

    def start(self) -> RealNode:
        self._lock = LOCK.open("w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # one real node per machine: wait for the other
        register_cleanup(self.stop)
        try:
            if STATE.exists():
                clean_up()  # left by a run that was killed
            self._prepare()
            self._start_containerd()
            for image in self.images:
                self.ctr("images", "import", "--all-platforms", str(image))
            self._start_kubelet()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything and undo every change to the machine; safe to call twice."""
        unregister_cleanup(self.stop)
        if self._lock is None:
            return
        kubelet = [c for c in self._children if c.name == "kubelet"]
        for child in kubelet:
            child.stop()
        _kill_pods()
        while self._children:
            self._children.pop().stop()
        clean_up()
        self._lock.close()
        self._lock = None

    def ctr(self, *args: str) -> str:
        done = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    # ----- set-up -----

    def _prepare(self) -> None:
        """Record the machine's state, then make the directories, bridge, rules and sysctls."""
        STATE.mkdir(parents=True)
        before = {
            "paths": [p for p in FIXED_PATHS if Path(p).exists()],
            "sysctls": {s: Path("/proc/sys", s).read_text().strip() for s in SYSCTLS},
        }
        (STATE / "before.json").write_text(json.dumps(before))
        for table in TABLES:
            saved = _run("iptables-save", "-t", table)
            (STATE / f"iptables-{table}.rules").write_text(saved)
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "link", "set", BRIDGE, "up")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
        Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet").write_text("1")
        # Pods reach the API server (on 127.0.0.1) through the `kubernetes` Service's address:
        # this one rule stands in for kube-proxy.
        _run(
            "iptables", "-t", "nat", "-A", "PREROUTING", "-i", BRIDGE, "-d", f"{self.service_ip}/32",
            "-p", "tcp", "--dport", "443", "-j", "DNAT",
            "--to-destination", f"127.0.0.1:{self.apiserver_port}",
        )  # fmt: skip
        cni = STATE / "cni" / "net.d"
        cni.mkdir(parents=True)
        (cni / "10-seqflow.conflist").write_text(json.dumps(_cni_config()))

    def _start_containerd(self) -> None:
        config = STATE / "containerd" / "config.toml"
        config.parent.mkdir()
        config.write_text(_containerd_config(self.socket))
        child = Child("containerd", ["containerd", "--config", str(config)], log=STATE / "containerd.log")
        self._children.append(child)
        wait_until(self.socket.exists, what="containerd", timeout=self.start_timeout, children=[child])

    def _start_kubelet(self) -> None:
        config = STATE / "kubelet.yaml"
        config.write_text(json.dumps(_kubelet_config(self.socket, address=_node_address())))
        child = Child(
            "kubelet",
            [
                self.kubelet,
                f"--config={config}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={STATE / 'kubelet'}",
                f"--cert-dir={STATE / 'kubelet-pki'}",
                "--v=1",
            ],
            log=STATE / "kubelet.log",
        )
        self._children.append(child)
        wait_until(self._ready, what=f"node {self.name}", timeout=self.start_timeout, children=self._children)

    def _ready(self) -> bool:
        done = subprocess.run(
            [self.kubectl, f"--kubeconfig={self.kubeconfig}", "get", "node", self.name, "-o", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return False
        conditions = json.loads(done.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


# ----- tear-down (also of what a killed run left) -----


def clean_up() -> None:
    """Undo what a real node did to the machine, from the state directory's records."""
    if not STATE.exists():
        return
    _kill_pods()
    for pattern in (
        f"containerd-shim.*-address {STATE}",
        f"containerd --config {STATE}",
        f"kubelet --config={STATE}",
    ):
        subprocess.run(["pkill", "-KILL", "-f", pattern], check=False, capture_output=True)
    time.sleep(0.2)
    _unmount_under(str(STATE), *FIXED_PATHS)
    _remove_pod_cgroups()
    subprocess.run(["ip", "link", "del", BRIDGE], check=False, capture_output=True)
    for veth in _pod_veths():
        subprocess.run(["ip", "link", "del", veth], check=False, capture_output=True)
    try:
        before = json.loads((STATE / "before.json").read_text())
    except (OSError, ValueError):
        before = {"paths": list(FIXED_PATHS), "sysctls": {}}
    for table in TABLES:
        rules = STATE / f"iptables-{table}.rules"
        if rules.exists():
            subprocess.run(["iptables-restore", "-T", table], input=rules.read_text(), text=True, check=False)
    for name, value in before["sysctls"].items():
        Path("/proc/sys", name).write_text(value)
    for path in FIXED_PATHS:
        if path not in before["paths"]:
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(STATE, ignore_errors=True)


def _pod_cgroups() -> list[Path]:
    """The pods' cgroup directories, deepest first (os.walk: they may vanish while it looks)."""
    return [
        Path(top)
        for top, _, _ in os.walk("/sys/fs/cgroup", topdown=False)
        if any(part.startswith("kubepods") for part in Path(top).parts)
    ]


def _kill_pods() -> None:
    """SIGKILL every process in the pods' cgroups (their shims outlive containerd otherwise)."""
    for directory in _pod_cgroups():
        try:
            pids = (directory / "cgroup.procs").read_text().split()
        except OSError:
            continue
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)


def _remove_pod_cgroups() -> None:
    for directory in _pod_cgroups():
        with contextlib.suppress(OSError):  # not empty yet: a process lingers
            directory.rmdir()


def _unmount_under(*prefixes: str) -> None:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    ours = [m for m in mounts if any(m == p or m.startswith(p.rstrip("/") + "/") for p in prefixes)]
    for mount in sorted(set(ours), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def _pod_veths() -> list[str]:
    links = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True)
    return [line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines() if ":" in line]


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


# ----- configuration -----


def _cni_config() -> dict[str, object]:
    return {
        "cniVersion": "0.4.0",
        "name": "seqflow",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(STATE / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _containerd_config(socket: Path) -> str:
    root = socket.parent
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"

[grpc]
  address = "{socket}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{STATE / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/bin/runc"
        SystemdCgroup = false
"""


def _kubelet_config(socket: Path, *, address: str) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{socket}",
        "address": address,
        "readOnlyPort": 0,
        "healthzBindAddress": address,
        "oomScoreAdj": 0,
        "volumePluginDir": str(STATE / "volume-plugins"),
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "resolvConf": "/etc/resolv.conf",
    }
