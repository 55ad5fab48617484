"""Command line: `python -m testenv up [--jobs] [--mariadb]` and `python -m testenv binaries`.

`up` starts the servers, prints shell lines to use them and stays in the foreground until
Ctrl-C or SIGTERM, then stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
from typing import NoReturn

from testenv.binaries import ensure_binaries
from testenv.controlplane import ControlPlane
from testenv.mariadb import MariaDB


def _exit_on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def up(*, jobs: bool, mariadb: bool) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with contextlib.ExitStack() as stack:
        cp = stack.enter_context(ControlPlane(with_jobs=jobs))
        print(f"# control plane ready in {cp.start_seconds:.1f} s at {cp.server}", flush=True)
        print(f"export KUBECONFIG={cp.kubeconfig}")
        for user in cp.users:
            print(f"# {user}: {cp.kubeconfig_for(user)}")
        if mariadb:
            db = stack.enter_context(MariaDB())
            print(f"# MariaDB ready in {db.start_seconds:.1f} s; admin socket {db.admin_socket}")
            print(f"# database URL: {db.url}")
        print("# press Ctrl-C to stop", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                signal.pause()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testenv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="run a local control plane until interrupted")
    up_parser.add_argument(
        "--jobs", action="store_true", help="also run controller-manager, scheduler and kwok for Jobs"
    )
    up_parser.add_argument("--mariadb", action="store_true", help="also run MariaDB")
    commands.add_parser("binaries", help="build or locate the binaries and print their paths")
    args = parser.parse_args(argv)
    if args.command == "up":
        up(jobs=args.jobs, mariadb=args.mariadb)
    else:
        binaries = ensure_binaries()
        for name in (
            "etcd",
            "kube_apiserver",
            "kube_controller_manager",
            "kube_scheduler",
            "kubectl",
            "kwok",
            "helm",
        ):
            print(f"{name}={getattr(binaries, name)}")


if __name__ == "__main__":
    main()
