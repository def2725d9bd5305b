"""What Prefect should hold for one release in one environment: each deployment, pinned to the image digest.

Data only (no Prefect import): the plan compares it with what Prefect holds (deploy/live.py), and the apply
step turns it into Prefect's own request models.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from slipway.deploy.ownership import Owner, release_labels, version_info
from slipway.project.declarations import ResolvedDeployment, ScheduleDecl, schedule_slugs
from slipway.project.git import DIRTY_SUFFIX, GitFacts

DEFAULT_WORK_QUEUE = "default"


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule, in the terms Prefect's API stores it (cron, interval seconds or rrule, plus timezone)."""

    kind: str  # "cron" | "interval" | "rrule"
    cron: str | None = None
    day_or: bool = True
    interval: float | None = None  # seconds
    anchor_date: datetime.datetime | None = None
    rrule: str | None = None
    timezone: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ScheduleSpec:
        """From a schedule as Prefect's API returns it (`schedule` of a deployment schedule, JSON)."""
        if data.get("cron") is not None:
            return cls("cron", cron=data["cron"], day_or=data.get("day_or", True) is not False,
                       timezone=data.get("timezone"))
        if data.get("interval") is not None:
            anchor = data.get("anchor_date")
            if isinstance(anchor, str):
                anchor = datetime.datetime.fromisoformat(anchor.replace("Z", "+00:00"))
            interval = data["interval"]
            seconds = interval.total_seconds() if isinstance(interval, datetime.timedelta) else float(interval)
            return cls("interval", interval=seconds, anchor_date=anchor, timezone=data.get("timezone"))
        return cls("rrule", rrule=data.get("rrule") or "", timezone=data.get("timezone"))


@dataclass(frozen=True)
class DesiredSchedule:
    slug: str
    decl: ScheduleDecl

    def create_action(self, active: bool | None = None):
        """Prefect's request model to create this schedule; `active` when the declaration leaves it open (the
        live schedule's state, kept across an upsert), else the declared state, else on."""
        from prefect.client.schemas.actions import DeploymentScheduleCreate

        if self.decl.active is not None:
            active = self.decl.active
        return DeploymentScheduleCreate(schedule=self.decl.to_prefect(), active=True if active is None else active,
                                        parameters=dict(self.decl.parameters), slug=self.slug)


@dataclass(frozen=True)
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
    pull_steps: list[dict[str, Any]]
    schedules: list[DesiredSchedule] = field(default_factory=list)
    # deploy/ownership.py: whose it is and which release it runs; version_info for Prefect Cloud.
    labels: dict[str, str] = field(default_factory=dict)
    version_info: dict[str, Any] | None = None
    concurrency_options: dict[str, Any] | None = None
    paused: bool | None = None  # declared (prefect.yaml `paused`); None: slipway's own pauses are lifted
    triggers: list[dict[str, Any]] = field(default_factory=list)  # Prefect deployment trigger specs

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"


def schedule_matches(decl: ScheduleDecl, live: ScheduleSpec) -> bool:
    """Does the live schedule mean what the declaration says? Compared as Prefect interprets them: a cron by
    its fields, timezone (UTC when unset) and day_or; an interval by its length (its anchor and timezone only
    when declared: otherwise Prefect picks them at creation); an rrule by its lines, ignoring the DTSTART
    Prefect adds to a rule declared without one."""
    if decl.cron is not None:
        return (live.kind == "cron" and " ".join(decl.cron.split()) == " ".join((live.cron or "").split())
                and (decl.timezone or "UTC") == (live.timezone or "UTC")
                and (True if decl.day_or is None else decl.day_or) == live.day_or)
    if decl.interval is not None:
        if live.kind != "interval" or decl.interval.total_seconds() != live.interval:
            return False
        if decl.timezone is not None and decl.timezone != live.timezone:
            return False
        return decl.anchor_date is None or _same_instant(decl.anchor_date, live.anchor_date)
    if live.kind != "rrule":
        return False
    want_lines, live_lines = _rrule_lines(decl.rrule or ""), _rrule_lines(live.rrule or "")
    if not any(line.startswith("DTSTART") for line in want_lines):
        live_lines = [line for line in live_lines if not line.startswith("DTSTART")]
    return want_lines == live_lines and (decl.timezone or "UTC") == (live.timezone or "UTC")


def _same_instant(a: datetime.datetime, b: datetime.datetime | None) -> bool:
    if b is None:
        return False
    utc = datetime.UTC
    return (a if a.tzinfo else a.replace(tzinfo=utc)) == (b if b.tzinfo else b.replace(tzinfo=utc))


def _rrule_lines(rrule: str) -> list[str]:
    """The rule's lines, order-free, with the optional `RRULE:` prefix of a bare rule removed."""
    lines = (line.strip() for line in rrule.splitlines() if line.strip())
    return sorted(line[len("RRULE:"):] if line.upper().startswith("RRULE:") else line for line in lines)


def release_version(commit: GitFacts) -> str:
    """A deployment's `version`: the release's Git SHA (suffixed -dirty for a local dirty build)."""
    return commit.sha + (DIRTY_SUFFIX if commit.dirty else "")


def desired_deployments(deployments: list[ResolvedDeployment], schemas: list[dict[str, Any]], reference: str,
                        commit: GitFacts, app_dir: str, owner: Owner | None = None) -> list[DesiredDeployment]:
    """What Prefect should hold for this release: the image pinned by digest, version = Git SHA, a
    `release:<tag or short sha>` tag, a pull step that runs flows from the image's app directory, and the
    labels that say whose it is and which commit it runs (deploy/ownership.py)."""
    label = commit.version  # the Git tag when the commit is at one, else the short SHA
    labels = release_labels(owner, commit) if owner is not None else {}
    pull_steps = [{"prefect.deployments.steps.set_working_directory": {"directory": app_dir}}]
    out = []
    for dep in deployments:
        stamp = f"Release {label} ({commit.sha}), image {reference}."
        out.append(DesiredDeployment(
            flow_name=dep.flow_name,
            name=dep.name,
            version=release_version(commit),
            description=f"{dep.description.rstrip()}\n\n{stamp}" if dep.description else stamp,
            tags=list(dict.fromkeys([*dep.tags, f"release:{label}"])),
            parameters=dep.parameters,
            parameter_openapi_schema=schemas[dep.index],
            job_variables=pinned_job_variables(dep, reference),
            work_pool_name=dep.work_pool_name,
            work_queue_name=dep.work_queue_name,
            entrypoint=dep.entrypoint,
            concurrency_limit=dep.concurrency_limit,
            enforce_parameter_schema=dep.enforce_parameter_schema,
            pull_steps=[dict(s) for s in pull_steps],
            schedules=[DesiredSchedule(slug, s) for slug, s in zip(schedule_slugs(dep.schedules), dep.schedules)],
            labels=dict(labels),
            version_info=version_info(commit, dep.version_type) if owner is not None else None,
            concurrency_options=dep.concurrency_options,
            paused=dep.paused,
            triggers=[dict(t) for t in dep.triggers],
        ))
    return out


def pinned_job_variables(dep: ResolvedDeployment, reference: str) -> dict[str, Any]:
    return {**dep.job_variables, "image": reference}
