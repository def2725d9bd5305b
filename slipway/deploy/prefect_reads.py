"""What one release's plan reads from Prefect, read with plain HTTP: no Prefect import.

Importing Prefect takes about 2.5 s on this project's machines, longer than everything else a redeploy that
changes nothing does. This module reads the same things PrefectApi reads for a plan (deploy/live.py's
read_snapshot: the work pool, every deployment in it, the release's deployments elsewhere, slipway's
automations; plus the last entry of the environment's history and the pull-credentials block) with the same
requests, and turns the answers into the same plain values (deploy/live.py's converters), so that
deploy/unchanged.py can tell in well under a second whether anything changed since a full run checked it.

A read the server could not answer for a moment (a dropped connection, 502/503/504: a SQLite-backed server
answers 503 while its database is locked) is sent again twice, briefly; a read that still fails, or is slow
(TIMEOUT_SECONDS), sends the run down the full path, which retries longer and explains.
"""
from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests

from slipway.deploy.live import LiveSnapshot, deployment_from_json, pool_from_json
from slipway.deploy.prefect_api import NAMES_PER_REQUEST, PAGE_SIZE, READ_CONCURRENCY, PrefectSettings
from slipway.deploy.triggers import owner_resource, runs_deployment

TIMEOUT_SECONDS = 10
READ_ATTEMPTS = 3
FIRST_RETRY_SECONDS = 0.1  # doubled at each attempt: 0.3 s at most before the full path takes over
RETRIED_STATUSES = (502, 503, 504)


def headers(settings: PrefectSettings) -> dict[str, str]:
    """The Authorization header Prefect's client sends for these credentials (an auth string wins)."""
    credentials = settings.credentials()
    if "auth_string" in credentials:
        return {"Authorization": "Basic " + base64.b64encode(credentials["auth_string"].encode()).decode()}
    if "api_key" in credentials:
        return {"Authorization": f"Bearer {credentials['api_key']}"}
    return {}


class PlainReads:
    """Reads of one environment's Prefect API: `requests` (which the registry client has imported already;
    httpx's import costs a fifth of a second more), concurrent reads on threads."""

    def __init__(self, settings: PrefectSettings):
        self.base = settings.api_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers(settings))
        self.pool = ThreadPoolExecutor(max_workers=READ_CONCURRENCY, thread_name_prefix="slipway-read")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    def __enter__(self) -> PlainReads:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _get(self, path: str, **params: str) -> Any | None:
        """JSON, or None for 404."""
        response = self._send("GET", path, params=params)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        """A query (POST .../filter, .../count): it reads, so it is sent again like a GET."""
        response = self._send("POST", path, json=body)
        response.raise_for_status()
        return response.json()

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        def send() -> requests.Response:
            return self.session.request(method, self.base + path, timeout=TIMEOUT_SECONDS, **kwargs)

        for attempt in range(READ_ATTEMPTS - 1):
            try:
                response = send()
            except requests.Timeout:  # a slow server is the full path's to wait for
                raise
            except requests.ConnectionError:
                pass
            else:
                if response.status_code not in RETRIED_STATUSES:
                    return response
            time.sleep(FIRST_RETRY_SECONDS * 2 ** attempt)
        return send()  # the last attempt: whatever it answers, or raises, is the caller's

    def work_pool(self, name: str) -> dict[str, Any] | None:
        return self._get(f"/work_pools/{quote(name, safe='')}")

    def deployments(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Every deployment matching `filters`, each with its flow's name (`flow_name`), paged as PrefectApi
        pages them: the first page, then (when it is full) the count and the other pages at once."""
        def page(offset: int) -> list[dict[str, Any]]:
            return self._post("/deployments/filter", {**filters, "sort": "NAME_ASC", "limit": PAGE_SIZE,
                                                      "offset": offset})

        pages = [page(0)]
        if len(pages[0]) == PAGE_SIZE:
            total = int(self._post("/deployments/count", filters))
            pages += list(self.pool.map(page, range(PAGE_SIZE, total, PAGE_SIZE)))
        found = list({d["id"]: d for chunk in pages for d in chunk}.values())
        flow_ids = sorted({d["flow_id"] for d in found})
        names: dict[str, str] = {}
        for start in range(0, len(flow_ids), PAGE_SIZE):
            for flow in self._post("/flows/filter", {"flows": {"id": {"any_": flow_ids[start:start + PAGE_SIZE]}},
                                                     "limit": PAGE_SIZE}):
                names[flow["id"]] = flow["name"]
        return [{**d, "flow_name": names.get(d["flow_id"], "?")} for d in found]

    def automations(self) -> dict[str, list[dict[str, Any]]]:
        """slipway's trigger automations by the deployment they belong to, as PrefectApi.read_owned_automations."""
        every: list[dict[str, Any]] = []
        while True:
            page = self._post("/automations/filter", {"automations": None, "sort": None, "limit": PAGE_SIZE,
                                                      "offset": len(every)})
            every += page
            if len(page) < PAGE_SIZE:
                break
        out: dict[str, list[dict[str, Any]]] = {}
        for automation in every:
            deployment_id = runs_deployment(automation)
            if deployment_id:
                out.setdefault(owner_resource(deployment_id), []).append(automation)
        return out

    def last_artifact_data(self, key: str) -> Any:
        """The data of the newest version of artifact `key` (the environment's history), None when absent."""
        found = self._post("/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC",
                                                 "limit": 1, "offset": 0})
        return found[0].get("data") if found else None

    def block_document_id(self, block_type_slug: str, name: str) -> str | None:
        found = self._get(f"/block_types/slug/{quote(block_type_slug, safe='')}/block_documents/name/"
                          f"{quote(name, safe='')}", include_secrets="false")
        return str(found["id"]) if found is not None else None

    def snapshot(self, pool_name: str, names: list[str]) -> LiveSnapshot:
        """deploy/live.py's read_snapshot, with these reads: the pool, its deployments and the automations at
        once, then by name the release's deployments the pool does not hold."""
        pool = self.pool.submit(self.work_pool, pool_name)
        automations = self.pool.submit(self.automations)
        in_pool = [deployment_from_json(d, d["flow_name"])
                   for d in self.deployments({"work_pools": {"name": {"any_": [pool_name]}}})]
        by_name = dict.fromkeys(names)
        for live in in_pool:
            if live.full_name in by_name:
                by_name[live.full_name] = live
        missing = [name for name, live in by_name.items() if live is None]
        for start in range(0, len(missing), NAMES_PER_REQUEST):
            chunk = missing[start:start + NAMES_PER_REQUEST]
            for d in self.deployments({"flows": {"name": {"any_": sorted({n.split("/", 1)[0] for n in chunk})}},
                                       "deployments": {"name": {"any_": sorted({n.split("/", 1)[1] for n in chunk})}}}):
                live = deployment_from_json(d, d["flow_name"])
                if live.full_name in by_name:
                    by_name[live.full_name] = live
        found_pool = pool.result()
        return LiveSnapshot(pool_from_json(found_pool) if found_pool is not None else None, in_pool, by_name,
                            automations.result())
