"""The Helm chart in charts/seqflow: it lints, renders manifests the API server accepts, ships the
repository's CRDs unchanged, grants no wildcard permissions, wires the operator's settings,
installs and uninstalls on a real cluster, and upgrades the CRDs with the release."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testenv import ensure_binaries
from tests.support import REPO, Cluster, wait_for, workflow_run

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "seqflow"
DATABASE_URL = "mysql+pymysql://seqflow:secret@mysql:3306/seqflow"
KOPF_CRDS = ("clusterkopfpeerings.kopf.dev.yaml", "kopfpeerings.kopf.dev.yaml")  # in the chart's crds/
CRD_FILES = CHART / "files" / "crds"  # seqflow's, rendered by templates/crds.yaml
SEQFLOW_CRDS = ("workflows.seqflow.io", "workflowruns.seqflow.io", "workflowschedules.seqflow.io")


def value_sets(watch: tuple[str, str] = ("a", "b")) -> dict[str, list[str]]:
    """`helm --set` arguments covering the chart's branches, by name."""
    return {
        "default": [],
        "namespaced": ["--set", "rbac.clusterWide=false", "--set", f"watchNamespaces={{{','.join(watch)}}}"],
        "database-url": ["--set", f"database.url={DATABASE_URL}"],
        "existing-secret-standalone": [
            "--set",
            "database.existingSecret=seqflow-db",
            "--set",
            "peering.enabled=false",
            "--set",
            "handlerModules={seqflow.examples,mycompany.handlers}",
        ],
        "active-active": [
            "--set",
            "replicaCount=3",
            "--set",
            "buckets=16",
            "--set",
            f"database.url={DATABASE_URL}",
        ],
    }


VALUE_SETS = list(value_sets())


class Helm:
    """The helm binary, with its cache, config and data kept out of the user's home."""

    def __init__(self, path: str, home: Path) -> None:
        self.path = path
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.path, *args], capture_output=True, text=True, env=self.env, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done

    def template(self, *args: str, namespace: str = "seqflow") -> str:
        return self("template", "test", str(CHART), "--namespace", namespace, *args).stdout

    def render(self, *args: str, namespace: str = "seqflow") -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.template(*args, namespace=namespace)) if doc]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(str(ensure_binaries().helm), tmp_path_factory.mktemp("helm-home"))


def find(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.fixture(scope="module")
def chart_crds(cluster: Cluster) -> None:
    """The CRDs in the chart's crds/ (Kopf's peering ones), applied for real; seqflow's are among
    the rendered manifests."""
    cluster.kubectl("apply", "-f", str(CHART / "crds"))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{path.stem}" for path in (CHART / "crds").glob("*.yaml")),
    )


@pytest.fixture(scope="module")
def namespaces(cluster: Cluster) -> Iterator[list[str]]:
    """A release namespace and two namespaces to watch, removed afterwards."""
    suffix = uuid.uuid4().hex[:5]
    names = [f"chart-{role}-{suffix}" for role in ("release", "a", "b")]
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    cluster.kubectl("delete", "namespace", "--wait=false", *names)


@pytest.mark.parametrize("values", VALUE_SETS)
def test_lint(helm: Helm, values: str):
    for strict in ([], ["--strict"]):
        done = helm("lint", *strict, str(CHART), *value_sets()[values])
        assert "0 chart(s) failed" in done.stdout


def test_chart_crds_are_the_repository_crds(helm: Helm):
    repo_crds = sorted(path.name for path in (REPO / "crds").glob("*.yaml"))
    assert sorted(path.name for path in CRD_FILES.glob("*.yaml")) == repo_crds
    _, mismatch, errors = filecmp.cmpfiles(REPO / "crds", CRD_FILES, repo_crds, shallow=False)
    assert (mismatch, errors) == ([], []), (
        "run `make crds`: it copies crds/*.yaml to charts/seqflow/files/crds/"
    )
    assert sorted(path.name for path in (CHART / "crds").glob("*.yaml")) == sorted(KOPF_CRDS)

    # Rendered as they were generated, with the chart's labels and annotations only.
    rendered = {crd["metadata"]["name"]: crd for crd in find(helm.render(), "CustomResourceDefinition")}
    assert sorted(f"{name}.yaml" for name in rendered) == repo_crds
    for name, crd in rendered.items():
        generated = yaml.safe_load((REPO / "crds" / f"{name}.yaml").read_text())
        assert {**crd, "metadata": generated["metadata"]} == generated, name
        assert crd["metadata"].keys() == {"name", "labels", "annotations"}


def test_crd_values(helm: Helm):
    crds = find(helm.render(), "CustomResourceDefinition")
    assert sorted(crd["spec"]["names"]["kind"] for crd in crds) == [
        "ClusterWorkflow",
        "Workflow",
        "WorkflowRun",
        "WorkflowSchedule",
    ]
    for crd in crds:
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert crd["metadata"]["annotations"] == {
            "helm.sh/resource-policy": "keep",
            "argocd.argoproj.io/sync-options": "Delete=false,Prune=false",
        }
    assert not find(helm.render("--set", "crds.install=false"), "CustomResourceDefinition")
    for crd in find(helm.render("--set", "crds.keep=false"), "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]
    annotated = ["--set", "crds.annotations.argocd\\.argoproj\\.io/sync-options=ServerSideApply=true"]
    for crd in find(helm.render(*annotated), "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {
            "helm.sh/resource-policy": "keep",
            "argocd.argoproj.io/sync-options": "ServerSideApply=true",
        }


@pytest.mark.parametrize("values", VALUE_SETS)
def test_server_accepts_the_rendered_manifests(
    cluster: Cluster, helm: Helm, chart_crds: None, namespaces: list[str], values: str
):
    release, *watched = namespaces
    manifests = helm.template(*value_sets((watched[0], watched[1]))[values], namespace=release)
    done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=manifests)
    assert "(server dry run)" in done.stdout


@pytest.mark.parametrize("values", VALUE_SETS)
def test_rbac_has_no_wildcards(helm: Helm, values: str):
    docs = helm.render(*value_sets()[values])
    roles = find(docs, "Role") + find(docs, "ClusterRole")
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert not any("*" in item for item in rule.get(field, [])), (role["kind"], rule)


NAMESPACED_PERMISSIONS = {
    ("seqflow.io", "workflows"): {"get", "list", "watch"},
    ("seqflow.io", "workflows/status"): {"patch"},
    ("apps", "controllerrevisions"): {"get", "list", "create", "delete"},
    ("seqflow.io", "workflowschedules"): {"get", "list", "watch"},
    ("seqflow.io", "workflowschedules/status"): {"patch"},
    ("seqflow.io", "workflowruns"): {"get", "list", "watch", "create", "patch", "delete"},
    ("seqflow.io", "workflowruns/status"): {"patch"},
    ("", "events"): {"create"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete", "patch"},
    ("", "pods"): {"list", "watch"},
    ("", "pods/log"): {"get"},
    ("", "configmaps"): {"get"},
}
CLUSTER_PERMISSIONS = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"get", "list", "watch"},
    ("authentication.k8s.io", "tokenreviews"): {"create"},
    ("authorization.k8s.io", "subjectaccessreviews"): {"create"},
    ("seqflow.io", "clusterworkflows"): {"get", "list", "watch"},
    ("seqflow.io", "clusterworkflows/status"): {"patch"},
}
PEERING_VERBS = {"get", "list", "watch", "patch"}


def permissions(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_rbac_grants_exactly_what_the_operator_uses(helm: Helm):
    (cluster_role,) = find(helm.render(), "ClusterRole")
    assert permissions(cluster_role) == {
        **CLUSTER_PERMISSIONS,
        **NAMESPACED_PERMISSIONS,
        ("kopf.dev", "clusterkopfpeerings"): PEERING_VERBS,
    }

    docs = helm.render(*value_sets()["namespaced"])
    (cluster_role,) = find(docs, "ClusterRole")
    assert permissions(cluster_role) == CLUSTER_PERMISSIONS
    roles = find(docs, "Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["a", "b"]
    for role in roles:
        assert permissions(role) == {**NAMESPACED_PERMISSIONS, ("kopf.dev", "kopfpeerings"): PEERING_VERBS}
    bindings = find(docs, "RoleBinding")
    assert sorted(binding["metadata"]["namespace"] for binding in bindings) == ["a", "b"]
    assert {b["subjects"][0]["namespace"] for b in bindings} == {"seqflow"}

    (cluster_role,) = find(helm.render("--set", "peering.enabled=false"), "ClusterRole")
    assert ("kopf.dev", "clusterkopfpeerings") not in permissions(cluster_role)
    (pod_steps,) = find(helm.render("--set", "jobStepsAs=Pod"), "ClusterRole")
    assert permissions(pod_steps)[("", "pods")] == {"create", "get", "list", "watch", "delete", "patch"}
    (managed_jobs,) = find(helm.render("--set", "jobStepsAs=ManagedJob"), "ClusterRole")
    assert permissions(managed_jobs)[("", "pods")] == {"create", "get", "list", "watch"}
    assert permissions(managed_jobs)[("batch", "jobs/status")] == {"patch"}
    assert ("batch", "jobs/status") not in permissions(pod_steps)
    for setting in ("inputsFromSecrets=true", "httpSteps.headersFromSecrets=true"):
        (from_secrets,) = find(helm.render("--set", setting), "ClusterRole")
        assert permissions(from_secrets)[("", "secrets")] == {"get"}

    docs = helm.render(*value_sets()["active-active"])
    (cluster_role,) = find(docs, "ClusterRole")
    assert permissions(cluster_role) == {**CLUSTER_PERMISSIONS, **NAMESPACED_PERMISSIONS}  # no peering
    (leases,) = find(docs, "Role")
    assert leases["metadata"]["namespace"] == "seqflow"
    assert permissions(leases) == {("coordination.k8s.io", "leases"): {"list", "create", "patch", "delete"}}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in operator_container(docs)["env"]}
    assert env["SEQFLOW_BUCKETS"] == "16" and env["SEQFLOW_PEERING"] == ""
    assert env["SEQFLOW_REPLICA_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["SEQFLOW_LEASE_NAMESPACE"] == "seqflow" and env["SEQFLOW_LEASE_NAME"] == "test-seqflow"


def test_operator_settings(helm: Helm):
    docs = helm.render()
    container = operator_container(docs)
    env = {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}
    assert env == {
        "POD_ID": {"fieldRef": {"fieldPath": "metadata.name"}},
        "SEQFLOW_HANDLER_MODULES": "",
        "SEQFLOW_NAMESPACES": "",
        "SEQFLOW_MAX_CONCURRENT_RUNS": "16",
        "SEQFLOW_JOB_STEPS_AS": "Job",
        "SEQFLOW_JOB_TTL_SECONDS": "3600",
        "SEQFLOW_STEP_LOG_BYTES": "1048576",
        "SEQFLOW_LOG_LEVEL": "INFO",
        "SEQFLOW_LOG_FORMAT": "json",
        "SEQFLOW_HTTP_PORT": "8080",
        "SEQFLOW_HTTP_ALLOWED_HOSTS": "*.svc,*.svc.cluster.local",  # http steps: the cluster's Services
        "POD_IP": {"fieldRef": {"fieldPath": "status.podIP"}},
        "SEQFLOW_API_URL": "http://test-seqflow.seqflow.svc:8080",  # the release's Service
        "SEQFLOW_ARTIFACTS_IMAGE": container["image"],  # its own, to move steps' files
        "SEQFLOW_METRICS_PORT": "9090",
        "SEQFLOW_METRICS_STEP_LABEL": "true",
        "SEQFLOW_PEERING": "seqflow",
        "SEQFLOW_PRIORITY": "100",
        "SEQFLOW_DATABASE_URL": "sqlite:////var/lib/seqflow/history.sqlite",
        "SEQFLOW_MIGRATE_ON_START": "true",
    }
    # Embedded SQLite: its file lives in a writable volume, since the root filesystem is read-only.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/var/lib/seqflow" in {mount["mountPath"] for mount in container["volumeMounts"]}
    assert container["args"] == ["run"]
    assert {probe: container[probe]["httpGet"]["path"] for probe in ("livenessProbe", "readinessProbe")} == {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert not find(docs, "Job") and not find(docs, "Secret")
    (peering,) = find(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "seqflow"

    traced = helm.render("--set", "tracing.endpoint=http://collector.observability:4318")
    env = {var["name"]: var.get("value") for var in operator_container(traced)["env"]}
    assert env["SEQFLOW_TRACING_ENDPOINT"] == "http://collector.observability:4318"

    docs = helm.render(*value_sets()["namespaced"])
    env = {var["name"]: var.get("value") for var in operator_container(docs)["env"]}
    assert env["SEQFLOW_NAMESPACES"] == "a,b"
    assert sorted(peering["metadata"]["namespace"] for peering in find(docs, "KopfPeering")) == ["a", "b"]

    docs = helm.render(*value_sets()["existing-secret-standalone"])
    env = {var["name"]: var for var in operator_container(docs)["env"]}
    assert env["SEQFLOW_PEERING"]["value"] == "" and "SEQFLOW_PRIORITY" not in env
    assert env["SEQFLOW_HANDLER_MODULES"]["value"] == "seqflow.examples,mycompany.handlers"
    assert env["SEQFLOW_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "seqflow-db", "key": "url"}}
    assert env["SEQFLOW_MIGRATE_ON_START"]["value"] == "false"
    assert not find(docs, "ClusterKopfPeering") and not find(docs, "Secret")


def test_an_object_store_for_artifacts_is_set_with_its_credentials_from_a_secret(helm: Helm):
    values = ["--set", "artifacts.url=http://s3.storage.svc:8333", "--set", "artifacts.existingSecret=s3"]
    helm("lint", "--strict", str(CHART), *values)
    env = {var["name"]: var for var in operator_container(helm.render(*values))["env"]}
    assert env["SEQFLOW_ARTIFACTS_URL"]["value"] == "http://s3.storage.svc:8333"
    assert env["SEQFLOW_ARTIFACTS_BUCKET"]["value"] == "seqflow"
    assert env["SEQFLOW_ARTIFACTS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "s3", "key": "secretAccessKey"}
    }
    assert env["SEQFLOW_ARTIFACTS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["key"] == "accessKeyId"


def test_migration_hook_uses_the_database_secret(helm: Helm):
    docs = helm.render(*value_sets()["database-url"])
    container = operator_container(docs)
    env = {var["name"]: var for var in container["env"]}
    assert env["SEQFLOW_MIGRATE_ON_START"]["value"] == "false"
    operator_ref = env["SEQFLOW_DATABASE_URL"]["valueFrom"]["secretKeyRef"]

    (job,) = find(docs, "Job")
    assert job["metadata"]["annotations"] == {
        "helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-weight": "0",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    pod = job["spec"]["template"]["spec"]
    (migrate,) = pod["containers"]
    assert migrate["args"] == ["migrate"] and migrate["image"] == container["image"]
    assert migrate["securityContext"] == container["securityContext"]
    job_env = {var["name"]: var for var in migrate["env"]}
    job_ref = job_env["SEQFLOW_DATABASE_URL"]["valueFrom"]["secretKeyRef"]

    # The operator's Secret and the hook's copy, made before the hook runs, hold the same URL.
    secrets = {secret["metadata"]["name"]: secret for secret in find(docs, "Secret")}
    assert secrets.keys() == {operator_ref["name"], job_ref["name"]}
    assert secrets[operator_ref["name"]]["stringData"] == {operator_ref["key"]: DATABASE_URL}
    assert secrets[job_ref["name"]]["stringData"] == {job_ref["key"]: DATABASE_URL}
    assert int(secrets[job_ref["name"]]["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0

    assert not find(helm.render(*value_sets()["database-url"], "--set", "migration.enabled=false"), "Job")


def test_service_monitor_selects_the_service(helm: Helm):
    values = [
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prom",
    ]
    helm("lint", "--strict", str(CHART), *values)
    docs = helm.render(*values)
    (monitor,) = find(docs, "ServiceMonitor")
    (service,) = find(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "prom"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert not find(helm.render(), "ServiceMonitor")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "rbac.clusterWide=false"], "needs watchNamespaces"),
        (["--set", "watchNamespaces={a}"], "watchNamespaces needs rbac.clusterWide=false"),
        (["--set", "peering.name="], "peering.name is required"),
        (["--set", "replicaCount=2", "--set", "peering.enabled=false"], "never several standalone replicas"),
        (["--set", "buckets=8"], "the replicas share one history store"),
        (["--set", "artifacts.url=http://s3:8333"], "artifacts.url needs artifacts.existingSecret"),
    ],
)
def test_inconsistent_values_are_refused(helm: Helm, values: list[str], message: str):
    done = helm("template", "test", str(CHART), *values, check=False)
    assert done.returncode != 0 and message in done.stderr


@pytest.mark.parametrize("values", ["default", "namespaced-database-url"])
def test_install_and_uninstall(cluster: Cluster, helm: Helm, namespaces: list[str], values: str):
    release_namespace, *watched = namespaces
    release = f"seqflow-{uuid.uuid4().hex[:6]}"
    peering = f"chart-test-{uuid.uuid4().hex[:6]}"  # never the name a running operator uses
    args = ["--set", f"peering.name={peering}"]
    if values == "namespaced-database-url":
        # The pre-install migration hook must complete: only kwok's pods do without the image.
        cluster.require_kwok()
        args += [*value_sets((watched[0], watched[1]))["namespaced"], *value_sets()["database-url"]]
    if cluster.control_plane is None:
        args += ["--set", "crds.install=false"]  # an existing cluster's CRDs are not the tests' to own
    else:
        args += ["--take-ownership"]  # the session's other tests applied seqflow's CRDs already
    kube = [f"--kubeconfig={cluster.kubeconfig}", "--namespace", release_namespace]

    # The image does not exist here, so nothing waits for the pods; the install itself must work.
    helm("install", release, str(CHART), *kube, *args, "--wait=false", "--timeout=120s")
    try:
        assert "STATUS: deployed" in helm("status", release, *kube).stdout
        if cluster.control_plane is not None:
            for name in SEQFLOW_CRDS:
                crd = cluster.get_json("crd", name)
                assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
        deployment = cluster.get_json("deployment", "-n", release_namespace, release)
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == release
        if values == "default":
            cluster.get_json("clusterkopfpeering", peering)
        else:
            for namespace in watched:
                cluster.get_json("role", "-n", namespace, release)
                cluster.get_json("kopfpeering", "-n", namespace, peering)
            # The hook's Job and its copy of the Secret are gone once it succeeded.
            assert (
                cluster.kubectl(
                    "get", "job", "-n", release_namespace, f"{release}-migrate", check=False
                ).returncode
                != 0
            )
            cluster.get_json("secret", "-n", release_namespace, f"{release}-database")
    finally:
        helm("uninstall", release, *kube, "--wait")

    def gone() -> bool:
        return all(
            cluster.kubectl("get", kind, name, "-n", release_namespace, check=False).returncode != 0
            for kind, name in [("deployment", release), ("clusterrole", release), ("serviceaccount", release)]
        )

    wait_for(gone, timeout=30, what=f"release {release} to be removed")
    for name in SEQFLOW_CRDS:
        cluster.get_json("crd", name)  # kept (helm.sh/resource-policy), and every object of theirs with them


# A field of the WorkflowRun spec that the previous chart's CRD lacks, as if this chart added it.
NEW_FIELD = "ttlSecondsAfterFinished"


def previous_chart(directory: Path, layout: str) -> Path:
    """This chart as an earlier version of it: WorkflowRun's CRD without NEW_FIELD and, with the
    layout of chart 0.1.0 ("crds-directory"), seqflow's CRDs in crds/, where Helm installs them
    when they are missing and never upgrades them."""
    chart = directory / "seqflow"
    shutil.copytree(CHART, chart)
    (path,) = chart.rglob("workflowruns.seqflow.io.yaml")
    crd = yaml.safe_load(path.read_text())
    del spec_schema(crd)["properties"][NEW_FIELD]
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    if layout == "crds-directory":
        for moved in (chart / "files" / "crds").glob("*.yaml"):
            moved.rename(chart / "crds" / moved.name)
        (chart / "templates" / "crds.yaml").unlink(missing_ok=True)
    return chart


def spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


@pytest.mark.parametrize("layout", ["crds-directory", "templates"])
def test_upgrade_brings_a_new_crd_field(
    cluster: Cluster, helm: Helm, chart_crds: None, namespaces: list[str], tmp_path: Path, layout: str
):
    """Installed from the previous chart, the cluster drops a field its CRD lacks from what is
    written; `helm upgrade` to this chart adds the field to the served schema, so the same run,
    written again, keeps it; `helm uninstall` leaves the CRDs and the run in place."""
    if cluster.control_plane is None:
        pytest.skip("sets seqflow's CRDs to an older schema: only on the local control plane")
    release_namespace, runs_namespace, _ = namespaces
    release = f"seqflow-{uuid.uuid4().hex[:6]}"
    kube = [f"--kubeconfig={cluster.kubeconfig}", "--namespace", release_namespace]
    args = [*kube, "--set", f"peering.name=chart-test-{uuid.uuid4().hex[:6]}", "--wait=false"]
    previous = previous_chart(tmp_path, layout)
    run = workflow_run(f"ttl-{layout}", "any")
    run["spec"][NEW_FIELD] = 600

    def served() -> dict[str, Any]:
        return spec_schema(cluster.get_json("crd", "workflowruns.seqflow.io"))["properties"]

    def written() -> dict[str, Any]:
        return cluster.get_json("workflowrun", "-n", runs_namespace, run["metadata"]["name"])["spec"]

    # The cluster as the previous chart's install left it. Other tests of the session may have
    # created seqflow's CRDs already: they are made the previous chart's here (their objects stay),
    # then crds/ skips them, as it would have created them; templates adopt them.
    for path in previous.rglob("*.seqflow.io.yaml"):
        exists = cluster.kubectl("get", "crd", path.stem, check=False).returncode == 0
        cluster.kubectl("replace" if exists else "create", "-f", str(path))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{path.stem}")
    adopt = ["--take-ownership"]
    helm("install", release, str(previous), *args, *(adopt if layout == "templates" else []))
    try:
        assert NEW_FIELD not in served()
        # Written by a client that does not ask for strict field validation: dropped, with a warning.
        done = cluster.kubectl(
            "apply", "--validate=warn", "-n", runs_namespace, "-f", "-", input=json.dumps(run)
        )
        assert f'unknown field "spec.{NEW_FIELD}"' in done.stderr
        assert NEW_FIELD not in written()

        # Chart 0.1.0 created its CRDs without Helm's ownership labels: the upgrade adopts them.
        helm("upgrade", release, str(CHART), *args, *(adopt if layout == "crds-directory" else []))
        assert NEW_FIELD in served()

        def kept() -> bool:
            # Strict field validation (kubectl's default) refuses what the schema does not know.
            applied = cluster.apply(run, namespace=runs_namespace, check=False)
            return applied.returncode == 0 and written().get(NEW_FIELD) == 600

        wait_for(kept, timeout=10, what=f"the run written with spec.{NEW_FIELD} to keep it")
    finally:
        helm("uninstall", release, *kube, "--wait")

    crd = cluster.get_json("crd", "workflowruns.seqflow.io")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert NEW_FIELD in served() and written()[NEW_FIELD] == 600
