"""How slipway reads Prefect at scale: deployments by name in bounded requests, pages at once
(deploy/prefect_api.py), one read of a release's state for its plan (deploy/live.py). A fake client stands in for Prefect's, so the requests themselves can be counted;
the real servers are read by tests/deploy/test_reads.py."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import anyio
import httpx
import pytest

from slipway.deploy import prefect_api
from slipway.deploy.live import read_snapshot
from slipway.errors import SlipwayError
from slipway.project.config import PrefectConfig
from tests.kit.fakes import FakePrefect


class Response(SimpleNamespace):
    """A DeploymentResponse's fields, and its JSON as the client's model gives it."""

    def model_dump(self, mode: str = "json") -> dict:
        return {key: str(value) if isinstance(value, uuid.UUID) else value for key, value in vars(self).items()}


def response(flow_id, name: str, pool: str = "pool"):
    return Response(
        id=uuid.uuid4(), flow_id=flow_id, name=name, version=None, description=None, tags=[], parameters={},
        parameter_openapi_schema=None, job_variables={}, work_pool_name=pool, work_queue_name="default",
        entrypoint=None, path=None, pull_steps=None, global_concurrency_limit=None, enforce_parameter_schema=True,
        paused=False, schedules=[])


class Server:
    """Deployments of two flows; answers filters by flow name, deployment name and work pool like Prefect."""

    def __init__(self, count: int):
        self.flows = {uuid.uuid4(): "alpha", uuid.uuid4(): "beta"}
        ids = list(self.flows)
        self.deployments = [response(ids[i % 2], f"d-{i:04d}") for i in range(count)]
        self.filters: list[dict] = []
        self.pages: list[int] = []
        self.counts = 0
        self.in_flight = self.peak = 0

    def matching(self, flow_filter=None, deployment_filter=None, work_pool_filter=None):
        out = self.deployments
        if flow_filter is not None:
            out = [d for d in out if self.flows[d.flow_id] in flow_filter.name.any_]
        if deployment_filter is not None:
            out = [d for d in out if d.name in deployment_filter.name.any_]
        if work_pool_filter is not None:
            out = [d for d in out if d.work_pool_name in work_pool_filter.name.any_]
        return sorted(out, key=lambda d: d.name)

    async def read_deployments(self, limit, offset, sort, **filters):
        assert limit <= 200
        self.pages.append(offset)
        if "deployment_filter" in filters:
            self.filters.append({"names": len(filters["deployment_filter"].name.any_)})
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await anyio.sleep(0.01)
        self.in_flight -= 1
        return self.matching(**filters)[offset:offset + limit]

    async def read_flows(self, flow_filter, limit):
        return [SimpleNamespace(id=i, name=n) for i, n in self.flows.items() if i in flow_filter.id.any_]

    async def request(self, method, path, json=None):
        from prefect.client.schemas.filters import DeploymentFilter, FlowFilter, WorkPoolFilter

        assert (method, path) == ("POST", "/deployments/count")
        self.counts += 1
        filters = {arg: model.model_validate(json[key]) for key, arg, model in (
            ("flows", "flow_filter", FlowFilter), ("deployments", "deployment_filter", DeploymentFilter),
            ("work_pools", "work_pool_filter", WorkPoolFilter)) if key in json}
        return httpx.Response(200, json=len(self.matching(**filters)),
                              request=httpx.Request(method, "http://x/api" + path))


def api_for(server: Server) -> prefect_api.PrefectApi:
    return prefect_api.PrefectApi(server, prefect_api.PrefectSettings("local", PrefectConfig(api_url="http://x/api", write_concurrency=1)))


def test_a_thousand_names_are_read_in_bounded_requests_not_one_per_deployment():
    server = Server(1000)
    names = [f"{'alpha' if i % 2 == 0 else 'beta'}/d-{i:04d}" for i in range(0, 1000, 2)]  # 500 of them
    found = anyio.run(api_for(server).read_deployments, names + ["alpha/missing"])
    assert sum(v is not None for v in found.values()) == 500 and found["alpha/missing"] is None
    # 501 names: 200 + 200 + 101 per request; a chunk of 200 that finds 200 asks whether there are more
    assert sorted(f["names"] for f in server.filters) == [101, 200, 200]
    assert server.counts == 2
    assert server.peak > 1  # the three requests at once


def test_a_pool_of_a_thousand_is_read_in_pages_fetched_at_once():
    server = Server(1000)
    live = anyio.run(api_for(server).deployments_in_pool, "pool")
    assert len(live) == 1000 and len({d.full_name for d in live}) == 1000
    assert sorted(server.pages) == [0, 200, 400, 600, 800] and server.counts == 1
    assert server.peak == 4  # the first page alone, then the other four at once


def test_a_pool_that_fits_one_page_is_one_request():
    server = Server(150)
    assert len(anyio.run(api_for(server).deployments_in_pool, "pool")) == 150
    assert server.pages == [0] and server.counts == 0



def test_a_failed_read_is_raised_as_itself_and_the_other_reads_stop():
    """One of three name requests fails for good (a 404 is not read again): the caller gets that error, not
    an exception group, and no request is left running."""
    server = Server(1000)
    real = server.read_deployments

    async def read_deployments(limit, offset, sort, **filters):
        if "d-0400" in filters["deployment_filter"].name.any_:
            request = httpx.Request("POST", "http://x/api/deployments/filter")
            raise httpx.HTTPStatusError("HTTP 404", request=request, response=httpx.Response(404, request=request))
        return await real(limit, offset, sort, **filters)

    server.read_deployments = read_deployments
    names = [f"{'alpha' if i % 2 == 0 else 'beta'}/d-{i:04d}" for i in range(0, 1000, 2)]
    with pytest.raises(httpx.HTTPStatusError, match="HTTP 404"):
        anyio.run(api_for(server).read_deployments, names)


def test_one_snapshot_reads_the_pool_once_and_by_name_only_what_the_pool_lacks():
    fake = FakePrefect()
    for i in range(5):
        fake.add("flow", f"d{i}", pool="pool")
    fake.add("flow", "moved", pool="elsewhere")
    calls = []
    by_names = fake.read_deployments

    async def read_deployments(names):
        calls.append(sorted(names))
        return await by_names(names)

    fake.read_deployments = read_deployments
    names = [f"flow/d{i}" for i in range(5)] + ["flow/moved", "flow/new"]
    snapshot = anyio.run(read_snapshot, fake, "pool", names)
    assert len(snapshot.in_pool) == 5
    assert calls == [["flow/moved", "flow/new"]]
    assert snapshot.by_name["flow/moved"].work_pool_name == "elsewhere" and snapshot.by_name["flow/new"] is None
    assert all(snapshot.by_name[f"flow/d{i}"].work_pool_name == "pool" for i in range(5))
    calls.clear()
    anyio.run(read_snapshot, fake, "pool", names[:5])  # a redeploy: nothing read by name
    assert calls == []


def test_a_snapshot_read_that_fails_is_raised_as_itself():
    fake = FakePrefect()

    async def broken():
        raise SlipwayError("the automations cannot be read", "check the server")

    fake.read_owned_automations = broken
    with pytest.raises(SlipwayError, match="automations cannot be read"):
        anyio.run(read_snapshot, fake, "pool", ["flow/d0"])
