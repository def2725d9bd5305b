"""Writes at once against a SQLite-backed Prefect server: does a second writer help? (`python -m bench.sqlite_writers`)

Why slipway's `write_concurrency: auto` sends one write at a time to a SQLite-backed server
(deploy/write_concurrency.py), and why ten writes are part of the code-only release's floor (README,
Performance (b)). The test kit's server (SQLite, scheduler off) holds one work pool, one flow and N
deployments; each round PATCHes every deployment's image and version, with 1, 2 and 4 requests under way at
once. A refused write (503, SQLite's lock) is sent again after 0.1 s, as slipway does, and counted. Prints a
table; writes nothing to bench/results (it is evidence for a choice, not a target).
"""
from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import httpx

from bench.common import median, table
from slipway.image.engine import docker_client
from tests.kit import services

WRITERS = (1, 2, 4)


async def one_round(api_url: str, ids: list[str], writers: int, version: str) -> tuple[float, int]:
    """Every deployment PATCHed once, `writers` at a time: (seconds, refusals)."""
    turns, refused = asyncio.Semaphore(writers), 0
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        async def write(deployment_id: str) -> None:
            nonlocal refused
            async with turns:
                body = {"job_variables": {"image": f"bench:{version}-{uuid.uuid4().hex[:8]}"}, "version": version}
                while (resp := await client.patch(f"/deployments/{deployment_id}", json=body)).status_code == 503:
                    refused += 1
                    await asyncio.sleep(0.1)
                resp.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(write(i) for i in ids))
        return time.perf_counter() - start, refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per writer count (each writes every deployment)")
    args = parser.parse_args()
    engine = docker_client()
    services.prepare(engine)
    server = services.start_prefect(engine, "bench-writers")
    try:
        with httpx.Client(base_url=server.api_url, timeout=30) as client:
            client.post("/work_pools/", json={"name": "bench-writers", "type": "docker"}).raise_for_status()
            def created(path: str, body: dict) -> str:
                response = client.post(path, json=body)
                response.raise_for_status()
                return response.json()["id"]

            flow_id = created("/flows/", {"name": "bench-writers"})
            ids = [created("/deployments/", {"name": f"d-{i:03d}", "flow_id": flow_id, "work_pool_name": "bench-writers",
                                             "job_variables": {"image": "bench:0"}})
                   for i in range(args.deployments)]
        rows = []
        for writers in WRITERS:
            results = [asyncio.run(one_round(server.api_url, ids, writers, f"{writers}-{r}"))
                       for r in range(args.rounds)]
            rows.append([writers, median([s for s, _ in results]), min(s for s, _ in results),
                         max(s for s, _ in results), sum(n for _, n in results), args.rounds * len(ids)])
        print(table(f"{args.deployments} deployment PATCHes against a SQLite-backed Prefect server",
                    ["writers", "median s", "min s", "max s", "refused (503)", "writes"], rows))
    finally:
        server.remove()
        services.remove_own(engine)


if __name__ == "__main__":
    main()
