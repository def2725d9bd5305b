"""The dbt project parses offline for both targets; the Snowflake target reads everything from env_var()."""

from __future__ import annotations

from dbt.cli.main import dbtRunner

from tests.content.support import DBT_PROJECT

PLACEHOLDERS = {
    # Snowflake is unreachable from here, and parse must not need it: these values are never used to connect.
    "SNOWFLAKE_ACCOUNT": "placeholder-account",
    "SNOWFLAKE_USER": "placeholder-user",
    "SNOWFLAKE_PASSWORD": "placeholder-password",
    "SNOWFLAKE_ROLE": "placeholder_role",
    "SNOWFLAKE_WAREHOUSE": "placeholder_wh",
    "SNOWFLAKE_DATABASE": "placeholder_db",
    "SNOWFLAKE_SCHEMA": "placeholder_schema",
}


def parse(tmp_path, target: str):
    return dbtRunner().invoke([
        "parse", "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT), "--target", target,
        "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"), "--no-partial-parse",
    ])


def test_parse_snowflake_target_offline_with_placeholders(tmp_path, warehouse, monkeypatch):
    for name, value in PLACEHOLDERS.items():
        monkeypatch.setenv(name, value)

    result = parse(tmp_path, "snowflake")

    assert result.success, result.exception
    manifest = result.result
    models = {node.name for node in manifest.nodes.values() if node.resource_type == "model"}
    assert models == {"stg_customers", "stg_orders", "stg_payments", "customers", "orders"}
    sources = {source.name: source for source in manifest.sources.values()}
    assert set(sources) == {"customers", "orders", "payments"}
    assert {source.schema for source in sources.values()} == {"raw"}
    assert {source.database for source in sources.values()} == {"placeholder_db"}
    assert not warehouse.exists()  # parse touched no warehouse


def test_parse_snowflake_target_names_a_missing_variable(tmp_path, warehouse, monkeypatch):
    for name, value in PLACEHOLDERS.items():
        if name != "SNOWFLAKE_ROLE":
            monkeypatch.setenv(name, value)

    result = parse(tmp_path, "snowflake")

    assert not result.success
    assert "SNOWFLAKE_ROLE" in str(result.exception)


def test_parse_duckdb_target_needs_no_database(tmp_path, warehouse):
    result = parse(tmp_path, "duckdb")

    assert result.success, result.exception
    tests = [node for node in result.result.nodes.values() if node.resource_type == "test"]
    kinds = {test.test_metadata.name for test in tests if getattr(test, "test_metadata", None)}
    assert kinds == {"unique", "not_null", "relationships", "accepted_values"}
    assert not warehouse.exists()



def test_dbt_reads_the_snowflake_settings_as_extract_load_does(tmp_path, warehouse, monkeypatch, prefect_server):
    """A Secret block named by `<VARIABLE>_BLOCK` reaches dbt's profile too (the flow resolves the settings
    before dbt starts), and missing ones are named all at once (dbt alone stops at the first). Snowflake
    cannot be reached here: dbt parses (the profile is rendered, nothing connects); the block is real."""
    from prefect.blocks.system import Secret

    from flows.dbt_build import profile_environment
    from jaffle_common import MissingCredentialsError

    Secret(value="role-from-the-block").save("content-test-dbt-role", overwrite=True)
    for name, value in PLACEHOLDERS.items():
        if name != "SNOWFLAKE_ROLE":
            monkeypatch.setenv(name, value)
    monkeypatch.delenv("SNOWFLAKE_ROLE", raising=False)
    monkeypatch.setenv("SNOWFLAKE_ROLE_BLOCK", "content-test-dbt-role")
    assert not parse(tmp_path / "before", "snowflake").success  # dbt alone does not read the block
    for name, value in profile_environment("snowflake").items():
        monkeypatch.setenv(name, value)
    result = parse(tmp_path / "after", "snowflake")
    assert result.success, result.exception

    monkeypatch.delenv("SNOWFLAKE_ROLE")
    monkeypatch.delenv("SNOWFLAKE_ROLE_BLOCK")
    monkeypatch.delenv("SNOWFLAKE_WAREHOUSE")
    try:
        profile_environment("snowflake")
    except MissingCredentialsError as exc:
        assert exc.missing == ["SNOWFLAKE_ROLE", "SNOWFLAKE_WAREHOUSE"]
    else:
        raise AssertionError("missing Snowflake settings were not named")
    assert profile_environment("duckdb") == {}
