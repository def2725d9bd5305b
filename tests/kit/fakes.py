"""Fakes for the fast unit tests of planning logic (no Docker, no server): they stand in for the two
collaborators a Target holds, with the same methods slipway calls.

- `FakeRegistry`: a repository as tag -> digest, manifests and blobs in memory (what RegistryClient reads).
- `FakePrefect`: work pools, deployments (with their labels, tags and pause), the automations they own, blocks
  and artifacts (the release history) in memory — what deploy/prefect_api.PrefectApi reads and writes —
  recording every write.

They prove the planning rules (push plan, release history, tag resolution, downgrade guard, rollback plan,
deployment diff), not a server's or a registry's behaviour: the integration tests do that against real ones.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from slipway.deploy.desired import DEFAULT_WORK_QUEUE, DesiredDeployment, ScheduleSpec
from slipway.deploy.live import LiveDeployment, LivePool, LiveSchedule
from slipway.deploy.plan import PlanRow, PoolPlan
from slipway.deploy.write_concurrency import Writers
from slipway.errors import SlipwayError
from slipway.image import release_layer
from slipway.image.build import CREATED_LABEL, REVISION_LABEL, SOURCE_LABEL, VERSION_LABEL


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """One repository of a registry, in memory."""

    kind = "fake"

    def __init__(self, host: str = "registry.test", repository: str = "team/app"):
        self.host, self.repository = host, repository
        self.tags: dict[str, str] = {}
        self.manifests: dict[str, dict] = {}
        self.blobs: dict[str, bytes] = {}
        self.reads: list[str] = []  # every blob digest read, in order

    # -- filling it ----------------------------------------------------------------------------------------

    def add_release(self, sha: str, tags: list[str] | None = None, created: str = "2026-01-01T00:00:00+00:00",
                    version: str | None = None, layer: release_layer.ReleaseLayer | None = None,
                    labels: dict[str, str] | None = None) -> str:
        """An image like `make image` builds for commit `sha`: labels in its config, the release layer last."""
        files = layer.files if layer else {"slipway.yaml": "", "deployments.yaml": ""}
        layer = layer or release_layer.ReleaseLayer(files, [])
        config_labels = {REVISION_LABEL: sha, CREATED_LABEL: created, VERSION_LABEL: version or sha[:12],
                         SOURCE_LABEL: "https://example.invalid/repo.git",
                         **release_layer.labels(layer), **(labels or {})}
        config = json.dumps({"config": {"Labels": config_labels}}).encode()
        blob = _tar({f"opt/prefect/.slipway/{n}": d for n, d in release_layer.layer_files(layer).items()})
        self.blobs[_digest(config)] = config
        self.blobs[_digest(blob)] = blob
        base = b"a content layer " + sha.encode()
        self.blobs[_digest(base)] = base
        manifest = {"schemaVersion": 2, "config": {"digest": _digest(config), "size": len(config)},
                    "layers": [{"digest": _digest(base), "size": len(base)},
                               {"digest": _digest(blob), "size": len(blob)}]}
        digest = _digest(json.dumps(manifest, sort_keys=True).encode())
        self.manifests[digest] = manifest
        for tag in tags or [sha, sha[:12]]:
            self.tags[tag] = digest
        return digest

    # -- what slipway calls --------------------------------------------------------------------------------

    def check_access(self) -> None:
        pass

    def manifest_digest(self, tag: str) -> str | None:
        if tag.startswith("sha256:"):
            return tag if tag in self.manifests else None
        return self.tags.get(tag)

    def list_tags(self) -> list[str]:
        return sorted(self.tags)

    def get_manifest(self, reference: str) -> dict:
        digest = self.manifest_digest(reference)
        if digest is None:
            raise SlipwayError(f"{self.host}/{self.repository} has no manifest {reference}", "push it")
        return self.manifests[digest]

    def get_blob(self, digest: str) -> bytes:
        self.reads.append(digest)
        return self.blobs[digest]

    def tags_immutable(self) -> bool:
        return False

    def ensure_repository(self) -> dict:
        return {"repository": self.repository, "created": False}

    def auth_config(self) -> None:
        return None


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakePrefect:
    """Work pools and deployments in memory, behind PrefectApi's methods; `writes` records each write."""

    def __init__(self):
        self.pools: dict[str, LivePool] = {}
        self.deployments: dict[str, LiveDeployment] = {}  # by id
        self.writes: list[tuple[str, str]] = []  # (what, name)
        self.fail_on: set[str] = set()  # deployment names whose write fails (a server refusing it)
        self.leases: dict[str, str] = {}  # lock name -> lease id (one slot each)
        self.notes: dict[str, str] = {}
        self.automations: dict[str, list[dict]] = {}  # owner resource -> automations (JSON)
        self.blocks: dict[tuple[str, str], str] = {}  # (block type slug, name) -> block document id
        self.artifacts: list[dict] = []  # every artifact version, oldest first

    def connector(self, settings):
        """What Target.connector is: settings -> an async context manager yielding this fake."""
        @asynccontextmanager
        async def connect():
            yield self
        return connect()

    # -- filling it ----------------------------------------------------------------------------------------

    def add(self, flow_name: str, name: str, image: str = "", pool: str = "pool", paused: bool = False,
            **fields: Any) -> LiveDeployment:
        """A deployment registered by other means (the UI, `prefect deploy`, another tool): no slipway labels
        unless given."""
        live = LiveDeployment(id=str(uuid.uuid4()), flow_name=flow_name, name=name, work_pool_name=pool,
                              job_variables={"image": image} if image else {}, paused=paused, **fields)
        self.deployments[live.id] = live
        return live

    def by_name(self, full_name: str) -> LiveDeployment | None:
        return next((d for d in self.deployments.values() if d.full_name == full_name), None)

    # -- reads ---------------------------------------------------------------------------------------------

    async def read_work_pool(self, name: str) -> LivePool | None:
        return self.pools.get(name)

    async def read_deployments(self, names: list[str]) -> dict[str, LiveDeployment | None]:
        return {name: self.by_name(name) for name in names}

    async def deployments_in_pool(self, pool: str) -> list[LiveDeployment]:
        return [d for d in self.deployments.values() if d.work_pool_name == pool]

    async def read_owned_automations(self) -> dict[str, list[dict]]:
        return {owner: [dict(a) for a in autos] for owner, autos in self.automations.items() if autos}

    async def block_document_id(self, block_type_slug: str, name: str) -> str | None:
        return self.blocks.get((block_type_slug, name))

    async def read_artifact_data(self, key: str, limit: int | None = None) -> list:
        found = [a["data"] for a in reversed(self.artifacts) if a["key"] == key]
        return found[:limit] if limit is not None else found

    # -- writes --------------------------------------------------------------------------------------------

    def _check(self, name: str) -> None:
        if name in self.fail_on:
            raise SlipwayError(f"Prefect refused to write deployment {name}: HTTP 500", "check the server")

    async def writers(self) -> Writers:
        return Writers(1, "the test kit's fake Prefect")

    async def apply_pool(self, plan: PoolPlan) -> None:
        self.writes.append((f"pool {plan.action}", plan.name))
        self.pools[plan.name] = LivePool(plan.name, plan.type, plan.template or {})

    async def create_deployment(self, row: PlanRow, flow_ids: dict[str, Any]) -> str:
        want = row.desired
        self._check(want.full_name)
        live = _live_from(want, str(uuid.uuid4()), paused=row.paused, tags=row.tags)
        self.deployments[live.id] = live
        self.writes.append(("create", want.full_name))
        return live.id

    async def upsert_deployment(self, row: PlanRow, flow_ids: dict[str, Any]) -> None:
        """As the server's POST upsert: every field replaced, schedules recreated (new ids), labels written."""
        self._check(row.name)
        before = self.deployments[row.id]
        paused = row.paused if "paused" in row.fields else before.paused
        actives = {s.slug: c.active for s, c in zip(row.desired.schedules, row.schedule_creates())}
        live = _live_from(row.desired, row.id, paused=paused, tags=row.tags, actives=actives)
        self.deployments[row.id] = live
        self.writes.append(("upsert", row.name))

    async def update_deployment(self, row: PlanRow) -> None:
        """As the server's PATCH: labels are not sent (the server refuses them), the rest as the plan says."""
        self._check(row.name)
        before = self.deployments[row.id]
        paused = row.fields.get("paused", before.paused)
        live = _live_from(row.desired, row.id, paused=paused, tags=row.fields.get("tags", before.tags))
        self.deployments[row.id] = replace(live, labels=dict(before.labels))
        self.writes.append(("update", row.name))

    async def delete_deployment(self, live: LiveDeployment) -> None:
        self.deployments.pop(live.id, None)
        self.writes.append(("delete", live.full_name))

    async def replace_automations(self, deployment_id: str, name: str, specs: list[dict]) -> None:
        from slipway.deploy.triggers import automations_for, owner_resource

        self.automations[owner_resource(deployment_id)] = [
            a.model_dump(mode="json") for a in automations_for(specs, name.split("/", 1)[1], deployment_id)]
        self.writes.append(("triggers", name))

    async def create_artifact(self, key: str, kind: str, description: str, data: str) -> None:
        self.artifacts.append({"key": key, "type": kind, "description": description, "data": data})
        self.writes.append(("artifact", key))

    async def ensure_lock(self, name: str) -> None:
        pass

    async def take_lease(self, name: str, seconds: float) -> str | None:
        if name in self.leases:
            return None
        self.leases[name] = str(uuid.uuid4())
        return self.leases[name]

    async def reset_lock(self, name: str) -> None:
        self.leases.pop(name, None)
        self.writes.append(("reset", name))

    async def renew_lease(self, lease_id, seconds: float) -> None:
        if lease_id not in self.leases.values():  # Prefect answers 410 Gone
            raise SlipwayError("Prefect refused to renew the release lease: HTTP 410: Lease not found",
                               "check the server")

    async def give_back_lease(self, lease_id) -> None:
        self.leases = {name: held for name, held in self.leases.items() if held != lease_id}

    def restart(self) -> None:
        """What a Prefect server with in-memory lease storage does when it restarts: every lease is
        forgotten, but the slots they held stay counted (in its database)."""
        self.leases = dict.fromkeys(self.leases, "lost-in-restart")

    async def read_note(self, name: str) -> str | None:
        return self.notes.get(name)

    async def write_note(self, name: str, text: str) -> None:
        self.notes[name] = text

    async def drop_note(self, name: str) -> None:
        self.notes.pop(name, None)

    async def read_runs_not_ended(self, tag: str, state_types: list[str]) -> list:
        return []  # no flow runs here: verification runs are tested against a real server

    async def pause_deployment(self, live: LiveDeployment) -> None:
        from slipway.deploy.ownership import PAUSE_TAG

        before = self.deployments[live.id]
        self.deployments[live.id] = replace(before, paused=True,
                                            tags=[t for t in before.tags if t != PAUSE_TAG] + [PAUSE_TAG])
        self.writes.append(("pause", live.full_name))

    def pause_by_hand(self, full_name: str) -> None:
        """What a person does with the UI's pause toggle: paused, and no tag."""
        live = self.by_name(full_name)
        self.deployments[live.id] = replace(live, paused=True)


def _live_from(want: DesiredDeployment, deployment_id: str, paused: bool = False, tags: list[str] | None = None,
               actives: dict[str, bool] | None = None) -> LiveDeployment:
    schedules = []
    for s in want.schedules:
        decl = s.decl
        spec = ScheduleSpec("cron", cron=decl.cron, day_or=decl.day_or is not False, timezone=decl.timezone) \
            if decl.cron else ScheduleSpec("interval", interval=decl.interval.total_seconds(),
                                           anchor_date=decl.anchor_date, timezone=decl.timezone) \
            if decl.interval else ScheduleSpec("rrule", rrule=decl.rrule, timezone=decl.timezone)
        active = (actives or {}).get(s.slug, decl.active is not False)
        schedules.append(LiveSchedule(str(uuid.uuid4()), s.slug, active, dict(decl.parameters), spec))
    return LiveDeployment(
        id=deployment_id, flow_name=want.flow_name, name=want.name, version=want.version,
        description=want.description, tags=list(want.tags if tags is None else tags),
        parameters=dict(want.parameters), labels=dict(want.labels),
        concurrency_options=want.concurrency_options,
        parameter_openapi_schema=want.parameter_openapi_schema, job_variables=dict(want.job_variables),
        work_pool_name=want.work_pool_name, work_queue_name=want.work_queue_name or DEFAULT_WORK_QUEUE,
        entrypoint=want.entrypoint, pull_steps=want.pull_steps, concurrency_limit=want.concurrency_limit,
        enforce_parameter_schema=want.enforce_parameter_schema, paused=paused, schedules=schedules)
