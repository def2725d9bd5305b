"""What Prefect holds: the work pool and deployments as read from its API, as plain data.

The plan compares these with deploy/desired.py's values; nothing here imports Prefect except the two
converters from Prefect's response models, which run only where a real server was read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.deploy.desired import ScheduleSpec


@dataclass(frozen=True)
class LiveSchedule:
    id: str
    slug: str | None
    active: bool
    parameters: dict[str, Any]
    schedule: ScheduleSpec


@dataclass(frozen=True)
class LiveDeployment:
    id: str
    flow_name: str
    name: str
    version: str | None = None
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    parameter_openapi_schema: dict[str, Any] | None = None
    job_variables: dict[str, Any] = field(default_factory=dict)
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    entrypoint: str | None = None
    path: str | None = None
    pull_steps: list[dict[str, Any]] | None = None
    concurrency_limit: int | None = None
    enforce_parameter_schema: bool = True
    paused: bool = False
    schedules: list[LiveSchedule] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    concurrency_options: dict[str, Any] | None = None
    # The automations it owns (`prefect.deployment.<id>`), as deploy/triggers.py compares them; None: not read.
    automations: list[dict[str, Any]] | None = None

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"

    @property
    def image(self) -> str:
        return (self.job_variables or {}).get("image") or ""


@dataclass(frozen=True)
class LivePool:
    name: str
    type: str
    base_job_template: dict[str, Any]


def deployment_from_response(response, flow_name: str) -> LiveDeployment:
    """A Prefect `DeploymentResponse` as plain data: as its JSON, so that a deployment read through Prefect's
    client and one read with plain HTTP (deploy/prefect_reads.py) are the same value."""
    return deployment_from_json(response.model_dump(mode="json"), flow_name)


def deployment_from_json(data: dict[str, Any], flow_name: str) -> LiveDeployment:
    """A deployment as Prefect's API returns it (JSON) as plain data."""
    # `concurrency_limit` on the response is deprecated: the limit lives in a global concurrency limit.
    gcl = data.get("global_concurrency_limit")
    options = data.get("concurrency_options")
    return LiveDeployment(
        id=str(data["id"]),
        flow_name=flow_name,
        name=data["name"],
        version=data.get("version"),
        description=data.get("description"),
        tags=list(data.get("tags") or []),
        parameters=dict(data.get("parameters") or {}),
        parameter_openapi_schema=data.get("parameter_openapi_schema"),
        job_variables=dict(data.get("job_variables") or {}),
        work_pool_name=data.get("work_pool_name"),
        work_queue_name=data.get("work_queue_name"),
        entrypoint=data.get("entrypoint"),
        path=data.get("path"),
        pull_steps=data.get("pull_steps"),
        concurrency_limit=gcl.get("limit") if gcl else None,
        enforce_parameter_schema=bool(data.get("enforce_parameter_schema")),
        paused=bool(data.get("paused")),
        labels=dict(data.get("labels") or {}),
        concurrency_options={k: v for k, v in options.items() if v is not None} if options else None,
        schedules=[LiveSchedule(id=str(s["id"]), slug=s.get("slug"), active=bool(s.get("active")),
                                parameters=dict(s.get("parameters") or {}),
                                schedule=ScheduleSpec.from_api(s["schedule"]))
                   for s in data.get("schedules") or []],
    )


def pool_from_response(response) -> LivePool:
    return pool_from_json(response.model_dump(mode="json"))


def pool_from_json(data: dict[str, Any]) -> LivePool:
    return LivePool(name=data["name"], type=data["type"], base_job_template=data.get("base_job_template") or {})


@dataclass(frozen=True)
class LiveSnapshot:
    """What Prefect holds for one release in one environment, read for its plan (pipeline.plan_release)."""

    pool: LivePool | None
    in_pool: list[LiveDeployment]  # every deployment in the environment's work pool
    by_name: dict[str, LiveDeployment | None]  # the release's deployments, wherever they are; None: absent
    automations: dict[str, list[dict[str, Any]]]  # slipway's trigger automations, by owner resource


async def read_snapshot(api, pool_name: str, names: list[str]) -> LiveSnapshot:
    """The work pool, its deployments and slipway's automations (read at once), then by name only the
    release's deployments the pool does not hold (new ones, or ones in another pool): a redeploy reads each
    deployment once, not twice. The first failed read is raised as itself once the others have stopped."""
    import anyio

    got: dict[str, Any] = {}
    failures: list[Exception] = []

    async def read(key: str, call) -> None:
        try:
            got[key] = await call()
        except Exception as exc:
            failures.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read, "pool", lambda: api.read_work_pool(pool_name))
        tg.start_soon(read, "in_pool", lambda: api.deployments_in_pool(pool_name))
        tg.start_soon(read, "automations", api.read_owned_automations)
    if failures:
        raise failures[0]
    by_name: dict[str, LiveDeployment | None] = dict.fromkeys(names)
    for live in got["in_pool"]:
        if live.full_name in by_name:
            by_name[live.full_name] = live
    missing = [name for name, live in by_name.items() if live is None]
    if missing:
        by_name.update(await api.read_deployments(missing))
    return LiveSnapshot(got["pool"], got["in_pool"], by_name, got["automations"])
