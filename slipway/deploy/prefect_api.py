"""Every call slipway makes to Prefect, through Prefect's own client: `PrefectApi`.

One `PrefectApi` per run (`PrefectApi.connect`), checked to answer before anything else is done. Reads come
back as plain data (deploy/live.py) and go in pages and concurrently; writes take a plan row
(deploy/plan.py) and send only what changed. Unit tests use the test kit's fake with the same methods.

Writes to deployments go as many at once as the environment takes (deploy/write_concurrency.py: a number
in slipway.yaml, or chosen for the server found, once per run, before the first write). The release lease's
own calls (deploy/lease.py) never queue behind them: a renewal stuck behind a thousand creates would let the
lease expire mid-release.

Retries are slipway's, not the client's (its own are turned off for the whole session):
- a read is sent again after any transport error, 429 or 5xx;
- a write only when the server certainly did not apply it — it refused it (503 database locked, 429 rate
  limited, 502 from a proxy) or the connection never opened — after 0.1 s, 0.2 s, 0.4 s... or the server's
  `Retry-After`. A write that may have landed is never sent twice: a schedule created twice is two schedules.
- except a write whose second sending leaves exactly what the first left (`write_repeatable`):
  `POST /deployments/` (an upsert by flow and name that recreates the schedules from the request), a flow by
  name, a PATCH of fields, a delete, the lease's renewal. It is also sent again when its answer was lost (a
  read timeout, a dropped connection), at most LOST_ANSWER_ATTEMPTS times: a server that stalled once under
  load must not stop a release halfway for a write that is safe to repeat.
- a `Retry-After` holds back every write of the run, not only the refused one: the server asked the client
  to slow down, and the other writers would be refused too. The lease's calls are not held back: a renewal
  must not wait out the deployments' rate limit.
"""
from __future__ import annotations

import os
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from slipway.deploy.desired import DEFAULT_WORK_QUEUE, DesiredDeployment
from slipway.deploy.live import LiveDeployment, LivePool, deployment_from_response, pool_from_response
from slipway.deploy.ownership import PAUSE_TAG
from slipway.deploy.plan import PlanRow, PoolPlan
from slipway.deploy.triggers import automations_for, owner_resource, runs_deployment
from slipway.deploy.write_concurrency import Writers, choose, database_of
from slipway.errors import SlipwayError
from slipway.invocation import program_name
from slipway.project.config import CONFIG_FILE, PrefectConfig
from slipway.timezones import list_once

READ_CONCURRENCY = 8
PAGE_SIZE = 200  # the server's default (and maximum) page for filters
NAMES_PER_REQUEST = 200  # deployment names in one filter request
WRITE_ATTEMPTS = 7
# A lost answer can take the client's whole timeout (PREFECT_API_REQUEST_TIMEOUT, 60 s): a server that did not
# answer three times is down, not busy, and the release stops with one line rather than waiting minutes more.
LOST_ANSWER_ATTEMPTS = 3
FIRST_RETRY_SECONDS = 0.1

T = TypeVar("T")


@dataclass(frozen=True)
class PrefectSettings:
    """How to reach one environment's Prefect API (slipway.yaml `environments.<env>.prefect`)."""

    env_name: str
    config: PrefectConfig
    up_starts_it: bool = False  # `slipway up` starts this server (Project.up_serves): the hint names it

    @property
    def api_url(self) -> str:
        return self.config.api_url

    @property
    def field(self) -> str:
        return f"{CONFIG_FILE}: environments.{self.env_name}.prefect"

    def credentials(self) -> dict[str, str]:
        """The client's credentials from the environment variables the configuration names (never a file):
        an API key for Prefect Cloud, or a basic-auth string for a self-hosted server with authentication."""
        out = {}
        for key, name, what in (("api_key", self.config.api_key_env, "the Prefect Cloud API key"),
                                ("auth_string", self.config.auth_string_env,
                                 "the server's basic-auth string (user:password)")):
            if not name:
                continue
            value = os.environ.get(name)
            if not value:
                which = "api_key_env" if key == "api_key" else "auth_string_env"
                raise SlipwayError(f"{self.field}.{which}: ${name} is not set",
                                   f"export {name} with {what} (never put it in a file)")
            out[key] = value
        return out


class PrefectApi:
    """The Prefect calls of one run, over one PrefectClient."""

    def __init__(self, client, settings: PrefectSettings):
        self.client = client
        self.settings = settings
        self._reads = anyio.CapacityLimiter(READ_CONCURRENCY)
        self._writers: Writers | None = None  # chosen before the first write (`writers`)
        self._writes: anyio.CapacityLimiter | None = None
        self._choosing = anyio.Lock()
        self._resume_at = 0.0  # time.monotonic() before which no write is sent (a Retry-After)
        self._flow_locks: dict[str, anyio.Lock] = {}
        # The release lease's own calls never queue behind deployment writes: a renewal that waited for a
        # long apply's writes could come after the lease expired.
        self._lease_calls = anyio.CapacityLimiter(4)

    @classmethod
    @asynccontextmanager
    async def connect(cls, settings: PrefectSettings) -> AsyncIterator[PrefectApi]:
        """A client for the environment's API, checked to answer before anything else is done."""
        from prefect.client.orchestration import PrefectClient

        credentials = settings.credentials()
        list_once()  # every schedule read back is validated by Prefect's models
        with client_retries_off():
            async with PrefectClient(api=settings.api_url, **credentials) as client:
                failure = await client.api_healthcheck()
                if failure is not None:
                    reason = " ".join(str(failure).split())[:200] or type(failure).__name__
                    raise SlipwayError(
                        f"the Prefect API at {settings.api_url} ({settings.field}.api_url) does not answer: {reason}",
                        (f"start it with `{program_name()} up`" if settings.up_starts_it else "start it")
                        + " or fix api_url; nothing was changed") from failure
                await check_credentials(client, settings)
                yield cls(client, settings)

    # -- reads ---------------------------------------------------------------------------------------------

    async def read_work_pool(self, name: str) -> LivePool | None:
        from prefect.exceptions import ObjectNotFound

        try:
            return pool_from_response(await self._read(self.client.read_work_pool, name))
        except ObjectNotFound:
            return None

    async def block_document_id(self, block_type_slug: str, name: str) -> str | None:
        """The id of the block document `name` of that type (its secrets are not read), None when absent."""
        from prefect.exceptions import ObjectNotFound

        try:
            document = await self._read(self.client.read_block_document_by_name, name, block_type_slug,
                                        include_secrets=False)
        except ObjectNotFound:
            return None
        return str(document.id)

    async def read_deployments(self, names: list[str]) -> dict[str, LiveDeployment | None]:
        """`<flow>/<deployment>` -> the deployment, or None when it does not exist yet. Filtered by flow and
        deployment names, NAMES_PER_REQUEST names per request (bounded request bodies and SQL `IN` lists
        however many deployments a release has), those requests concurrently, never one per deployment."""
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowFilter, FlowFilterName

        found: dict[str, LiveDeployment | None] = dict.fromkeys(names)

        async def read(chunk: list[str]) -> None:
            for live in await self._deployments(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=sorted({n.split("/", 1)[0] for n in chunk}))),
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(
                        any_=sorted({n.split("/", 1)[1] for n in chunk})))):
                if live.full_name in found:
                    found[live.full_name] = live

        unique = list(found)
        await _each_read(read, [unique[i:i + NAMES_PER_REQUEST] for i in range(0, len(unique), NAMES_PER_REQUEST)])
        return found

    async def deployments_in_pool(self, pool: str) -> list[LiveDeployment]:
        """Every deployment in the work pool (in pages)."""
        from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

        return await self._deployments(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])))

    async def _deployments(self, **filters) -> list[LiveDeployment]:
        """Every deployment matching `filters`: the first page, then (when it is full) the count, then the
        other pages at once: a thousand deployments in three round trips, not five, which is what matters
        against a distant server (Prefect Cloud). A deployment created after the count is not in this read,
        as it would not be in a read made a moment earlier."""
        from prefect.client.schemas.filters import FlowFilter, FlowFilterId
        from prefect.client.schemas.sorting import DeploymentSort

        pages: dict[int, list] = {}

        async def page(offset: int) -> None:
            pages[offset] = await self._read(self.client.read_deployments, **filters, limit=PAGE_SIZE,
                                             offset=offset, sort=DeploymentSort.NAME_ASC)

        await page(0)
        if len(pages[0]) == PAGE_SIZE:
            await _each_read(page, list(range(PAGE_SIZE, await self._count_deployments(**filters), PAGE_SIZE)))
        # By id: a deployment deleted between two pages shifts the next one, which may then repeat one.
        responses = list({r.id: r for offset in sorted(pages) for r in pages[offset]}.values())
        flow_ids = sorted({r.flow_id for r in responses}, key=str)
        flow_names: dict = {}
        for start in range(0, len(flow_ids), PAGE_SIZE):
            ids = flow_ids[start:start + PAGE_SIZE]
            for flow in await self._read(self.client.read_flows, flow_filter=FlowFilter(id=FlowFilterId(any_=ids)),
                                         limit=PAGE_SIZE):
                flow_names[flow.id] = flow.name
        return [deployment_from_response(r, flow_names.get(r.flow_id, "?")) for r in responses]

    async def _count_deployments(self, flow_filter=None, deployment_filter=None, work_pool_filter=None) -> int:
        """POST /deployments/count with the filters read_deployments takes (the client has no method for it)."""
        body = {key: value.model_dump(mode="json") for key, value in (
            ("flows", flow_filter), ("deployments", deployment_filter), ("work_pools", work_pool_filter)) if value}
        response = await self._read(self.client.request, "POST", "/deployments/count", json=body)
        return int(response.json())

    async def _read(self, call: Callable[..., Awaitable[T]], *args, **kwargs) -> T:
        async with self._reads:
            for attempt in range(WRITE_ATTEMPTS):
                try:
                    return await call(*args, **kwargs)
                except Exception as exc:
                    if attempt == WRITE_ATTEMPTS - 1 or not _read_again(exc):
                        raise
                    await anyio.sleep(_wait(exc, attempt))
        raise AssertionError("unreachable")

    async def database(self) -> str | None:
        """"postgresql", "sqlite" or None: what the server stores its data in (write_concurrency.py). None too
        when the server does not answer the question (retried as every read): one writer is always safe, and
        a server that cannot answer a read will say so at the first write, as one line."""
        import httpx

        try:
            response = await self._read(self.client.request, "POST", "/block_schemas/filter", json={"limit": 1})
            return database_of(response.json())
        except (httpx.HTTPError, ValueError, AttributeError, TypeError):
            return None

    # -- writes --------------------------------------------------------------------------------------------

    async def writers(self) -> Writers:
        """How many deployment writes go at once, and why; `auto` asks the server once per run."""
        async with self._choosing:
            if self._writers is None:
                from prefect.client.base import ServerType

                setting = self.settings.config.write_concurrency
                cloud, database = False, None
                if setting == "auto":
                    cloud = self.client.server_type == ServerType.CLOUD
                    database = None if cloud else await self.database()
                self._writers = choose(setting, cloud, database)
                self._writes = anyio.CapacityLimiter(self._writers.count)
        return self._writers

    async def write(self, what: str, call: Callable[..., Awaitable[T]], *args, **kwargs) -> T:
        """`await call(*args, **kwargs)`, one write, as many at once as `writers` allows, sent again only while
        the server did not apply it; a failure is a SlipwayError naming `what` (the module doc has the rules)."""
        return await self._write(False, what, call, *args, **kwargs)

    async def write_repeatable(self, what: str, call: Callable[..., Awaitable[T]], *args, **kwargs) -> T:
        """`write` for a call whose second sending leaves what the first left (an upsert, a PATCH of fields):
        also sent again when its answer was lost."""
        return await self._write(True, what, call, *args, **kwargs)

    async def _write(self, repeatable: bool, what: str, call: Callable[..., Awaitable[T]], *args, **kwargs) -> T:
        await self.writers()
        assert self._writes is not None
        return await self._send(self._writes, what, call, *args, _paced=True, _repeatable=repeatable, **kwargs)

    async def _lease_call(self, what: str, call: Callable[..., Awaitable[T]], *args, _repeatable: bool = False,
                          **kwargs) -> T:
        return await self._send(self._lease_calls, what, call, *args, _repeatable=_repeatable, **kwargs)

    async def _send(self, limiter: anyio.CapacityLimiter, what: str, call: Callable[..., Awaitable[T]],
                    *args, _paced: bool = False, _repeatable: bool = False, **kwargs) -> T:
        """One write with the retry rules. `_paced`: it first waits out a Retry-After another write was given;
        `_repeatable`: sending it twice is harmless, so a lost answer is retried too."""
        lost = 0
        async with limiter:
            for attempt in range(WRITE_ATTEMPTS):
                if _paced:
                    await self._held_back()
                try:
                    return await call(*args, **kwargs)
                except Exception as exc:
                    if isinstance(exc, SlipwayError):
                        raise
                    if answer_lost(exc) and not not_applied(exc):
                        lost += 1
                    again = not_applied(exc) or (_repeatable and answer_lost(exc) and lost < LOST_ANSWER_ATTEMPTS)
                    if attempt == WRITE_ATTEMPTS - 1 or not again:
                        raise explain_http_error(exc, what) from exc
                    wait = _wait(exc, attempt)
                    if _retry_after(exc) is not None:  # the server asked: every writer waits, not only this one
                        self._resume_at = max(self._resume_at, time.monotonic() + wait)
                    await anyio.sleep(wait)
        raise AssertionError("unreachable")

    async def _held_back(self) -> None:
        while (left := self._resume_at - time.monotonic()) > 0:
            await anyio.sleep(left)

    async def apply_pool(self, plan: PoolPlan) -> None:
        from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate

        if plan.action == "created":
            await self.write(f"create work pool '{plan.name}'", self.client.create_work_pool,
                             WorkPoolCreate(name=plan.name, type=plan.type, base_job_template=plan.template))
        elif plan.action == "updated":
            await self.write_repeatable(f"update work pool '{plan.name}'", self.client.update_work_pool,
                                        plan.name, WorkPoolUpdate(base_job_template=plan.template))

    async def flow_id(self, flow_name: str, cache: dict[str, Any]) -> Any:
        # One flow lookup per flow, not one per deployment, however many of its deployments are written at
        # once: the first asks, the others wait for its answer.
        async with self._flow_locks.setdefault(flow_name, anyio.Lock()):
            if flow_name not in cache:
                cache[flow_name] = await self.write_repeatable(f"create flow '{flow_name}'",
                                                               self.client.create_flow_from_name, flow_name)
        return cache[flow_name]

    async def create_deployment(self, row: PlanRow, flow_ids: dict[str, Any]) -> str:
        """A new deployment: one POST with everything, labels included (the client's create_deployment has no
        `labels` argument, so the request is built from its own DeploymentCreate model, as it builds it)."""
        want = row.desired
        payload = self._deployment_payload(want, await self.flow_id(want.flow_name, flow_ids),
                                           [s.create_action() for s in want.schedules], row.paused or None, row.tags)
        response = await self.write_repeatable(f"create deployment {want.full_name}", self.client.request,
                                               "POST", "/deployments/", json=payload)
        return str(response.json()["id"])

    async def upsert_deployment(self, row: PlanRow, flow_ids: dict[str, Any]) -> None:
        """An existing deployment whose labels change: Prefect 3.8's server takes labels only in `POST
        /deployments/`, an upsert (by flow and name) that replaces every field sent and recreates the schedules
        from the request. So the whole deployment is sent, each schedule keeping the on/off state of the live
        one it matches when `active` is not declared; `paused` only when the plan changes it (else kept)."""
        want = row.desired
        payload = self._deployment_payload(want, await self.flow_id(want.flow_name, flow_ids), row.schedule_creates(),
                                           row.paused if "paused" in row.fields else None, row.tags)
        await self.write_repeatable(f"update deployment {want.full_name}", self.client.request, "POST",
                                    "/deployments/", json=payload)

    @staticmethod
    def _deployment_payload(want: DesiredDeployment, flow_id, schedules: list, paused: bool | None,
                            tags: list[str]) -> dict:
        from prefect.client.schemas.actions import DeploymentCreate
        from prefect.client.schemas.objects import ConcurrencyOptions, VersionInfo

        create = DeploymentCreate(
            flow_id=flow_id, name=want.name, version=want.version,
            version_info=VersionInfo(**want.version_info) if want.version_info else None,
            schedules=schedules, concurrency_limit=want.concurrency_limit,
            concurrency_options=ConcurrencyOptions(**want.concurrency_options) if want.concurrency_options else None,
            parameters=want.parameters, description=want.description, work_pool_name=want.work_pool_name,
            tags=tags,
            labels=want.labels, entrypoint=want.entrypoint, path=None,
            parameter_openapi_schema=want.parameter_openapi_schema, pull_steps=want.pull_steps,
            enforce_parameter_schema=want.enforce_parameter_schema, job_variables=want.job_variables,
            paused=paused)
        if want.work_queue_name:
            create.work_queue_name = want.work_queue_name
        # As the client's own create_deployment: unset newer fields are left out for older servers.
        exclude = {f for f in ("work_queue_name",) if f not in create.model_fields_set}
        # concurrency_options goes even when None: an upsert must clear the collision strategy a file dropped.
        exclude |= {f for f in ("paused", "pull_steps", "enforce_parameter_schema", "version_info", "branch", "base",
                                "root") if getattr(create, f) is None}
        payload = create.model_dump(mode="json", exclude=exclude)
        if create.version_info:
            payload["version_info"] = create.version_info.model_dump(mode="json")
        return payload

    async def update_deployment(self, row: PlanRow) -> None:
        """One PATCH with only the changed fields, then the schedule operations one by one."""
        from prefect.client.schemas.actions import DeploymentUpdate
        from prefect.client.schemas.objects import ConcurrencyOptions

        want, what = row.desired, f"update deployment {row.name}"
        fields = {k: v for k, v in row.fields.items()
                  if k not in ("work_pool_name", "work_queue_name", "labels", "triggers")}
        if "work_pool_name" in row.fields or "work_queue_name" in row.fields:
            fields["work_pool_name"] = want.work_pool_name
            fields["work_queue_name"] = want.work_queue_name or DEFAULT_WORK_QUEUE
        if "concurrency_options" in fields and fields["concurrency_options"]:
            fields["concurrency_options"] = ConcurrencyOptions(**fields["concurrency_options"])
        if fields:
            # Only the changed fields are sent (exclude_unset): no `schedules` key, so the server keeps them.
            await self.write_repeatable(what, self.client.update_deployment, row.id, DeploymentUpdate(**fields))
        ops = row.schedules
        for have in ops.delete:
            await self.write(what, self.client.delete_deployment_schedule, row.id, have.id)
        for have, want_s, changed in ops.update:
            await self.write_repeatable(
                what, self.client.update_deployment_schedule, row.id, have.id,
                schedule=want_s.decl.to_prefect() if "schedule" in changed else None,
                active=want_s.decl.active if "active" in changed else None,
                parameters=dict(want_s.decl.parameters) if "parameters" in changed else None,
                slug=want_s.slug if "slug" in changed else None,
            )
        if ops.create:
            await self.write(what, self.client.create_deployment_schedules, row.id,
                             [s.create_action() for s in ops.create])

    async def pause_deployment(self, live: LiveDeployment) -> None:
        """Paused by slipway: the pause and its tag in one PATCH, so the pause is never without its mark."""
        from prefect.client.schemas.actions import DeploymentUpdate

        tags = [t for t in live.tags if t != PAUSE_TAG] + [PAUSE_TAG]
        await self.write_repeatable(f"pause deployment {live.full_name}", self.client.update_deployment,
                                    live.id, DeploymentUpdate(paused=True, tags=tags))

    async def delete_deployment(self, live: LiveDeployment) -> None:
        from prefect.exceptions import ObjectNotFound

        try:
            # Repeatable: a second delete of one that is gone answers 404, taken below as done.
            await self.write_repeatable(f"delete deployment {live.full_name}", self.client.delete_deployment,
                                        live.id)
        except SlipwayError as exc:
            if not isinstance(exc.__cause__, ObjectNotFound):  # already gone: what --prune wanted
                raise

    # -- deployment triggers (deploy/triggers.py) ----------------------------------------------------------

    async def read_owned_automations(self) -> dict[str, list[dict[str, Any]]]:
        """slipway's trigger automations (deploy/triggers.py), as JSON, by the deployment they belong to
        (`prefect.deployment.<id>`), read in pages."""
        automations: list = []
        while True:
            page = await self._read(self.client.read_automations, limit=PAGE_SIZE, offset=len(automations))
            automations += page
            if len(page) < PAGE_SIZE:
                break
        out: dict[str, list[dict[str, Any]]] = {}
        for automation in automations:
            data = automation.model_dump(mode="json")
            deployment_id = runs_deployment(data)
            if deployment_id:
                out.setdefault(owner_resource(deployment_id), []).append(data)
        return out

    async def replace_automations(self, deployment_id: str, name: str, specs: list[dict[str, Any]]) -> None:
        """The deployment's automations become its declared triggers (all deleted, then each created, as
        `prefect deploy` does); called only when they differ."""
        what = f"write the triggers of deployment {name}"
        await self.write_repeatable(what, self.client.delete_resource_owned_automations,
                                    owner_resource(deployment_id))
        for automation in automations_for(specs, name.split("/", 1)[1], deployment_id):
            await self.write(what, self.client.create_automation, automation)

    # -- the release history (deploy/history.py) ------------------------------------------------------------

    async def create_artifact(self, key: str, kind: str, description: str, data: str) -> None:
        # POST directly: the client's create_artifact also emits an event through the ambient settings'
        # events client, which is not this environment's API.
        await self.write(f"record the release in artifact {key}", self.client.request, "POST", "/artifacts/",
                         json={"key": key, "type": kind, "description": description, "data": data})

    async def read_artifact_data(self, key: str, limit: int | None = None) -> list[Any]:
        """The data of every version of artifact `key`, newest first (in pages)."""
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
        from prefect.client.schemas.sorting import ArtifactSort

        out: list[Any] = []
        offset = 0
        while limit is None or len(out) < limit:
            size = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(out))
            page = await self._read(self.client.read_artifacts,
                                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                    sort=ArtifactSort.CREATED_DESC, limit=size, offset=offset)
            out += [a.data for a in page]
            if len(page) < size:
                break
            offset += PAGE_SIZE
        return out[:limit] if limit is not None else out

    # -- verification runs (deploy/verify.py) -------------------------------------------------------------

    async def create_verification_run(self, deployment_id: str, parameters: dict[str, Any], key: str,
                                      tags: list[str]):
        """A flow run of the deployment, now. Repeatable through its idempotency key: a retry after a lost
        answer gets the same run back, not a second one."""
        return await self.write_repeatable(f"create a verification run of deployment {deployment_id}",
                                           self.client.create_flow_run_from_deployment, deployment_id,
                                           parameters=parameters, idempotency_key=key,
                                           tags=["slipway-verify", *tags])

    async def read_runs_not_ended(self, tag: str, state_types: list[str]) -> list:
        """The flow runs carrying `tag` whose state is one of `state_types` (at most 50: a handful at most)."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType

        wanted = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]), state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType(value) for value in state_types])))
        return await self._read(self.client.read_flow_runs, flow_run_filter=wanted, limit=50)

    async def read_flow_run(self, run_id):
        return await self._read(self.client.read_flow_run, run_id)

    async def cancel_flow_run(self, run_id, started: bool) -> None:
        """Stop a verification run that must not go on: one a worker runs is asked to cancel (Cancelling: the
        worker stops its container or Job), one that never started is Cancelled outright."""
        from prefect.states import Cancelled, Cancelling

        state = Cancelling(message="stopped by slipway") if started else Cancelled(message="stopped by slipway")
        await self.write_repeatable(f"cancel flow run {run_id}", self.client.set_flow_run_state, run_id, state,
                                    force=True)

    def run_url(self, run_id) -> str:
        """The run's page in the UI: Prefect Cloud's app, or a self-hosted server's UI next to its API."""
        api = self.settings.api_url.rstrip("/")
        cloud = re.match(r"https://api\.prefect\.(cloud|dev)/api/accounts/([^/]+)/workspaces/([^/]+)", api)
        if cloud:
            base = f"https://app.prefect.{cloud.group(1)}/account/{cloud.group(2)}/workspace/{cloud.group(3)}"
        else:
            base = api.removesuffix("/api")
        return f"{base}/runs/flow-run/{run_id}"

    # -- the release lease (deploy/lease.py) ---------------------------------------------------------------

    async def ensure_lock(self, name: str) -> None:
        """A global concurrency limit of one slot named `name` (created once, kept afterwards)."""
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists

        try:
            await self._lease_call(f"create concurrency limit {name}",
                                   self.client.create_global_concurrency_limit,
                                   GlobalConcurrencyLimitCreate(name=name, limit=1))
        except SlipwayError as exc:
            if not isinstance(exc.__cause__, ObjectAlreadyExists):
                raise

    async def take_lease(self, name: str, seconds: float):
        """The lease id of the limit's one slot, or None when another holder has it (HTTP 423)."""
        import httpx

        try:
            response = await self._lease_call(f"take the release lease {name}",
                                              self.client.increment_concurrency_slots_with_lease,
                                              names=[name], slots=1, mode="concurrency", lease_duration=seconds)
        except SlipwayError as exc:
            cause = exc.__cause__
            if isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423:
                return None
            raise
        return response.json()["lease_id"]

    async def reset_lock(self, name: str) -> None:
        """Set the limit's taken slots to 0: only for a slot the server lost the lease of (deploy/lease.py)."""
        from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

        await self._lease_call(f"free the release lease {name}", self.client.update_global_concurrency_limit,
                               name, GlobalConcurrencyLimitUpdate(active_slots=0), _repeatable=True)

    async def renew_lease(self, lease_id, seconds: float) -> None:
        # Repeatable: a renewal sets the lease's expiry from now, however often it lands.
        await self._lease_call("renew the release lease", self.client.renew_concurrency_lease, lease_id, seconds,
                               _repeatable=True)

    async def give_back_lease(self, lease_id) -> None:
        await self._lease_call("give back the release lease", self.client.release_concurrency_slots_with_lease,
                               lease_id)

    async def read_note(self, name: str) -> str | None:
        variable = await self._read(self.client.read_variable_by_name, name)
        return None if variable is None else str(variable.value)

    async def write_note(self, name: str, text: str) -> None:
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate

        what = f"write variable {name}"
        if await self._read(self.client.read_variable_by_name, name) is None:
            await self._lease_call(what, self.client.create_variable, VariableCreate(name=name, value=text))
        else:
            await self._lease_call(what, self.client.update_variable, VariableUpdate(name=name, value=text),
                                   _repeatable=True)

    async def drop_note(self, name: str) -> None:
        from prefect.exceptions import ObjectNotFound

        try:
            await self._lease_call(f"delete variable {name}", self.client.delete_variable_by_name, name)
        except SlipwayError as exc:
            if not isinstance(exc.__cause__, ObjectNotFound):
                raise


async def _each_read(func: Callable[[Any], Awaitable[None]], items: list) -> None:
    """`func(item)` for every item, concurrently (each read still takes its turn); on the first failure the
    other reads are cancelled and the failure is raised as itself, not wrapped in an exception group."""
    failures: list[Exception] = []

    async def run(item) -> None:
        try:
            await func(item)
        except Exception as exc:
            failures.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        for item in items:
            tg.start_soon(run, item)
    if failures:
        raise failures[0]


async def check_credentials(client, settings: PrefectSettings) -> None:
    """An authenticated read: a server with authentication answers its health check without credentials, so
    missing or wrong ones would otherwise surface at the first real call."""
    import httpx

    try:
        await client.read_work_pools(limit=1)
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status not in (401, 403):
            raise
        config = settings.config
        if config.auth_string_env:
            given = f"the basic-auth string in ${config.auth_string_env} ({settings.field}.auth_string_env)"
            fix = f"export {config.auth_string_env} with the server's PREFECT_SERVER_API_AUTH_STRING (user:password)"
        elif config.api_key_env:
            given = f"the API key in ${config.api_key_env} ({settings.field}.api_key_env)"
            fix = f"export {config.api_key_env} with a valid key for this workspace (Prefect Cloud: API keys)"
        else:
            given = "no credentials"
            fix = (f"set {settings.field}.auth_string_env (a self-hosted server with PREFECT_SERVER_API_AUTH_STRING) "
                   "or api_key_env (Prefect Cloud) to the name of the variable holding them")
        raise SlipwayError(f"the Prefect API at {settings.api_url} refused {given} (HTTP {status}); nothing was "
                           "changed", fix) from exc


@contextmanager
def client_retries_off() -> Iterator[None]:
    """Prefect's client retries a refused request itself (2 s, then 4 s...): off, so that `write` decides."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    with temporary_settings(updates={PREFECT_CLIENT_MAX_RETRIES: 0}):
        yield


def not_applied(exc: Exception) -> bool:
    """The server certainly did not apply the write (see the module doc)."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in (429, 502, 503)
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


def answer_lost(exc: Exception) -> bool:
    """The request may have reached the server but its answer did not come back (timeout, dropped connection)."""
    import httpx

    return isinstance(exc, httpx.TransportError)


def _read_again(exc: Exception) -> bool:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


def _retry_after(exc: Exception) -> float | None:
    """The server's `Retry-After` in seconds (the delta form; an HTTP date is treated as absent)."""
    after = getattr(getattr(exc, "response", None), "headers", {}).get("Retry-After", "")
    return float(after) if after.replace(".", "", 1).isdigit() else None


def _wait(exc: Exception, attempt: int) -> float:
    after = _retry_after(exc)
    wait = after if after is not None else FIRST_RETRY_SECONDS * 2 ** attempt
    return wait * (1 + random.random() / 2)


def explain_http_error(exc: Exception, what: str) -> SlipwayError:
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        body = " ".join(exc.response.text.split())
        return SlipwayError(f"Prefect refused to {what}: HTTP {exc.response.status_code}: {body[:300]}",
                            "fix what the server names, or check its health; then run the same command again")
    # No answer (the server stopped, a connection dropped): the write may or may not have landed.
    return SlipwayError(f"Prefect did not answer the request to {what} ({type(exc).__name__}: {exc})",
                        "check that the server is up; then run the same command again")
