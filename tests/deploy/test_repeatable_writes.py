"""The writes slipway sends again when their answer was lost (`PrefectApi.write_repeatable`) leave, on the kit's
real Prefect servers (SQLite and PostgreSQL), exactly what one sending leaves: the deployment create is an
upsert by flow and name that recreates its schedules from the request, a PATCH sets the same fields, a delete
of what is gone is taken as done. If a Prefect release changed any of that, the retry would double a
schedule or fail a release, and this test would say so first."""
from __future__ import annotations

import uuid

import anyio

from slipway.deploy.desired import DesiredDeployment, DesiredSchedule
from slipway.deploy.ownership import PAUSE_TAG
from slipway.deploy.plan import PlanRow
from slipway.deploy.prefect_api import PrefectApi, PrefectSettings
from slipway.project.config import PrefectConfig
from slipway.project.declarations import ScheduleDecl


def test_each_repeatable_write_sent_twice_leaves_what_one_sending_leaves(prefect_server):
    suffix = uuid.uuid4().hex[:8]
    pool = f"repeat-{suffix}"
    want = DesiredDeployment(
        flow_name=f"repeat-{suffix}", name="nightly", version="v1", description="sent twice", tags=["t"],
        parameters={}, parameter_openapi_schema={"type": "object", "properties": {}},
        job_variables={"image": "registry.invalid/x@sha256:" + "0" * 64}, work_pool_name=pool,
        work_queue_name=None, entrypoint="flows/x.py:x", concurrency_limit=None, enforce_parameter_schema=True,
        pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/prefect"}}],
        schedules=[DesiredSchedule("schedule-1", ScheduleDecl(cron="0 3 * * *"))],
        labels={"slipway.test": suffix})

    async def run():
        from prefect.client.schemas.actions import WorkPoolCreate

        settings = PrefectSettings("local", PrefectConfig(api_url=prefect_server.api_url))
        async with PrefectApi.connect(settings) as api:
            await api.client.create_work_pool(WorkPoolCreate(name=pool, type="docker"))
            flow_ids: dict = {}
            first = await api.create_deployment(PlanRow(want, None, "created"), flow_ids)
            flow_ids.clear()  # the flow is asked for again too
            second = await api.create_deployment(PlanRow(want, None, "created"), flow_ids)
            schedules = await api.client.read_deployment_schedules(first)
            in_pool = await api.deployments_in_pool(pool)

            live = in_pool[0]
            await api.pause_deployment(live)
            await api.pause_deployment(live)
            paused = await api.client.read_deployment(first)

            await api.delete_deployment(live)
            await api.delete_deployment(live)  # already gone: done, not an error
            after = await api.deployments_in_pool(pool)
            return first, second, schedules, in_pool, paused, after

    first, second, schedules, in_pool, paused, after = anyio.run(run)
    assert first == second
    assert [d.full_name for d in in_pool] == [want.full_name]
    assert [(s.slug, s.schedule.cron) for s in schedules] == [("schedule-1", "0 3 * * *")]
    assert paused.paused and paused.tags.count(PAUSE_TAG) == 1
    assert after == []


def test_the_same_create_sent_twice_at_once_leaves_one_deployment_with_one_schedule(prefect_server):
    # The retry of a create whose first answer was lost may reach the server while the first is still being
    # applied: the two upserts of one flow and name must still end as one deployment and one schedule.
    suffix = uuid.uuid4().hex[:8]
    pool = f"overlap-{suffix}"
    want = DesiredDeployment(
        flow_name=f"overlap-{suffix}", name="nightly", version="v1", description=None, tags=[], parameters={},
        parameter_openapi_schema={"type": "object", "properties": {}},
        job_variables={"image": "registry.invalid/x@sha256:" + "0" * 64}, work_pool_name=pool,
        work_queue_name=None, entrypoint="flows/x.py:x", concurrency_limit=None, enforce_parameter_schema=True,
        pull_steps=[], schedules=[DesiredSchedule("schedule-1", ScheduleDecl(cron="0 3 * * *"))])

    async def run():
        from prefect.client.schemas.actions import WorkPoolCreate

        settings = PrefectSettings("local", PrefectConfig(api_url=prefect_server.api_url, write_concurrency=2))
        async with PrefectApi.connect(settings) as api:
            await api.client.create_work_pool(WorkPoolCreate(name=pool, type="docker"))
            ids: list[str] = []

            async def create() -> None:
                ids.append(await api.create_deployment(PlanRow(want, None, "created"), {}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(create)
                tg.start_soon(create)
            return ids, await api.client.read_deployment_schedules(ids[0]), await api.deployments_in_pool(pool)

    ids, schedules, in_pool = anyio.run(run)
    assert len(ids) == 2 and ids[0] == ids[1]
    assert [d.full_name for d in in_pool] == [want.full_name]
    assert [s.slug for s in schedules] == ["schedule-1"]
