"""Settings come from SEQFLOW_* variables, read once."""

from __future__ import annotations

from seqflow.settings import Settings


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
