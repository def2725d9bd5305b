"""Compare what a release wants (deploy/desired.py) with what Prefect holds (deploy/live.py): the plan.

Pure functions over plain data, so every rule here is unit-tested without a server:
- an unchanged deployment gets no row action at all ("unchanged"): its schedules (their ids, and a pause an
  operator made in the UI) stay exactly as they are;
- a changed deployment lists only the changed fields, and its schedules are reconciled one by one by slug
  (update in place, create, delete) — never "delete all, recreate all";
- schedules compare semantically (desired.schedule_matches); `active` only when declared; a schedule that
  `replaces` another slug takes over that schedule (renamed in place);
- a deployment's pause: one slipway made (its `slipway:paused` tag, deploy/ownership.py) is lifted when the
  release declares the deployment again, one a person made is kept, `paused:` in the file wins over both;
- labels (whose it is, which commit) can only be written by an upsert on Prefect 3.8's server: a row whose
  labels differ is written with one POST carrying the whole deployment (`PlanRow.upsert`);
- this environment's deployments (by their ownership labels) that the release no longer declares are paused,
  or deleted with `--prune` (`RemovedRow`); a deployment another environment registered is never written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.deploy.desired import DEFAULT_WORK_QUEUE, DesiredDeployment, DesiredSchedule, schedule_matches
from slipway.deploy.live import LiveDeployment, LivePool, LiveSchedule
from slipway.deploy.ownership import (
    PAUSE_TAG,
    PAUSED_BY_HAND,
    PAUSED_BY_SLIPWAY,
    Owner,
    check_takeover,
    paused_by,
    slipway_labels,
)
from slipway.deploy.triggers import desired_comparable, live_comparable
from slipway.errors import SlipwayError


@dataclass
class ScheduleOps:
    """How a deployment's live schedules become the declared ones, matched by slug."""

    create: list[DesiredSchedule] = field(default_factory=list)
    update: list[tuple[LiveSchedule, DesiredSchedule, list[str]]] = field(default_factory=list)
    delete: list[LiveSchedule] = field(default_factory=list)
    matched: dict[str, LiveSchedule] = field(default_factory=dict)  # desired slug -> the live one it is

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)


@dataclass
class PoolPlan:
    name: str
    type: str
    action: str  # created | updated | unchanged
    changes: list[str] = field(default_factory=list)
    template: dict[str, Any] | None = None  # what the pool gets when created or updated


@dataclass
class PlanRow:
    """One deployment: what will happen to it and why. `id` is filled in once it exists in Prefect."""

    desired: DesiredDeployment
    live: LiveDeployment | None
    action: str  # created | updated | unchanged
    fields: dict[str, Any] = field(default_factory=dict)  # changed simple fields -> their desired values
    schedules: ScheduleOps = field(default_factory=ScheduleOps)
    id: str | None = None
    paused: bool = False  # whether it is paused once the plan is applied
    paused_by: str | None = None  # who holds that pause: "slipway" | "hand" | None
    note: str | None = None  # why its pause changes or stays, for people

    @property
    def name(self) -> str:
        return self.desired.full_name

    @property
    def tags(self) -> list[str]:
        """The tags it gets: the declared ones, and slipway's pause tag while slipway holds its pause."""
        return desired_tags(self.desired, self.paused_by == PAUSED_BY_SLIPWAY)

    @property
    def upsert(self) -> bool:
        """Written with one `POST /deployments/` carrying the whole deployment: labels cannot be PATCHed."""
        return "labels" in self.fields

    def schedule_creates(self) -> list:
        """Every declared schedule as a create request, each keeping the on/off state of the live schedule it
        matches when the declaration leaves `active` open (for an upsert, which recreates them all)."""
        return [s.create_action(self.schedules.matched[s.slug].active if s.slug in self.schedules.matched else None)
                for s in self.desired.schedules]

    @property
    def changes(self) -> list[str]:
        """The changed fields, for people and `--json`: ['version', 'schedules.schedule-1.active', ...]."""
        out = list(self.fields)
        out += [f"schedules.{s.slug}(new)" for s in self.schedules.create]
        out += [f"schedules.{w.slug}.{f}" for _, w, changed in self.schedules.update for f in changed]
        out += [f"schedules.{s.slug or s.id}(removed)" for s in self.schedules.delete]
        return out


@dataclass
class RemovedRow:
    """A deployment this environment registered that the release no longer declares."""

    live: LiveDeployment
    action: str  # paused | deleted | unchanged (already paused)
    paused_by: str | None  # who holds its pause once the plan is applied
    drop_automations: bool = False  # its triggers' automations go too

    @property
    def name(self) -> str:
        return self.live.full_name


@dataclass
class Plan:
    """Everything a deploy or rollback would do in one environment, before it does it."""

    environment: str
    reference: str | None  # the digest reference deployed; None when planning before the first push
    pool: PoolPlan
    rows: list[PlanRow]
    # This environment's live deployments that the release does not declare: paused, or deleted with --prune.
    removed: list[RemovedRow] = field(default_factory=list)
    verification: dict | None = None  # the smoke run's outcome, once deploy/verify.py ran it (its JSON)

    @property
    def to_pause(self) -> list[LiveDeployment]:
        return [r.live for r in self.removed if r.action == "paused"]

    @property
    def to_delete(self) -> list[LiveDeployment]:
        return [r.live for r in self.removed if r.action == "deleted"]

    @property
    def writes(self) -> int:
        return ((self.pool.action != "unchanged") + sum(row.action != "unchanged" for row in self.rows)
                + sum(r.action != "unchanged" for r in self.removed))

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.action] = counts.get(row.action, 0) + 1
        return counts


def plan_work_pool(live: LivePool | None, name: str, pool_type: str, template: dict, managed: bool) -> PoolPlan:
    """created / updated (template differs; only for a pool whose template is in the repo) / unchanged."""
    if live is None:
        return PoolPlan(name, pool_type, "created", [], template)
    if live.type != pool_type:
        raise SlipwayError(
            f"work pool '{name}' exists with type '{live.type}', slipway.yaml says '{pool_type}'",
            "rename the pool in slipway.yaml or delete the existing pool")
    if managed and live.base_job_template != template:
        return PoolPlan(name, pool_type, "updated", ["base_job_template"], template)
    return PoolPlan(name, pool_type, "unchanged")


def plan_schedules(desired: list[DesiredSchedule], live: list[LiveSchedule]) -> ScheduleOps:
    by_slug = {s.slug: s for s in live if s.slug}
    ops = ScheduleOps()
    for want in desired:
        have = by_slug.pop(want.slug, None)
        changed = []
        if have is None and want.decl.replaces:  # prefect.yaml `replaces`: the old slug's schedule, renamed
            have = by_slug.pop(want.decl.replaces, None)
            if have is not None:
                changed.append("slug")
        if have is None:
            ops.create.append(want)
            continue
        ops.matched[want.slug] = have
        if not schedule_matches(want.decl, have.schedule):
            changed.append("schedule")
        if dict(want.decl.parameters) != dict(have.parameters or {}):
            changed.append("parameters")
        if want.decl.active is not None and want.decl.active != have.active:
            changed.append("active")
        if changed:
            ops.update.append((have, want, changed))
    ops.delete = list(by_slug.values()) + [s for s in live if not s.slug]
    return ops


def pause_plan(want: DesiredDeployment, live: LiveDeployment | None) -> tuple[bool, bool, str | None]:
    """(paused, slipway's pause, why) once applied: see the module doc for the rules."""
    held_by = paused_by(live.paused, live.tags) if live is not None else None
    if want.paused is True:
        return True, True, None if held_by == PAUSED_BY_SLIPWAY else "paused: the file declares `paused: true`"
    if want.paused is False:
        return False, False, "resumed: the file declares `paused: false`" if held_by else None
    if held_by == PAUSED_BY_SLIPWAY:
        return False, False, "resumed: slipway had paused it"
    if held_by == PAUSED_BY_HAND:
        return True, False, "kept paused: paused by hand"
    return False, False, None


def desired_tags(want: DesiredDeployment, slipway_paused: bool) -> list[str]:
    tags = [t for t in want.tags if t != PAUSE_TAG]
    return tags + [PAUSE_TAG] if slipway_paused else tags


def deployment_changes(want: DesiredDeployment, live: LiveDeployment, paused: bool = False,
                       slipway_paused: bool = False) -> dict[str, Any]:
    """The fields of `live` that differ from `want`, with the values `want` gives them (`paused` and the pause
    tag as pause_plan decided)."""
    compared = {
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
        "concurrency_limit": (want.concurrency_limit, live.concurrency_limit),
        "concurrency_options": (want.concurrency_options or None, live.concurrency_options or None),
        "paused": (paused, live.paused),
    }
    changes = {name: a for name, (a, b) in compared.items() if a != b}
    tags = desired_tags(want, slipway_paused)
    if sorted(set(tags)) != sorted(set(live.tags or [])):
        changes["tags"] = tags
    if want.labels and want.labels != slipway_labels(live.labels):
        changes["labels"] = want.labels
    if live.automations is not None and (
            desired_comparable(want.triggers, want.name, live.id) != live_comparable(live.automations)):
        changes["triggers"] = want.triggers
    return changes


def plan_deployment(want: DesiredDeployment, live: LiveDeployment | None) -> PlanRow:
    paused, slipway_paused, note = pause_plan(want, live)
    held_by = (PAUSED_BY_SLIPWAY if slipway_paused else PAUSED_BY_HAND) if paused else None
    if live is None:
        return PlanRow(want, None, "created", paused=paused, paused_by=held_by, note=note)
    fields = deployment_changes(want, live, paused, slipway_paused)
    ops = plan_schedules(want.schedules, live.schedules)
    action = "updated" if fields or ops else "unchanged"
    return PlanRow(want, live, action, fields, ops, id=live.id, paused=paused, paused_by=held_by, note=note)


def plan_deployments(desired: list[DesiredDeployment], live: dict[str, LiveDeployment | None],
                     owner: Owner | None = None, api_url: str = "") -> list[PlanRow]:
    """One row per declared deployment; one registered by another environment or project is refused."""
    if owner is not None:
        for want in desired:
            have = live.get(want.full_name)
            if have is not None:
                check_takeover(owner, want.full_name, have.labels, api_url)
    return [plan_deployment(want, live.get(want.full_name)) for want in desired]


def plan_removed(candidates: list[LiveDeployment], declared: set[str], owner: Owner, prune: bool) -> list[RemovedRow]:
    """This environment's deployments (by their ownership labels, never by name) that the release does not
    declare: deleted with `prune`, else paused by slipway (a person's pause is kept as it is)."""
    out = []
    for live in sorted(candidates, key=lambda d: d.full_name):
        if live.full_name in declared or not owner.owns(live.labels):
            continue
        drop = bool(live.automations)
        if prune:
            out.append(RemovedRow(live, "deleted", None, drop))
        elif not live.paused:
            out.append(RemovedRow(live, "paused", PAUSED_BY_SLIPWAY, drop))
        else:
            out.append(RemovedRow(live, "paused" if drop else "unchanged", paused_by(True, live.tags), drop))
    return out
