"""Fixtures of the content tests: a temporary Prefect server and an isolated DuckDB warehouse per test."""

from __future__ import annotations

import os

import pytest

import tests.content.support  # noqa: F401  (makes `flows` and `jaffle_common` importable)


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect server (SQLite in a temp dir) for the session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    """A fresh DuckDB warehouse and dbt output dirs under tmp_path; Snowflake settings cleared."""
    for name in list(os.environ):
        if name.startswith("SNOWFLAKE_") or name in {"WAREHOUSE", "DBT_TARGET", "JAFFLE_DATA_DIR", "DBT_PROJECT_DIR", "DBT_PROFILES_DIR", "RAW_SCHEMA"}:
            monkeypatch.delenv(name)
    duckdb_path = tmp_path / "warehouse" / "jaffle_shop.duckdb"
    monkeypatch.setenv("DUCKDB_PATH", str(duckdb_path))
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "dbt-target"))
    monkeypatch.setenv("DBT_LOG_PATH", str(tmp_path / "dbt-logs"))
    return duckdb_path
