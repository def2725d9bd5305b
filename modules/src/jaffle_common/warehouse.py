"""Connections to the warehouse: a DuckDB file by default, Snowflake when WAREHOUSE=snowflake.

Snowflake credentials come only from the run's environment (the deployment's job variables, a Kubernetes
Secret) or, per variable, from a Prefect Secret block named by `<VARIABLE>_BLOCK` — never from code or the
image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from jaffle_common.settings import Settings

# Variable -> snowflake.connector.connect() keyword. Password or private key: one of them is required.
SNOWFLAKE_REQUIRED = {
    "SNOWFLAKE_ACCOUNT": "account",
    "SNOWFLAKE_USER": "user",
    "SNOWFLAKE_ROLE": "role",
    "SNOWFLAKE_WAREHOUSE": "warehouse",
    "SNOWFLAKE_DATABASE": "database",
    "SNOWFLAKE_SCHEMA": "schema",
}
SNOWFLAKE_SECRET_CHOICES = {
    "SNOWFLAKE_PASSWORD": "password",
    "SNOWFLAKE_PRIVATE_KEY_PATH": "private_key_file",
}
SNOWFLAKE_OPTIONAL = {"SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "private_key_file_pwd"}


class MissingCredentialsError(RuntimeError):
    """Snowflake was selected but some credentials are set nowhere."""

    def __init__(self, missing: list[str]):
        self.missing = missing
        super().__init__(
            f"WAREHOUSE=snowflake but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
            "set them in the run's environment (job variables or a Kubernetes Secret), or name a Prefect "
            "Secret block holding each in <VARIABLE>_BLOCK (e.g. SNOWFLAKE_PASSWORD_BLOCK=snowflake-password)"
        )


def load_secret_block(name: str) -> str:
    """The value of the Prefect Secret block `name` (needs a reachable Prefect API)."""
    from prefect.blocks.system import Secret

    return Secret.load(name, _sync=True).get()


def _lookup(variable: str, env: Mapping[str, str], secret_loader: Callable[[str], str]) -> str | None:
    if env.get(variable):
        return env[variable]
    block_name = env.get(f"{variable}_BLOCK")
    if block_name:
        return secret_loader(block_name)
    return None


def snowflake_environment(
    env: Mapping[str, str] | None = None,
    secret_loader: Callable[[str], str] = load_secret_block,
) -> dict[str, str]:
    """Every SNOWFLAKE_* setting, each from its variable or from the Secret block its `<VARIABLE>_BLOCK`
    names; MissingCredentialsError naming every gap. The connection (extract-load) and dbt's profile
    (dbt/profiles.yml reads these variables) both take their settings from here, so both read them the
    same way."""
    env = os.environ if env is None else env
    resolved: dict[str, str] = {}
    missing: list[str] = []
    for variable in SNOWFLAKE_REQUIRED:
        value = _lookup(variable, env, secret_loader)
        if value:
            resolved[variable] = value
        else:
            missing.append(variable)
    for variable in {**SNOWFLAKE_SECRET_CHOICES, **SNOWFLAKE_OPTIONAL}:
        value = _lookup(variable, env, secret_loader)
        if value:
            resolved[variable] = value
    if not any(variable in resolved for variable in SNOWFLAKE_SECRET_CHOICES):
        missing.append(" or ".join(SNOWFLAKE_SECRET_CHOICES))
    if missing:
        raise MissingCredentialsError(missing)
    return resolved


def snowflake_connect_args(
    env: Mapping[str, str] | None = None,
    secret_loader: Callable[[str], str] = load_secret_block,
) -> dict[str, Any]:
    """Keyword arguments for snowflake.connector.connect(), or MissingCredentialsError naming every gap."""
    keywords = {**SNOWFLAKE_REQUIRED, **SNOWFLAKE_SECRET_CHOICES, **SNOWFLAKE_OPTIONAL}
    args: dict[str, Any] = {keywords[v]: value for v, value in snowflake_environment(env, secret_loader).items()}
    # Tag the sessions so the warehouse's query history shows where they come from.
    args["application"] = "jaffle-shop"
    return args


def connect(settings: Settings, env: Mapping[str, str] | None = None):
    """A DB-API connection to the selected warehouse; the caller closes it."""
    if settings.warehouse == "snowflake":
        import snowflake.connector

        return snowflake.connector.connect(**snowflake_connect_args(env))
    import duckdb

    settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(settings.duckdb_path))
