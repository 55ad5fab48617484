"""Real local infrastructure for seqflow's tests and demo: a Kubernetes control plane (etcd +
kube-apiserver, optionally controller-manager, scheduler and kwok) and a MariaDB server, all as
child processes on 127.0.0.1 that cannot outlive the process that started them.
"""

from testenv.binaries import Binaries, ensure_binaries
from testenv.controlplane import ControlPlane
from testenv.mariadb import MariaDB

__all__ = ["Binaries", "ControlPlane", "MariaDB", "ensure_binaries"]
