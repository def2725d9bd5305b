"""`write_concurrency: auto` against the kit's real Prefect servers: slipway tells a PostgreSQL-backed server
from a SQLite-backed one by what the server answers (deploy/write_concurrency.py), reading one block schema."""
from __future__ import annotations

import anyio

from slipway.deploy import write_concurrency
from slipway.deploy.prefect_api import PrefectApi, PrefectSettings
from slipway.project.config import PrefectConfig


def test_auto_tells_the_servers_database(prefect_server):
    async def writers():
        settings = PrefectSettings("local", PrefectConfig(api_url=prefect_server.api_url, write_concurrency="auto"))
        async with PrefectApi.connect(settings) as api:
            return await api.database(), await api.writers()

    database, writers = anyio.run(writers)
    expected = {"sqlite": ("sqlite", write_concurrency.SQLITE_WRITERS),
                "postgres": ("postgresql", write_concurrency.POSTGRES_WRITERS)}[prefect_server.database]
    assert (database, writers.count) == expected
    assert "auto" in writers.reason
