"""extract-load: replace the raw tables in the warehouse from the CSVs shipped with the content."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped

from jaffle_common import RAW_TABLES, Settings, connect, read_raw_csv, replace_table

# flows/ sits in the app root next to data/ and dbt/ (repo root locally, /opt/prefect in the image).
APP_ROOT = Path(__file__).resolve().parents[1]


@task(retries=2, retry_delay_seconds=2, task_run_name="load-{table}")
def load_table(table: str, settings: Settings) -> dict:
    """Replace <raw schema>.<table> with <data_dir>/<table>.csv; a retry reloads the whole table."""
    frame = read_raw_csv(settings.data_dir, table)
    conn = connect(settings)
    try:
        rows = replace_table(conn, settings, table, frame)
    finally:
        conn.close()
    get_run_logger().info("replaced %s.%s on %s: %d rows", settings.raw_schema, table, settings.warehouse, rows)
    return {"table": table, "rows": rows}


@flow(name="extract-load")
def extract_load(tables: list[str] | None = None, data_dir: str | None = None) -> dict[str, int]:
    """Load every raw table (default: customers, orders, payments); returns rows loaded per table.

    `data_dir` overrides JAFFLE_DATA_DIR / <app root>/data/raw.
    """
    settings = Settings.from_env(APP_ROOT)
    if data_dir:
        settings = dataclasses.replace(settings, data_dir=Path(data_dir))
    tables = list(tables or RAW_TABLES)

    # Check every input before touching the warehouse, so a missing file changes nothing.
    files = [settings.data_dir / f"{table}.csv" for table in tables]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"raw file(s) missing: {', '.join(missing)}; nothing was loaded")

    futures = load_table.map(tables, settings=unmapped(settings))
    futures.wait()
    failed = {table: future.state for table, future in zip(tables, futures) if not future.state.is_completed()}
    if failed:
        details = "; ".join(f"{table}: {state.message or state.name}" for table, state in failed.items())
        raise RuntimeError(f"loading {', '.join(f'{settings.raw_schema}.{t}' for t in failed)} failed ({details})")
    loaded = {result["table"]: result["rows"] for result in futures.result()}
    get_run_logger().info("loaded %s", ", ".join(f"{settings.raw_schema}.{t}={n}" for t, n in loaded.items()))
    return loaded


if __name__ == "__main__":
    extract_load()
