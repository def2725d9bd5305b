"""Loading DataFrames into raw tables, replacing each table in one step.

Readers (dbt, analysts) see either the old table or the new one, never an empty or half-written one.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pandas as pd

from jaffle_common.settings import Settings

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# DuckDB allows one writer per file; mapped load tasks run in threads of one process, so they take turns
# rather than racing on the catalog (CREATE SCHEMA, CREATE OR REPLACE TABLE).
_DUCKDB_WRITE_LOCK = threading.Lock()


def read_raw_csv(data_dir: Path, table: str) -> pd.DataFrame:
    """The raw file of `table` (<data_dir>/<table>.csv) as read, types inferred; staging models cast."""
    path = Path(data_dir) / f"{table}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"raw file {path} for table {table!r} does not exist")
    return pd.read_csv(path)


def replace_table(conn, settings: Settings, table: str, frame: pd.DataFrame) -> int:
    """Replace <settings.raw_schema>.<table> with `frame`; returns the number of rows loaded."""
    for name in (settings.raw_schema, table):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{name!r} is not a plain SQL identifier (letters, digits, underscores)")
    if settings.warehouse == "snowflake":
        return _replace_snowflake(conn, settings.raw_schema, table, frame)
    return _replace_duckdb(conn, settings.raw_schema, table, frame)


def _replace_duckdb(conn, schema: str, table: str, frame: pd.DataFrame) -> int:
    with _DUCKDB_WRITE_LOCK:
        conn.register("incoming_frame", frame)
        try:
            # DuckDB's DDL is transactional: the swap commits whole or not at all.
            conn.execute("begin transaction")
            conn.execute(f'create schema if not exists "{schema}"')
            conn.execute(f'create or replace table "{schema}"."{table}" as select * from incoming_frame')
            conn.execute("commit")
        except Exception:
            conn.execute("rollback")
            raise
        finally:
            conn.unregister("incoming_frame")
    return len(frame)


def _replace_snowflake(conn, schema: str, table: str, frame: pd.DataFrame) -> int:
    from snowflake.connector.pandas_tools import write_pandas

    # Unquoted (upper-case) identifiers, so dbt's unquoted `id`, `order_date`... resolve to them.
    target, loading = table.upper(), f"{table.upper()}__LOADING"
    schema = schema.upper()
    frame = frame.rename(columns=str.upper)
    with conn.cursor() as cursor:
        cursor.execute(f"create schema if not exists {schema}")
        ok, _, rows, _ = write_pandas(
            conn, frame, loading, schema=schema, auto_create_table=True, overwrite=True, quote_identifiers=False
        )
        if not ok or rows != len(frame):
            cursor.execute(f"drop table if exists {schema}.{loading}")
            raise RuntimeError(f"loading {schema}.{target}: {rows} of {len(frame)} rows copied")
        # SWAP WITH is one atomic metadata change; the old data ends up in the loading table, dropped after.
        cursor.execute(f"create table if not exists {schema}.{target} like {schema}.{loading}")
        cursor.execute(f"alter table {schema}.{loading} swap with {schema}.{target}")
        cursor.execute(f"drop table if exists {schema}.{loading}")
    return len(frame)
