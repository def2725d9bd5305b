"""Code the jaffle-shop flows share: settings, warehouse connections and raw-table loading."""

from jaffle_common.loading import read_raw_csv, replace_table
from jaffle_common.settings import RAW_TABLES, Settings, SettingsError
from jaffle_common.warehouse import (
    MissingCredentialsError,
    connect,
    snowflake_connect_args,
    snowflake_environment,
)

__all__ = [
    "RAW_TABLES",
    "MissingCredentialsError",
    "Settings",
    "SettingsError",
    "connect",
    "read_raw_csv",
    "replace_table",
    "snowflake_connect_args",
    "snowflake_environment",
]
