"""Settings come from SEQFLOW_* variables, read once."""

from __future__ import annotations

import pytest

from seqflow.settings import Settings, StartupError, load_settings


def test_settings_read_lists_from_comma_separated_variables(monkeypatch):
    monkeypatch.setenv("SEQFLOW_HANDLER_MODULES", "a.b, c")
    monkeypatch.setenv("SEQFLOW_NAMESPACES", "e2e-*")
    settings = Settings()
    assert settings.handler_modules == ["a.b", "c"] and settings.namespaces == ["e2e-*"]


def test_none_turns_optional_settings_off_and_secrets_stay_hidden(monkeypatch):
    monkeypatch.setenv("SEQFLOW_JOB_TTL_SECONDS", "none")
    monkeypatch.setenv("SEQFLOW_DATABASE_URL", "mysql+pymysql://u:hunter2@db/seqflow")
    settings = Settings()
    assert settings.job_ttl_seconds is None
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


def test_peering_configuration_orders_replicas_by_start(monkeypatch):
    import time

    import kopf

    from seqflow.cluster.watches import configure

    standalone = kopf.OperatorSettings()
    configure(standalone, Settings())
    assert standalone.peering.standalone is True

    monkeypatch.setenv("SEQFLOW_PEERING", "seqflow")
    monkeypatch.setenv("SEQFLOW_PRIORITY", "2")
    first, second = kopf.OperatorSettings(), kopf.OperatorSettings()
    configure(first, Settings())
    time.sleep(0.002)
    configure(second, Settings())
    assert not first.peering.standalone and first.peering.mandatory and first.peering.name == "seqflow"
    assert first.peering.priority > second.peering.priority  # the older replica stays active
    monkeypatch.setenv("SEQFLOW_PRIORITY", "3")
    later_but_higher = kopf.OperatorSettings()
    configure(later_but_higher, Settings())
    assert later_but_higher.peering.priority > first.peering.priority


def test_a_bad_setting_is_one_line_naming_variable_value_and_problem(monkeypatch):
    monkeypatch.setenv("SEQFLOW_MAX_CONCURRENT_RUNS", "0")
    monkeypatch.setenv("SEQFLOW_DATABASE_URL", "")
    monkeypatch.setenv("SEQFLOW_LOG_LEVEL", "loud")
    with pytest.raises(StartupError) as raised:
        load_settings()
    message = str(raised.value)
    assert "\n" not in message
    assert "SEQFLOW_MAX_CONCURRENT_RUNS=0: Input should be greater than or equal to 1" in message
    assert "SEQFLOW_LOG_LEVEL=LOUD: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in message


def test_the_default_history_store_is_an_absolute_path(monkeypatch):
    monkeypatch.delenv("SEQFLOW_DATABASE_URL", raising=False)
    url = load_settings().database_url.get_secret_value()
    assert url.startswith("sqlite:////") and url.endswith("/.local/share/seqflow/history.sqlite")


def test_buckets_and_peering_exclude_each_other_in_one_line_without_secrets(monkeypatch):
    monkeypatch.setenv("SEQFLOW_BUCKETS", "8")
    monkeypatch.setenv("SEQFLOW_PEERING", "seqflow")
    monkeypatch.setenv("SEQFLOW_DATABASE_URL", "mysql+pymysql://u:hunter2@db/seqflow")
    with pytest.raises(StartupError) as raised:
        load_settings()
    message = str(raised.value)
    assert "SEQFLOW_BUCKETS" in message and "SEQFLOW_PEERING" in message
    assert "hunter2" not in message and "\n" not in message


def test_replica_names_must_be_valid_in_lease_names(monkeypatch):
    assert Settings().replica_name  # host name and process id by default
    monkeypatch.setenv("SEQFLOW_REPLICA_NAME", "Replica_1")
    with pytest.raises(StartupError, match="SEQFLOW_REPLICA_NAME=Replica_1"):
        load_settings()
