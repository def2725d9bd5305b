"""slipway's paged reads against the kit's real Prefect servers (SQLite and PostgreSQL): the count request
(`POST /deployments/count`, which Prefect's client has no method for) is understood with each filter, and a
pool read past its first page gets every deployment once. The page is made small so that a few deployments
take several pages."""
from __future__ import annotations

import uuid

import anyio

from slipway.deploy import prefect_api
from slipway.deploy.prefect_api import PrefectApi, PrefectSettings
from slipway.project.config import PrefectConfig


def test_counted_pages_read_every_deployment_once(prefect_server, monkeypatch):
    monkeypatch.setattr(prefect_api, "PAGE_SIZE", 2)
    monkeypatch.setattr(prefect_api, "NAMES_PER_REQUEST", 2)
    suffix = uuid.uuid4().hex[:8]
    pool, flows = f"reads-{suffix}", [f"reads-a-{suffix}", f"reads-b-{suffix}"]
    names = [f"{flows[i % 2]}/d{i}" for i in range(5)]

    async def run():
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowFilter,
            FlowFilterName,
            WorkPoolFilter,
            WorkPoolFilterName,
        )

        settings = PrefectSettings("local", PrefectConfig(api_url=prefect_server.api_url))
        async with PrefectApi.connect(settings) as api:
            client = api.client
            await client.create_work_pool(WorkPoolCreate(name=pool, type="docker"))
            for name in names:
                flow, deployment = name.split("/")
                flow_id = await client.create_flow_from_name(flow)
                await client.create_deployment(flow_id=flow_id, name=deployment, work_pool_name=pool)
            in_pool = await api._count_deployments(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))
            by_name = await api._count_deployments(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flows[0]])),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["d0", "d2", "d3"])))
            return (in_pool, by_name, await api.deployments_in_pool(pool),
                    await api.read_deployments(names + [f"{flows[0]}/missing"]))

    in_pool, by_name, live, found = anyio.run(run)
    assert (in_pool, by_name) == (5, 2)  # a/d0 and a/d2 (d3 belongs to flow b)
    assert sorted(d.full_name for d in live) == sorted(names)
    assert {name: (d.full_name if d else None) for name, d in found.items()} == {
        **{name: name for name in names}, f"{flows[0]}/missing": None}
