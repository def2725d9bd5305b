"""Settings of the jaffle-shop content, read from environment variables.

The same code runs on a laptop (repo root as app root, DuckDB in the home directory) and in the release
image (app root /opt/prefect, warehouse chosen by the deployment's environment), so nothing here is
hard-coded beyond the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WAREHOUSES = ("duckdb", "snowflake")
DEFAULT_DUCKDB_PATH = "~/jaffle_shop.duckdb"
# The raw tables the extract-load flow replaces; each is <data_dir>/<table>.csv.
RAW_TABLES = ("customers", "orders", "payments")


class SettingsError(ValueError):
    """An environment variable holds a value the content cannot use."""


@dataclass(frozen=True)
class Settings:
    warehouse: str
    duckdb_path: Path
    raw_schema: str
    data_dir: Path
    dbt_project_dir: Path
    dbt_target: str

    @classmethod
    def from_env(cls, app_root: Path, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: os.environ); paths not set there are relative to `app_root`,
        the directory holding flows/, data/ and dbt/."""
        env = os.environ if env is None else env
        warehouse = env.get("WAREHOUSE", "duckdb").strip().lower() or "duckdb"
        if warehouse not in WAREHOUSES:
            raise SettingsError(
                f"WAREHOUSE={env['WAREHOUSE']!r} is not supported; set WAREHOUSE to one of {', '.join(WAREHOUSES)}"
            )
        app_root = Path(app_root)
        return cls(
            warehouse=warehouse,
            duckdb_path=Path(env.get("DUCKDB_PATH") or DEFAULT_DUCKDB_PATH).expanduser(),
            raw_schema=env.get("RAW_SCHEMA") or "raw",
            data_dir=Path(env.get("JAFFLE_DATA_DIR") or app_root / "data" / "raw").expanduser(),
            dbt_project_dir=Path(env.get("DBT_PROJECT_DIR") or app_root / "dbt").expanduser(),
            # dbt's target follows the warehouse unless set: WAREHOUSE=snowflake alone is enough in prod.
            dbt_target=env.get("DBT_TARGET") or warehouse,
        )
