"""The chart's monitoring: its PrometheusRule's alerts fire as tests/integration/data/alerts-test.yaml
says (promtool test rules, every alert tested), its Grafana dashboard's queries are PromQL
promtool accepts, and the rules and the dashboard name only metrics the operator exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from seqflow.api.models import HistoryEvent, HistoryRecord
from seqflow.metrics import Metrics, Sources, WorkflowRuns
from testenv import ensure_binaries
from tests.integration.test_chart import CHART, Helm, find

ALERTS_TEST = Path(__file__).parent / "data" / "alerts-test.yaml"
DASHBOARD = CHART / "files" / "grafana" / "seqflow.json"
METRIC_NAME = re.compile(r"\bseqflow_[a-z_]+\b")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(str(ensure_binaries().helm), tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool (Debian's package prometheus) is not installed: run `make tools`"
    return found


@pytest.fixture(scope="module")
def rule_groups(helm: Helm) -> list[dict[str, Any]]:
    (rule,) = find(helm.render("--set", "metrics.prometheusRule.enabled=true"), "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def exposed_metric_names() -> set[str]:
    """Every sample name the operator's metrics expose, each series given a value."""
    metrics = Metrics(CollectorRegistry())
    queue = WorkflowRuns(
        "ns", "wf", waiting=1, oldest_waiting_seconds=1, running=1, longest_without_progress_seconds=1
    )
    metrics.watch(
        Sources(
            workflow_runs=lambda: [queue],
            pending_history=lambda: 1,
            buckets_held=lambda: 1,
            buckets_expired=lambda: 1,
        )
    )
    now = datetime.now(UTC)
    entries = [HistoryRecord(seq=i, type=kind, at=now, task="A") for i, kind in enumerate(HistoryEvent, 1)]
    metrics.count(namespace="ns", workflow="wf", started_at=now, records=entries)
    metrics.attempt(namespace="ns", workflow="wf", task="A", succeeded=True, seconds=1)
    metrics.reconcile_errors.inc()
    metrics.api_requests.labels("GET", "pods", 200).observe(0.01)
    text = generate_latest(metrics.registry).decode()
    names = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    return {name for name in names if not name.endswith("_created")}  # the operator turns those off


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return queries + [re.fullmatch(r"label_values\((.*), \w+\)", v).group(1) for v in variables]  # type: ignore[union-attr]


def test_every_alert_fires_as_its_test_says(rule_groups, promtool: str, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups}))
    test = yaml.safe_load(ALERTS_TEST.read_text())
    alerts = {rule["alert"] for group in rule_groups for rule in group["rules"]}
    tested = {case["alertname"] for t in test["tests"] for case in t["alert_rule_test"]}
    assert tested == alerts, "every alert of the chart has a test in alerts-test.yaml, and only those"
    (tmp_path / "alerts-test.yaml").write_text(yaml.safe_dump({**test, "rule_files": [str(rules)]}))

    done = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "alerts-test.yaml")], capture_output=True, text=True
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboards_queries_are_promql(promtool: str, tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 15
    recorded = []
    for i, query in enumerate(queries):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        recorded.append({"record": f"dashboard:query_{i}", "expr": query})
    rules = tmp_path / "dashboard-queries.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))

    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_and_the_dashboard_name_only_metrics_the_operator_exposes(rule_groups):
    exposed = exposed_metric_names()
    alerting = [rule["expr"] for group in rule_groups for rule in group["rules"]]
    for query in alerting + dashboard_queries():
        named = set(METRIC_NAME.findall(query))
        assert named, query
        assert named <= exposed, f"{sorted(named - exposed)} in {query!r} are not exposed"
    # and every series the operator exposes is on the dashboard (histograms by a part of theirs)
    shown = {name for query in dashboard_queries() for name in METRIC_NAME.findall(query)}
    families = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in exposed}
    assert {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in shown} == families


def test_the_chart_ships_the_dashboard_for_grafanas_sidecar(helm: Helm):
    assert all("seqflow.json" not in doc.get("data", {}) for doc in find(helm.render(), "ConfigMap"))
    docs = helm.render("--set", "metrics.grafanaDashboard.enabled=true")
    (config_map,) = [doc for doc in find(docs, "ConfigMap") if "seqflow.json" in doc.get("data", {})]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["seqflow.json"]) == json.loads(DASHBOARD.read_text())


def test_the_service_monitor_keeps_the_runs_namespace_label(helm: Helm):
    (monitor,) = find(helm.render("--set", "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
