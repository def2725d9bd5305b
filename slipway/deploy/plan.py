"""Compare what a release wants (deploy/desired.py) with what Prefect holds (deploy/live.py): the plan.

Pure functions over plain data, so every rule here is unit-tested without a server:
- an unchanged deployment gets no row action at all ("unchanged"): its schedules (their ids, and a pause an
  operator made in the UI) stay exactly as they are;
- a changed deployment lists only the changed fields, and its schedules are reconciled one by one by slug
  (update in place, create, delete) — never "delete all, recreate all";
- schedules compare semantically (desired.schedule_matches); `active` only when declared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.deploy.desired import DEFAULT_WORK_QUEUE, DesiredDeployment, DesiredSchedule, schedule_matches
from slipway.deploy.live import LiveDeployment, LivePool, LiveSchedule
from slipway.errors import SlipwayError


@dataclass
class ScheduleOps:
    """How a deployment's live schedules become the declared ones, matched by slug."""

    create: list[DesiredSchedule] = field(default_factory=list)
    update: list[tuple[LiveSchedule, DesiredSchedule, list[str]]] = field(default_factory=list)
    delete: list[LiveSchedule] = field(default_factory=list)

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

    @property
    def name(self) -> str:
        return self.desired.full_name

    @property
    def changes(self) -> list[str]:
        """The changed fields, for people and `--json`: ['version', 'schedules.schedule-1.active', ...]."""
        out = list(self.fields)
        out += [f"schedules.{s.slug}(new)" for s in self.schedules.create]
        out += [f"schedules.{w.slug}.{f}" for _, w, changed in self.schedules.update for f in changed]
        out += [f"schedules.{s.slug or s.id}(removed)" for s in self.schedules.delete]
        return out


@dataclass
class Plan:
    """Everything a deploy or rollback would do in one environment, before it does it."""

    environment: str
    reference: str | None  # the digest reference deployed; None when planning before the first push
    pool: PoolPlan
    rows: list[PlanRow]
    # This project's live deployments that the release does not declare, to pause (a rollback's extras).
    to_pause: list[LiveDeployment] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return ((self.pool.action != "unchanged") + sum(row.action != "unchanged" for row in self.rows)
                + len(self.to_pause))

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
        if have is None:
            ops.create.append(want)
            continue
        changed = []
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


def deployment_changes(want: DesiredDeployment, live: LiveDeployment) -> dict[str, Any]:
    """The simple fields of `live` that differ from `want`, with the values `want` gives them."""
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
    }
    changes = {name: a for name, (a, b) in compared.items() if a != b}
    if sorted(set(want.tags)) != sorted(set(live.tags or [])):
        changes["tags"] = want.tags
    return changes


def plan_deployment(want: DesiredDeployment, live: LiveDeployment | None) -> PlanRow:
    if live is None:
        return PlanRow(want, None, "created")
    fields = deployment_changes(want, live)
    ops = plan_schedules(want.schedules, live.schedules)
    action = "updated" if fields or ops else "unchanged"
    return PlanRow(want, live, action, fields, ops, id=live.id)


def plan_deployments(desired: list[DesiredDeployment], live: dict[str, LiveDeployment | None]) -> list[PlanRow]:
    return [plan_deployment(want, live.get(want.full_name)) for want in desired]
