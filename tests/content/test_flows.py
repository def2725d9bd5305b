"""The flows against a real temporary Prefect server and real dbt on DuckDB."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from flows.dbt_build import dbt_build
from flows.elt import elt
from flows.extract_load import extract_load
from tests.content.support import DBT_PROJECT, RAW_DIR


def query(duckdb_path: Path, sql: str):
    with duckdb.connect(str(duckdb_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def expected_from_csvs(raw_dir: Path = RAW_DIR) -> dict:
    """What the marts must hold, computed from the raw CSVs themselves."""
    customers = pd.read_csv(raw_dir / "customers.csv")
    orders = pd.read_csv(raw_dir / "orders.csv")
    payments = pd.read_csv(raw_dir / "payments.csv")
    return {
        "raw": {"customers": len(customers), "orders": len(orders), "payments": len(payments)},
        "customers_rows": customers["id"].nunique(),
        "orders_rows": orders["id"].nunique(),
        "customers_with_orders": orders["user_id"].nunique(),
        "revenue": payments[payments["order_id"].isin(orders["id"])]["amount"].sum() / 100,
    }


def copy_raw(tmp_path: Path, name: str = "raw") -> Path:
    target = tmp_path / name
    shutil.copytree(RAW_DIR, target)
    return target


def test_elt_builds_the_marts_on_duckdb(prefect_server, warehouse):
    expected = expected_from_csvs()

    state = elt(return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert result["extract-load"] == expected["raw"]
    statuses = result["dbt-build"]
    assert set(statuses) == {"success", "pass"}, statuses  # every model built, every data test passed
    assert statuses["success"] == 5  # 3 staging views + 2 marts
    for table, rows in expected["raw"].items():
        assert query(warehouse, f"select count(*) from raw.{table}") == [(rows,)]
    assert query(warehouse, "select count(*) from main.customers") == [(expected["customers_rows"],)]
    assert query(warehouse, "select count(*) from main.orders") == [(expected["orders_rows"],)]
    assert query(warehouse, "select count(*) from main.customers where number_of_orders > 0") == [
        (expected["customers_with_orders"],)
    ]
    assert query(warehouse, "select sum(number_of_orders) from main.customers") == [(expected["orders_rows"],)]
    (revenue,) = query(warehouse, "select sum(amount) from main.orders")[0]
    assert float(revenue) == pytest.approx(expected["revenue"])


def test_missing_raw_file_fails_naming_it_and_loads_nothing(prefect_server, warehouse, tmp_path):
    assert extract_load(return_state=True).is_completed()
    before = query(warehouse, "select count(*) from raw.customers")
    raw = copy_raw(tmp_path)
    pd.read_csv(raw / "customers.csv").head(5).to_csv(raw / "customers.csv", index=False)
    (raw / "payments.csv").unlink()

    state = extract_load(data_dir=str(raw), return_state=True)

    assert state.is_failed()
    assert str(raw / "payments.csv") in state.message
    # customers.csv was present and changed, but nothing was loaded from this run.
    assert query(warehouse, "select count(*) from raw.customers") == before


def test_a_failing_load_task_fails_the_flow_naming_the_table(prefect_server, warehouse, tmp_path):
    raw = copy_raw(tmp_path)
    (raw / "orders.csv").write_text("")  # present but empty: pandas cannot parse it, on every retry

    state = extract_load(data_dir=str(raw), return_state=True)

    assert state.is_failed()
    assert "raw.orders" in state.message
    assert "raw.customers" not in state.message


def test_a_failing_dbt_test_fails_the_build_naming_the_test(prefect_server, warehouse, tmp_path):
    raw = copy_raw(tmp_path)
    customers = pd.read_csv(raw / "customers.csv")
    pd.concat([customers, customers.head(1)]).to_csv(raw / "customers.csv", index=False)  # a duplicate id
    assert extract_load(data_dir=str(raw), return_state=True).is_completed()

    state = dbt_build(return_state=True)

    assert state.is_failed()
    failed, _, skipped = state.message.partition("skipped downstream:")
    assert "test source_unique_jaffle_shop_customers_id (fail" in failed
    assert "source_not_null_jaffle_shop_customers_id" not in state.message  # passing tests are not blamed
    # dbt build skips what depends on a failed test: the staging model and the marts are not rebuilt.
    assert {"stg_customers", "customers"} <= {name.strip() for name in skipped.split(",")}


def test_a_broken_project_fails_the_build_naming_the_test(prefect_server, warehouse, tmp_path):
    """A copy of the project with a deliberately wrong accepted_values test."""
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    staging = project / "models" / "staging" / "_staging.yml"
    staging.write_text(staging.read_text().replace("'return_pending', 'returned'", "'return_pending'"))
    assert extract_load(return_state=True).is_completed()

    state = dbt_build(project_dir=str(project), return_state=True)

    assert state.is_failed()
    assert "accepted_values_stg_orders_status" in state.message
    assert "fail" in state.message
