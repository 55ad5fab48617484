"""`make demo`: seqflow on a local control plane, running the example workflows.

Starts etcd, kube-apiserver, the Job controller and a kwok node (see testenv/), a MariaDB for
the history and the example inventory service on 127.0.0.1:8089, installs the CRDs, starts the
operator with the example handlers, applies workflows/*.yaml, shows the runs progressing until
all are done (approving the expense that waits for a signal with the `kubectl seqflow` plugin),
then the step trees of the order with a sub-workflow and of the saga that compensated, the
rendered args of the report export's Job pods, one run's Events and its history. With --keep
everything stays up for you to play with until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from seqflow.examples.inventory import InventoryService  # noqa: E402
from testenv import ControlPlane, MariaDB, ensure_binaries  # noqa: E402
from testenv._proc import free_port  # noqa: E402
from testenv.operator import OperatorProcess  # noqa: E402

FINISHED = {"Succeeded", "Failed", "Cancelled"}
PLUGIN = [sys.executable, "-m", "seqflow.cli.plugin"]
INVENTORY_PORT = 8089  # workflows/stock-check.yaml's run calls it there


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the runs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    kubectl_path = str(ensure_binaries().kubectl)
    try:
        inventory = InventoryService(INVENTORY_PORT).start()
    except OSError as error:
        raise SystemExit(
            f"the example inventory service cannot listen on 127.0.0.1:{INVENTORY_PORT}: {error}"
        ) from None
    with ControlPlane(with_jobs=True) as control_plane, MariaDB() as mariadb:
        print(f"local control plane ready in {control_plane.start_seconds:.1f} s at {control_plane.server}")
        print(f"MariaDB for the history ready in {mariadb.start_seconds:.1f} s")
        print(f"example inventory service on 127.0.0.1:{INVENTORY_PORT}")

        def kubectl(*words: str) -> str:
            command = [kubectl_path, f"--kubeconfig={control_plane.kubeconfig}", *words]
            return subprocess.run(command, check=True, capture_output=True, text=True).stdout

        print(kubectl("apply", "-f", str(REPO / "crds")), end="")
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workflowruns.seqflow.io")
        settings = {
            "SEQFLOW_HANDLER_MODULES": "seqflow.examples",
            "SEQFLOW_DATABASE_URL": mariadb.url,
            "SEQFLOW_HTTP_PORT": str(free_port()),
            "SEQFLOW_METRICS_PORT": str(free_port()),
            "SEQFLOW_HTTP_ALLOWED_HOSTS": f"127.0.0.1:{INVENTORY_PORT}",
        }
        operator = OperatorProcess(kubeconfig=control_plane.kubeconfig, settings=settings).start()
        print(f"operator started (pid {operator.pid}, log {operator.log})")
        print(kubectl("apply", "-f", str(REPO / "workflows")), end="")

        def plugin(*words: str) -> str:
            command = [*PLUGIN, f"--kubeconfig={control_plane.kubeconfig}", *words]
            environment = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
            return subprocess.run(command, env=environment, check=True, capture_output=True, text=True).stdout

        show_progress(kubectl, plugin, timeout=args.timeout)
        for run in ("fulfil-big", "transfer-002-closed"):
            print(f"\n$ kubectl seqflow tree {run}")
            print(plugin("tree", run), end="")
        columns = (
            "custom-columns=POD:.metadata.name,ITEM:.metadata.labels.seqflow\\.io/item,"
            "ARGS:.spec.containers[0].args"
        )
        print("\n$ kubectl get pods -l seqflow.io/run=exports-week-49 -o " + columns)
        print(kubectl("get", "pods", "-l", "seqflow.io/run=exports-week-49", "-o", columns), end="")
        print("\n$ kubectl describe workflowrun order-001   (events)")
        describe = kubectl("describe", "workflowrun", "order-001")
        print(describe[describe.index("Events:") :] if "Events:" in describe else describe)
        print("$ kubectl get workflowruns")
        print(kubectl("get", "workflowruns"), end="")
        show_history(mariadb.url)

        if args.keep:
            print(
                f"\nEverything is running. In another shell:\n  export KUBECONFIG={control_plane.kubeconfig}"
            )
            print(f"  {kubectl_path} get workflowruns -w")
            print(f"  SEQFLOW_DATABASE_URL='{mariadb.url}' {sys.executable} -m seqflow history list")
            print(f"  curl localhost:{settings['SEQFLOW_METRICS_PORT']}/metrics")
            print("Press Ctrl-C to stop and clean up.")
            try:
                while operator.running():
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        operator.stop()
    inventory.stop()


def show_history(database_url: str) -> None:
    """The history store's view of order-001, once the operator has written all of it."""
    environment = {**os.environ, "SEQFLOW_DATABASE_URL": database_url, "PYTHONPATH": str(REPO / "operator")}
    command = [sys.executable, "-m", "seqflow", "history", "show", "default", "order-001"]
    deadline = time.monotonic() + 30
    while True:
        run = json.loads(
            subprocess.run(command, env=environment, check=True, capture_output=True, text=True).stdout
        )
        if run["phase"] == "Succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print("\n$ python -m seqflow history show default order-001   (activity log, from MariaDB)")
    for entry in run["activity"]:
        task = f"{entry['task']}#{entry['attempt']}" if entry["task"] else ""
        error = entry["details"].get("error", "")
        print(f"  {entry['seq']:>2} {entry['at']}  {entry['event']:<18} {task:<16} {error}")


def show_progress(kubectl, plugin, *, timeout: float) -> None:
    """Print the runs table each time it changes, until every run has finished; approve the
    expense once it waits for its approval."""
    columns = (
        "custom-columns=NAME:.metadata.name,PHASE:.status.phase,STEP:.status.current[*],"
        "PROGRESS:.status.progress,RETRIES:.status.retries,REASON:.status.conditions[0].reason"
    )
    deadline = time.monotonic() + timeout
    last, approved = "", False
    while time.monotonic() < deadline:
        table = kubectl("get", "workflowruns", "-o", columns)
        if table != last:
            print(f"\n[{time.strftime('%H:%M:%S')}]\n{table}", end="")
            last = table
        rows = [line.split() for line in table.splitlines()[1:]]
        if not approved and any(row[0] == "expense-042" and row[2] == "Approval" for row in rows):
            approved = True
            approval = '{"approved_by": "alice"}'
            print(f"\n$ kubectl seqflow signal expense-042 approved --data '{approval}'")
            print(plugin("signal", "expense-042", "approved", "--data", approval), end="")
        phases = [row[1] for row in rows]
        if phases and all(phase in FINISHED for phase in phases):
            return
        time.sleep(0.2)
    raise SystemExit(f"the runs did not finish within {timeout} s")


if __name__ == "__main__":
    main()
