"""Plan and apply deployments and the work pool through Prefect's own client.

`plan` reads and compares; `apply` writes only what the plan says changed:
- an unchanged deployment gets no request at all, so its schedules (and their ids, and a pause an operator
  made in the UI) stay exactly as they are;
- a changed deployment gets one PATCH with only the changed fields, and its schedules are reconciled one
  by one by slug (update in place, create, delete) — never "delete all, recreate all";
- a new deployment is created with its flow (`create_flow_from_name`) and schedules.

Schedules compare semantically: a cron compares by its fields and timezone, an interval by its length
(and anchor only when declared), an rrule by its rule lines (the DTSTART Prefect injects into a bare rrule
is not a change). `active` is compared only when declared in deployments.yaml (see deployments.py).
"""
from __future__ import annotations

import datetime
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import anyio

from slipway.config import EnvironmentConfig
from slipway.deployments import ScheduleDecl
from slipway.errors import SlipwayError

MAX_CONCURRENT_REQUESTS = 8  # reads
# Writes go one at a time. A self-hosted server on SQLite serialises them anyway, and a second concurrent
# write can wait ~2 s on the database lock before the server answers 503 (measured in bench/: 10 updates
# took 2.2 s one at a time, 4 s two at a time; 100 creates took the same either way).
MAX_CONCURRENT_WRITES = 1
# A refused write is sent again by `write` below, after 0.1 s, 0.2 s, 0.4 s... (with jitter): a SQLite lock
# is held for milliseconds, and Prefect's client would wait 2 s, then 4 s, for each refusal.
WRITE_ATTEMPTS = 7
FIRST_RETRY_SECONDS = 0.1
DEFAULT_WORK_QUEUE = "default"
APP_ROOT = "/opt/prefect"
PULL_STEPS = [{"prefect.deployments.steps.set_working_directory": {"directory": APP_ROOT}}]


@dataclass
class DesiredSchedule:
    slug: str
    decl: ScheduleDecl

    def create_action(self):
        from prefect.client.schemas.actions import DeploymentScheduleCreate

        return DeploymentScheduleCreate(schedule=self.decl.to_prefect(),
                                        active=True if self.decl.active is None else self.decl.active,
                                        parameters=dict(self.decl.parameters), slug=self.slug)


@dataclass
class DesiredDeployment:
    """Everything slipway registers for one deployment: data only, so a rollback can rebuild it."""

    flow_name: str
    name: str
    version: str
    description: str | None
    tags: list[str]
    parameters: dict[str, Any]
    parameter_openapi_schema: dict[str, Any]
    job_variables: dict[str, Any]
    work_pool_name: str
    work_queue_name: str | None
    entrypoint: str
    concurrency_limit: int | None
    enforce_parameter_schema: bool
    schedules: list[DesiredSchedule] = field(default_factory=list)
    pull_steps: list[dict[str, Any]] = field(default_factory=lambda: [dict(s) for s in PULL_STEPS])

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"


# --- client ------------------------------------------------------------------------------------------------

def api_key_for(env: EnvironmentConfig, env_name: str) -> str | None:
    name = env.prefect.api_key_env
    if not name:
        return None
    value = os.environ.get(name)
    if not value:
        raise SlipwayError(f"slipway.yaml: environments.{env_name}.prefect.api_key_env: ${name} is not set",
                           f"export {name} with the Prefect API key (never put the key in a file)")
    return value


@asynccontextmanager
async def prefect_client(env: EnvironmentConfig, env_name: str) -> AsyncIterator[Any]:
    """A Prefect client for the environment's API, checked to answer before anything else is done."""
    from prefect.client.orchestration import PrefectClient

    url = env.prefect.api_url
    async with PrefectClient(api=url, api_key=api_key_for(env, env_name)) as client:
        failure = await client.api_healthcheck()
        if failure is not None:
            reason = " ".join(str(failure).split())[:200] or type(failure).__name__
            raise SlipwayError(
                f"the Prefect API at {url} (slipway.yaml environments.{env_name}.prefect.api_url) "
                f"does not answer: {reason}",
                "start it (`make up` for the local one) or fix api_url; nothing was changed")
        yield client


def _not_applied(exc: Exception) -> bool:
    """The server certainly did not apply the write: it refused it (503 database locked, 429 rate limited,
    502 from a proxy) or the connection never opened. A read error after sending is NOT retried: the write
    may have landed, and a schedule create sent twice would make two schedules."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in (429, 502, 503)
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


async def write(call, *args, **kwargs):
    """`await call(*args, **kwargs)` (one client write), retried quickly while the server did not apply it.

    Prefect's own retries are off for the call (PREFECT_CLIENT_MAX_RETRIES=0) so that this loop decides:
    a `Retry-After` the server sends is honoured, otherwise the wait doubles from FIRST_RETRY_SECONDS."""
    import random

    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    for attempt in range(WRITE_ATTEMPTS):
        try:
            if PREFECT_CLIENT_MAX_RETRIES.value() == 0:  # apply_* turned them off once for all its writes
                return await call(*args, **kwargs)
            with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):  # ~20 ms: once, not per write
                return await call(*args, **kwargs)
        except Exception as exc:
            if attempt == WRITE_ATTEMPTS - 1 or not _not_applied(exc):
                raise
            after = getattr(getattr(exc, "response", None), "headers", {}).get("Retry-After", "")
            wait = float(after) if after.replace(".", "", 1).isdigit() else FIRST_RETRY_SECONDS * 2 ** attempt
            await anyio.sleep(wait * (1 + random.random() / 2))


def explain_http_error(exc: Exception, what: str) -> SlipwayError:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        body = exc.response.text.strip()
        detail = f"HTTP {exc.response.status_code}: {body[:300]}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return SlipwayError(f"Prefect refused to {what}: {detail}")


# --- work pool ---------------------------------------------------------------------------------------------

async def read_work_pool(client, name: str):
    from prefect.exceptions import ObjectNotFound

    try:
        return await client.read_work_pool(name)
    except ObjectNotFound:
        return None


def plan_work_pool(live, name: str, pool_type: str, template: dict | None, managed: bool) -> dict:
    """created / updated (template differs; only for a pool whose template is in the repo) / unchanged."""
    if live is None:
        return {"name": name, "type": pool_type, "action": "created", "changes": []}
    if live.type != pool_type:
        raise SlipwayError(
            f"work pool '{name}' exists with type '{live.type}', slipway.yaml says '{pool_type}'",
            "rename the pool in slipway.yaml or delete the existing pool")
    if managed and live.base_job_template != template:
        return {"name": name, "type": pool_type, "action": "updated", "changes": ["base_job_template"]}
    return {"name": name, "type": pool_type, "action": "unchanged", "changes": []}


async def apply_work_pool(client, plan: dict, template: dict) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate

    try:
        if plan["action"] == "created":
            await write(client.create_work_pool, WorkPoolCreate(name=plan["name"], type=plan["type"],
                                                                base_job_template=template))
        elif plan["action"] == "updated":
            await write(client.update_work_pool, plan["name"], WorkPoolUpdate(base_job_template=template))
    except Exception as exc:
        if isinstance(exc, SlipwayError):
            raise
        raise explain_http_error(exc, f"{plan['action'][:-1]} work pool '{plan['name']}'") from None


# --- deployments: compare ----------------------------------------------------------------------------------

async def read_deployments(client, names: list[str]) -> dict[str, Any]:
    """name -> DeploymentResponse, or None when it does not exist yet. Reads run concurrently (bounded)."""
    from prefect.exceptions import ObjectNotFound

    limiter = anyio.CapacityLimiter(MAX_CONCURRENT_REQUESTS)
    found: dict[str, Any] = {}

    async def read(name: str) -> None:
        async with limiter:
            try:
                found[name] = await client.read_deployment_by_name(name)
            except ObjectNotFound:
                found[name] = None

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(read, name)
    return found


def _rrule_lines(rrule: str) -> list[str]:
    """The rule's lines, order-free, with the optional `RRULE:` prefix of a bare rule removed."""
    lines = (line.strip() for line in rrule.splitlines() if line.strip())
    return sorted(line[len("RRULE:"):] if line.upper().startswith("RRULE:") else line for line in lines)


def schedule_matches(decl: ScheduleDecl, live_schedule) -> bool:
    """Does the live schedule (a Prefect schedule model) mean what the declaration says?"""
    from prefect.client.schemas.schedules import (
        CronSchedule,
        IntervalSchedule,
        RRuleSchedule,
    )

    want = decl.to_prefect()
    if type(want) is not type(live_schedule):
        return False
    if isinstance(want, CronSchedule):
        return (" ".join(want.cron.split()) == " ".join(live_schedule.cron.split())
                and (want.timezone or "UTC") == (live_schedule.timezone or "UTC")
                and want.day_or == live_schedule.day_or)
    if isinstance(want, IntervalSchedule):
        if want.interval != live_schedule.interval:
            return False
        if decl.timezone is not None and want.timezone != live_schedule.timezone:
            return False
        # Without a declared anchor Prefect anchors at creation time: any anchor is the declared schedule.
        return decl.anchor_date is None or want.anchor_date == live_schedule.anchor_date
    if isinstance(want, RRuleSchedule):
        live_lines = _rrule_lines(live_schedule.rrule)
        want_lines = _rrule_lines(want.rrule)
        if not any(line.startswith("DTSTART") for line in want_lines):
            live_lines = [line for line in live_lines if not line.startswith("DTSTART")]
        return want_lines == live_lines and (want.timezone or "UTC") == (live_schedule.timezone or "UTC")
    return False


def plan_schedules(desired: list[DesiredSchedule], live: list) -> dict[str, list]:
    """Reconcile by slug: {"create": [DesiredSchedule], "update": [(live, DesiredSchedule, fields)], "delete": [live]}."""
    by_slug = {s.slug: s for s in live if s.slug}
    ops: dict[str, list] = {"create": [], "update": [], "delete": []}
    for want in desired:
        have = by_slug.pop(want.slug, None)
        if have is None:
            ops["create"].append(want)
            continue
        fields = []
        if not schedule_matches(want.decl, have.schedule):
            fields.append("schedule")
        if dict(want.decl.parameters) != dict(have.parameters or {}):
            fields.append("parameters")
        if want.decl.active is not None and want.decl.active != have.active:
            fields.append("active")
        if fields:
            ops["update"].append((have, want, fields))
    ops["delete"] = list(by_slug.values()) + [s for s in live if not s.slug]
    return ops


def _live_concurrency_limit(live) -> int | None:
    # `concurrency_limit` on the response is deprecated: the limit lives in a global concurrency limit.
    gcl = getattr(live, "global_concurrency_limit", None)
    return gcl.limit if gcl is not None else None


def deployment_changes(want: DesiredDeployment, live) -> dict[str, Any]:
    """The fields of `live` that differ from `want` (schedules as their reconcile operations)."""
    changes: dict[str, Any] = {}
    simple = {
        "version": (want.version, live.version),
        "description": (want.description, live.description),
        "parameters": (want.parameters, live.parameters),
        "parameter_openapi_schema": (want.parameter_openapi_schema, live.parameter_openapi_schema),
        "job_variables": (want.job_variables, live.job_variables),
        "entrypoint": (want.entrypoint, live.entrypoint),
        "path": (None, live.path),
        "pull_steps": (want.pull_steps, live.pull_steps),
        "enforce_parameter_schema": (want.enforce_parameter_schema, live.enforce_parameter_schema),
        "work_pool_name": (want.work_pool_name, live.work_pool_name),
        "work_queue_name": (want.work_queue_name or DEFAULT_WORK_QUEUE, live.work_queue_name),
        "concurrency_limit": (want.concurrency_limit, _live_concurrency_limit(live)),
    }
    for name, (a, b) in simple.items():
        if a != b:
            changes[name] = a
    if sorted(set(want.tags)) != sorted(set(live.tags or [])):
        changes["tags"] = want.tags
    ops = plan_schedules(want.schedules, live.schedules or [])
    if any(ops.values()):
        changes["schedules"] = ops
    return changes


def describe_changes(changes: dict[str, Any]) -> list[str]:
    """Human/JSON-friendly field list: ['version', 'job_variables', 'schedules.schedule-1.active', ...]."""
    out = [k for k in changes if k != "schedules"]
    ops = changes.get("schedules")
    if ops:
        out += [f"schedules.{s.slug}(new)" for s in ops["create"]]
        out += [f"schedules.{w.slug}.{f}" for _, w, fields in ops["update"] for f in fields]
        out += [f"schedules.{s.slug or s.id}(removed)" for s in ops["delete"]]
    return out


# --- deployments: apply ------------------------------------------------------------------------------------

async def create_deployment(client, want: DesiredDeployment, flow_ids: dict[str, UUID] | None = None) -> UUID:
    flow_ids = {} if flow_ids is None else flow_ids
    if want.flow_name not in flow_ids:  # one flow lookup per flow, not one per deployment
        flow_ids[want.flow_name] = await write(client.create_flow_from_name, want.flow_name)
    flow_id = flow_ids[want.flow_name]
    return await write(
        client.create_deployment,
        flow_id=flow_id,
        name=want.name,
        version=want.version,
        schedules=[s.create_action() for s in want.schedules],
        concurrency_limit=want.concurrency_limit,
        parameters=want.parameters,
        description=want.description,
        work_queue_name=want.work_queue_name,
        work_pool_name=want.work_pool_name,
        tags=want.tags,
        entrypoint=want.entrypoint,
        parameter_openapi_schema=want.parameter_openapi_schema,
        pull_steps=want.pull_steps,
        enforce_parameter_schema=want.enforce_parameter_schema,
        job_variables=want.job_variables,
    )


async def update_deployment(client, want: DesiredDeployment, live, changes: dict[str, Any]) -> None:
    from prefect.client.schemas.actions import DeploymentUpdate

    fields = {k: v for k, v in changes.items() if k not in ("schedules", "work_pool_name", "work_queue_name")}
    if "work_pool_name" in changes or "work_queue_name" in changes:
        fields["work_pool_name"] = want.work_pool_name
        fields["work_queue_name"] = want.work_queue_name or DEFAULT_WORK_QUEUE
    if "tags" in changes:
        fields["tags"] = want.tags
    if fields:
        # Only the changed fields are sent (exclude_unset): no `schedules` key, so the server keeps them.
        await write(client.update_deployment, live.id, DeploymentUpdate(**fields))
    ops = changes.get("schedules")
    if ops:
        for have in ops["delete"]:
            await write(client.delete_deployment_schedule, live.id, have.id)
        for have, want_s, changed in ops["update"]:
            await write(
                client.update_deployment_schedule, live.id, have.id,
                schedule=want_s.decl.to_prefect() if "schedule" in changed else None,
                active=want_s.decl.active if "active" in changed else None,
                parameters=dict(want_s.decl.parameters) if "parameters" in changed else None,
            )
        if ops["create"]:
            await write(client.create_deployment_schedules, live.id, [s.create_action() for s in ops["create"]])


def plan_deployments(desired: list[DesiredDeployment], live: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for want in desired:
        have = live.get(want.full_name)
        if have is None:
            rows.append({"name": want.full_name, "id": None, "action": "created", "changes": [],
                         "_changes": None, "_live": None, "_want": want})
            continue
        changes = deployment_changes(want, have)
        rows.append({"name": want.full_name, "id": str(have.id),
                     "action": "updated" if changes else "unchanged",
                     "changes": describe_changes(changes), "_changes": changes, "_live": have, "_want": want})
    return rows


async def apply_deployments(client, rows: list[dict[str, Any]], reporter) -> None:
    """Apply planned rows concurrently (at most MAX_CONCURRENT_WRITES at once); fills each row's id."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):  # `write` retries; the tasks inherit it
        await _apply_deployments(client, rows, reporter)


async def _apply_deployments(client, rows: list[dict[str, Any]], reporter) -> None:
    limiter = anyio.CapacityLimiter(MAX_CONCURRENT_WRITES)
    flow_ids: dict[str, UUID] = {}

    async def apply(row: dict[str, Any]) -> None:
        if row["action"] == "unchanged":
            return
        async with limiter:
            try:
                if row["action"] == "created":
                    row["id"] = str(await create_deployment(client, row["_want"], flow_ids))
                else:
                    await update_deployment(client, row["_want"], row["_live"], row["_changes"])
            except Exception as exc:
                if isinstance(exc, SlipwayError):
                    raise
                raise explain_http_error(exc, f"{row['action'][:-1]} deployment {row['name']}") from None
        reporter.step(f"{row['action']} {row['name']}")

    async with anyio.create_task_group() as tg:
        for row in rows:
            tg.start_soon(apply, row)


def public_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
