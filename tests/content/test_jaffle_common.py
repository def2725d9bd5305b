"""jaffle_common: settings, Snowflake credentials and atomic raw-table replacement on a real DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from jaffle_common import (
    MissingCredentialsError,
    Settings,
    SettingsError,
    connect,
    replace_table,
    snowflake_connect_args,
)
from jaffle_common.warehouse import SNOWFLAKE_REQUIRED

COMPLETE_SNOWFLAKE_ENV = {
    "SNOWFLAKE_ACCOUNT": "xy12345.eu-west-1",
    "SNOWFLAKE_USER": "loader",
    "SNOWFLAKE_PASSWORD": "not-a-real-password",
    "SNOWFLAKE_ROLE": "transformer",
    "SNOWFLAKE_WAREHOUSE": "transforming",
    "SNOWFLAKE_DATABASE": "analytics",
    "SNOWFLAKE_SCHEMA": "jaffle_shop",
}


def test_settings_defaults_are_relative_to_the_app_root(tmp_path):
    settings = Settings.from_env(tmp_path, env={})
    assert settings.warehouse == "duckdb"
    assert settings.duckdb_path == Path("~/jaffle_shop.duckdb").expanduser()
    assert settings.data_dir == tmp_path / "data" / "raw"
    assert settings.dbt_project_dir == tmp_path / "dbt"
    assert settings.raw_schema == "raw"
    assert settings.dbt_target == "duckdb"


def test_dbt_target_follows_the_warehouse_unless_set(tmp_path):
    assert Settings.from_env(tmp_path, env={"WAREHOUSE": "snowflake"}).dbt_target == "snowflake"
    assert Settings.from_env(tmp_path, env={"WAREHOUSE": "snowflake", "DBT_TARGET": "ci"}).dbt_target == "ci"


def test_unknown_warehouse_is_rejected_naming_the_variable(tmp_path):
    with pytest.raises(SettingsError, match=r"WAREHOUSE='oracle'.*duckdb, snowflake"):
        Settings.from_env(tmp_path, env={"WAREHOUSE": "oracle"})


def test_missing_snowflake_credentials_are_all_named(tmp_path):
    settings = Settings.from_env(tmp_path, env={"WAREHOUSE": "snowflake"})
    with pytest.raises(MissingCredentialsError) as error:
        connect(settings, env={})  # fails before any network call: nothing to connect with
    for variable in SNOWFLAKE_REQUIRED:
        assert variable in str(error.value)
    assert "SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH" in str(error.value)


def test_only_the_missing_snowflake_variables_are_named():
    env = {k: v for k, v in COMPLETE_SNOWFLAKE_ENV.items() if k not in {"SNOWFLAKE_ROLE", "SNOWFLAKE_PASSWORD"}}
    with pytest.raises(MissingCredentialsError) as error:
        snowflake_connect_args(env)
    assert error.value.missing == ["SNOWFLAKE_ROLE", "SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH"]


def test_snowflake_connect_args_from_environment():
    args = snowflake_connect_args(COMPLETE_SNOWFLAKE_ENV)
    assert args["account"] == "xy12345.eu-west-1"
    assert args["password"] == "not-a-real-password"
    assert args["schema"] == "jaffle_shop"
    assert "private_key_file" not in args

    key_pair = {k: v for k, v in COMPLETE_SNOWFLAKE_ENV.items() if k != "SNOWFLAKE_PASSWORD"}
    key_pair["SNOWFLAKE_PRIVATE_KEY_PATH"] = "/var/run/secrets/snowflake/rsa_key.p8"
    args = snowflake_connect_args(key_pair)
    assert args["private_key_file"] == "/var/run/secrets/snowflake/rsa_key.p8"
    assert "password" not in args


def test_snowflake_password_from_a_prefect_secret_block(prefect_server):
    """The fallback reads a real Secret block from the (temporary) Prefect server."""
    from prefect.blocks.system import Secret

    Secret(value="from-the-block").save("content-test-snowflake-password", overwrite=True)
    env = {k: v for k, v in COMPLETE_SNOWFLAKE_ENV.items() if k != "SNOWFLAKE_PASSWORD"}
    env["SNOWFLAKE_PASSWORD_BLOCK"] = "content-test-snowflake-password"
    assert snowflake_connect_args(env)["password"] == "from-the-block"


def test_snowflake_connection_gets_the_environment_credentials(tmp_path, monkeypatch):
    """Snowflake cannot run here, so the connector's connect() is replaced to capture its arguments."""
    import snowflake.connector

    captured = {}
    monkeypatch.setattr(snowflake.connector, "connect", lambda **kwargs: captured.update(kwargs) or "connection")
    settings = Settings.from_env(tmp_path, env={"WAREHOUSE": "snowflake"})
    assert connect(settings, env=COMPLETE_SNOWFLAKE_ENV) == "connection"
    assert captured["user"] == "loader" and captured["database"] == "analytics"


def test_replace_table_replaces_the_whole_table(tmp_path):
    settings = Settings.from_env(tmp_path, env={"DUCKDB_PATH": str(tmp_path / "w.duckdb")})
    conn = connect(settings)
    try:
        assert replace_table(conn, settings, "customers", pd.DataFrame({"id": [1, 2, 3]})) == 3
        assert replace_table(conn, settings, "customers", pd.DataFrame({"id": [7, 8]})) == 2
        assert conn.execute("select list(id order by id) from raw.customers").fetchone()[0] == [7, 8]
    finally:
        conn.close()


def test_a_failed_replacement_keeps_the_previous_table(tmp_path):
    settings = Settings.from_env(tmp_path, env={"DUCKDB_PATH": str(tmp_path / "w.duckdb")})
    conn = connect(settings)
    try:
        replace_table(conn, settings, "orders", pd.DataFrame({"id": [1, 2]}))
        # Integers mixed with bytes cannot be cast to one column type: the CREATE OR REPLACE fails
        # inside the transaction, after the schema statement.
        unconvertible = pd.DataFrame({"id": [1, b"x"]})
        with pytest.raises(duckdb.Error):
            replace_table(conn, settings, "orders", unconvertible)
        assert conn.execute("select count(*) from raw.orders").fetchone()[0] == 2
    finally:
        conn.close()


def test_table_names_must_be_plain_identifiers(tmp_path):
    settings = Settings.from_env(tmp_path, env={"DUCKDB_PATH": str(tmp_path / "w.duckdb")})
    with pytest.raises(ValueError, match="plain SQL identifier"):
        replace_table(None, settings, 'orders"; drop table x; --', pd.DataFrame({"id": [1]}))
