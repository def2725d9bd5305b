"""How many Prefect writes slipway sends at once to one environment: slipway.yaml
`environments.<env>.prefect.write_concurrency`, `auto` (the default), chosen here per server, or a number.

`auto` asks what the server is, once per run and only when there is something to write:
- Prefect Cloud (the API URL is under PREFECT_CLOUD_API_URL, Prefect's own test): CLOUD_WRITERS. Cloud
  counts every request of an account against one per-minute budget (625 a minute on Hobby, 5,000 on Pro, in
  Prefect's documentation) shared with the account's workers and flow runs, and answers 429 with Retry-After
  beyond it. A few writers at Cloud's round-trip time already reach the smaller budgets; more would only
  trade 429s for the same throughput. Retry-After is the safety net (prefect_api.PrefectApi.write).
- A self-hosted server on PostgreSQL: POSTGRES_WRITERS, measured (creates per second at 1..16 writers
  against the test kit's PostgreSQL-backed server, the scale branch's bench.write_concurrency; past this the
  single server process is the limit and more writers only queue inside it).
- A self-hosted server on SQLite, or one slipway cannot place: 1. SQLite takes one write at a time; a second
  concurrent one waits on the database lock and may be refused: 2 writers are no faster than 1 and are
  refused ≈ 6 times as often (bench/sqlite_writers.py).

The server does not say which database it runs on (/api/admin/settings shows the connection URL masked and
the driver unset), but its answers do: PostgreSQL stores Prefect's JSON columns as `jsonb`, which returns an
object's keys sorted (shorter keys first, then bytewise), while SQLite returns them in the order they were
written. One block schema (registered by every server at start, its `fields` written in pydantic's order:
"title" before "type") tells them apart with one small read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLOUD_WRITERS = 4
POSTGRES_WRITERS = 8
SQLITE_WRITERS = 1
SETTING = "write_concurrency"


@dataclass(frozen=True)
class Writers:
    count: int
    reason: str  # said once per run, before the writes: "PostgreSQL-backed server (auto)"


def jsonb_ordered(keys: list[str]) -> bool | None:
    """True when `keys` come back in jsonb's order (PostgreSQL), False when not (SQLite keeps the written
    order), None when too few keys to tell."""
    if len(keys) < 3:
        return None
    return keys == sorted(keys, key=lambda k: (len(k.encode()), k.encode()))


def database_of(block_schemas: list[dict[str, Any]]) -> str | None:
    """"postgresql", "sqlite" or None (no block schema to judge by), from `POST /block_schemas/filter`."""
    for schema in block_schemas:
        ordered = jsonb_ordered(list((schema.get("fields") or {}).keys()))
        if ordered is not None:
            return "postgresql" if ordered else "sqlite"
    return None


def choose(setting: int | str, cloud: bool, database: str | None) -> Writers:
    """The writers for a configured `setting` (a number, or "auto") on the server found."""
    if setting != "auto":
        return Writers(int(setting), f"{SETTING}: {setting}")
    if cloud:
        return Writers(CLOUD_WRITERS, f"Prefect Cloud, {SETTING}: auto")
    if database == "postgresql":
        return Writers(POSTGRES_WRITERS, f"a PostgreSQL-backed server, {SETTING}: auto")
    if database == "sqlite":
        return Writers(SQLITE_WRITERS, f"a SQLite-backed server, {SETTING}: auto")
    return Writers(SQLITE_WRITERS, f"a server whose database slipway cannot tell, {SETTING}: auto; set a number "
                                   "to write more at once")
