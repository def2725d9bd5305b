"""deployments.yaml: the repository's Prefect deployments, in prefect.yaml's `deployments:` schema.

One file at the repository root (its path is slipway.yaml's `deployments:`) holds every deployment; what
differs between environments (parameters, schedules, job variables, tags) lives in slipway.yaml under
`environments.<env>.deployments."<flow>/<deployment>"`, next to the rest of that environment. So one file
says *what* runs, slipway.yaml says *where and how* — and both travel in every image (image/release_layer.py),
which is what lets a rollback re-register an older release exactly as it was.

Loaded strictly, before anything is built, pushed or registered: an unknown key, a wrong type, a cron that
Prefect would refuse or an unknown timezone is one line naming the file and the field:
`deployments.yaml: deployments[2].schedules[0].cron: ...`. Schedules are checked with Prefect's own
validators and turned into Prefect's own schedule models, so the rules are the server's.

A team's existing `prefect.yaml` is such a file too (slipway.yaml `deployments: prefect.yaml`), written the way
Prefect's documentation writes one: YAML anchors and a top-level `definitions:` section, `schedule` (one) or
`schedules`, schedule `replaces`, `paused`, `version_type`, `triggers`, and `concurrency_limit` as a number or
as a mapping with `collision_strategy` — each as Prefect's own `prefect deploy` reads it. What slipway does
itself is ignored with one warning per key (`SLIPWAY_OWNED`): the `build`, `push` and `pull` steps (top level
or per deployment), a deployment's `version`, `work_pool.name` and `work_pool.job_variables.image`. The
top-level `name` and `prefect-version` are metadata Prefect itself does not use: accepted silently.
"""
from __future__ import annotations

import copy
import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    RootModel,
    StrictBool,
    StrictStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from slipway.errors import SlipwayError
from slipway.project.config import CONFIG_FILE, TYPE_FIXES, YAML_LOADER, EnvironmentConfig, Project
from slipway.project.secrets import NOT_SECRET_FORM, check_not_secret_paths, refuse_secrets
from slipway.timezones import list_once

README_SECTION = "README.md 'Deployments'"
# `path/to/file.py:function` — the form prefect.yaml uses, relative to the image's app directory.
_ENTRYPOINT = re.compile(r"^[^:\s]+\.py:[A-Za-z_][A-Za-z0-9_.]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleDecl(_Strict):
    """One entry of `schedules:`: exactly one of cron / interval / rrule, as in prefect.yaml."""

    cron: StrictStr | None = None
    interval: datetime.timedelta | None = None  # seconds, "HH:MM:SS" or ISO 8601 ("PT1H")
    rrule: StrictStr | None = None
    timezone: StrictStr | None = None
    anchor_date: datetime.datetime | None = None  # interval only
    day_or: StrictBool | None = None  # cron only
    # Omitted: whatever the live schedule says is kept (a pause made in the UI survives a redeploy).
    # Declared: slipway makes the live schedule match it.
    active: StrictBool | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    # Identifies the schedule across releases; slipway names unnamed ones `schedule-<n>` (1-based).
    slug: StrictStr | None = None
    # prefect.yaml: the slug of a live schedule this one renames (its row, runs and on/off state are kept).
    replaces: StrictStr | None = None

    @field_validator("parameters", mode="before")
    @classmethod
    def _no_parameters(cls, v: Any) -> Any:
        return {} if v is None else v

    # Prefect's own validators: what the server accepts, nothing more, nothing less.
    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        from prefect._internal.schemas.validators import validate_cron_string

        return None if v is None else validate_cron_string(v)

    @field_validator("rrule")
    @classmethod
    def _rrule(cls, v: str | None) -> str | None:
        from prefect._internal.schemas.validators import validate_rrule_string

        return None if v is None else validate_rrule_string(v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str | None) -> str | None:
        from prefect._internal.schemas.validators import default_timezone

        list_once()  # before Prefect's schedule models validate it again (to_prefect)
        return default_timezone(v)

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: datetime.timedelta | None) -> datetime.timedelta | None:
        if v is not None and v <= datetime.timedelta(0):
            raise ValueError("must be a positive duration (seconds, HH:MM:SS or ISO 8601 like PT1H)")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleDecl:
        kinds = [k for k in ("cron", "interval", "rrule") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("exactly one of 'cron', 'interval' or 'rrule' must be given"
                             + (f" (got {', '.join(kinds)})" if kinds else ""))
        if self.anchor_date is not None and self.interval is None:
            raise ValueError("'anchor_date' only applies to an 'interval' schedule")
        if self.day_or is not None and self.cron is None:
            raise ValueError("'day_or' only applies to a 'cron' schedule")
        self.to_prefect()  # anything Prefect's schedule model still refuses
        return self

    def to_prefect(self):
        """The Prefect schedule model (CronSchedule / IntervalSchedule / RRuleSchedule) this declares."""
        from prefect.client.schemas.schedules import (
            CronSchedule,
            IntervalSchedule,
            RRuleSchedule,
        )

        if self.cron is not None:
            kwargs = {"cron": self.cron, "timezone": self.timezone}
            if self.day_or is not None:
                kwargs["day_or"] = self.day_or
            return CronSchedule(**kwargs)
        if self.interval is not None:
            kwargs = {"interval": self.interval, "timezone": self.timezone}
            if self.anchor_date is not None:
                kwargs["anchor_date"] = self.anchor_date
            return IntervalSchedule(**{k: v for k, v in kwargs.items() if v is not None})
        return RRuleSchedule(rrule=self.rrule, timezone=self.timezone)


class WorkPoolDecl(_Strict):
    # The environment's pool (slipway.yaml environments.<env>.work_pool.name) when omitted.
    name: StrictStr | None = None
    work_queue_name: StrictStr | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)


# Prefect's `VersionType` values: the `type` of the deployment's version_info (prefect:simple sends none).
VERSION_TYPES = ("prefect:simple", "vcs:github", "vcs:gitlab", "vcs:bitbucket", "vcs:azuredevops", "vcs:git")


class ConcurrencyLimitDecl(_Strict):
    """`concurrency_limit` as a mapping (prefect.yaml): the limit, and what happens to a run over it."""

    limit: PositiveInt
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"
    grace_period_seconds: int | None = Field(None, ge=60, le=86400)


def _limit_form(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "number"


# A number, or the mapping form; the tag keeps pydantic's error on the form that was written.
ConcurrencyLimit = Annotated[
    Annotated[PositiveInt, Tag("number")] | Annotated[ConcurrencyLimitDecl, Tag("mapping")],
    Discriminator(_limit_form),
]


class TriggerDecl(RootModel[dict[str, Any]]):
    """One entry of `triggers:`: a deployment trigger, checked with Prefect's own trigger models."""

    @model_validator(mode="after")
    def _prefect_accepts(self) -> TriggerDecl:
        from slipway.deploy.triggers import trigger_adapter

        try:
            trigger_adapter().validate_python(dict(self.root))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = field_path([p for p in err["loc"] if p not in _TRIGGER_KINDS])
            raise ValueError(f"{where + ': ' if where else ''}{' '.join(err['msg'].split())}") from None
        return self


_TRIGGER_KINDS = ("event", "metric", "compound", "sequence")  # the union's tags in Prefect's error locations


class DeploymentDecl(_Strict):
    """One entry of `deployments:`, prefect.yaml's schema minus what slipway owns (see the module doc)."""

    name: StrictStr
    entrypoint: StrictStr
    description: StrictStr | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleDecl] = Field(default_factory=list)
    schedule: ScheduleDecl | None = None  # prefect.yaml's single form: the same as one entry of `schedules`
    tags: list[StrictStr] = Field(default_factory=list)
    work_pool: WorkPoolDecl = WorkPoolDecl()
    concurrency_limit: ConcurrencyLimit | None = None
    enforce_parameter_schema: StrictBool = True
    # Paths of values here that look like secrets but are not (project/secrets.py).
    not_secret: list[StrictStr] = Field(default_factory=list)
    # Declared: slipway pauses (true) or resumes (false) the deployment. Omitted: a pause slipway made is
    # lifted when the deployment is declared again, a pause a person made is kept.
    paused: StrictBool | None = None
    version_type: Literal[VERSION_TYPES] | None = None  # type: ignore[valid-type]
    triggers: list[TriggerDecl] = Field(default_factory=list)

    @field_validator("parameters", "tags", "schedules", "triggers", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any, info) -> Any:
        if v is None:  # `prefect init` writes `tags: null`-style keys; Prefect reads them as empty
            return {} if info.field_name == "parameters" else []
        return v

    @field_validator("schedule", mode="before")
    @classmethod
    def _empty_schedule(cls, v: Any) -> Any:
        return None if v == {} else v

    @model_validator(mode="before")
    @classmethod
    def _one_schedule_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("schedule") and "schedules" in data:
            raise ValueError("give 'schedule' or 'schedules', not both (Prefect refuses both too)")
        return data

    @property
    def all_schedules(self) -> list[ScheduleDecl]:
        return [self.schedule] if self.schedule is not None else list(self.schedules)

    @property
    def schedules_key(self) -> str:
        return "schedule" if self.schedule is not None else "schedules"

    @property
    def limit(self) -> int | None:
        c = self.concurrency_limit
        return c.limit if isinstance(c, ConcurrencyLimitDecl) else c

    @property
    def concurrency_options(self) -> dict[str, Any] | None:
        """Prefect's `concurrency_options` for the mapping form (None for a bare number: the server's default)."""
        c = self.concurrency_limit
        if not isinstance(c, ConcurrencyLimitDecl):
            return None
        options: dict[str, Any] = {"collision_strategy": c.collision_strategy}
        if c.grace_period_seconds is not None:
            options["grace_period_seconds"] = c.grace_period_seconds
        return options

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip() or "/" in v:
            raise ValueError("must be a non-empty name without '/'")
        return v

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, v: str) -> str:
        if not _ENTRYPOINT.match(v):
            raise ValueError(f"'{v}' is not of the form path/to/file.py:flow_function (relative to the app directory)")
        return v

    _unique_slugs = field_validator("schedules")(classmethod(lambda cls, v: _check_slugs(v)))
    _not_secret_paths = field_validator("not_secret")(classmethod(lambda cls, v: check_not_secret_paths(v)))


class DeploymentsFile(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    deployments: list[DeploymentDecl] = Field(min_length=1)
    # prefect.yaml's metadata, which Prefect itself does not use either; `definitions` holds YAML anchors.
    name: Any = None
    prefect_version: Any = Field(None, alias="prefect-version")
    definitions: Any = None


class DeploymentOverride(_Strict):
    """`environments.<env>.deployments."<flow>/<deployment>"` in slipway.yaml: what differs in that environment.

    Parameters and job variables are merged over the declaration's (key by key); schedules, when given,
    replace the declared list (`schedules: []` turns them off in that environment); tags are added.
    """

    description: StrictStr | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleDecl] | None = None
    tags: list[StrictStr] = Field(default_factory=list)
    work_pool: WorkPoolDecl = WorkPoolDecl()
    job_variables: dict[str, Any] = Field(default_factory=dict)  # shorthand for work_pool.job_variables
    concurrency_limit: PositiveInt | None = None
    enforce_parameter_schema: StrictBool | None = None
    not_secret: list[StrictStr] = Field(default_factory=list)  # as in deployments.yaml

    _unique_slugs = field_validator("schedules")(classmethod(lambda cls, v: _check_slugs(v)))
    _not_secret_paths = field_validator("not_secret")(classmethod(lambda cls, v: check_not_secret_paths(v)))


def _check_slugs(schedules: list[ScheduleDecl] | None) -> list[ScheduleDecl] | None:
    slugs = schedule_slugs(schedules or [])
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"schedule slugs must be unique, got {slugs}")
    return schedules


def schedule_slugs(schedules: list[ScheduleDecl]) -> list[str]:
    return [s.slug or f"schedule-{i}" for i, s in enumerate(schedules, start=1)]


# --- errors ------------------------------------------------------------------------------------------------

def field_path(loc: tuple | list, prefix: str = "") -> str:
    """('deployments', 2, 'schedules', 0, 'cron') -> 'deployments[2].schedules[0].cron'."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "number", "mapping") \
                or str(part).startswith(("function-", "lax-or-")):
            continue  # pydantic's validator and union-tag steps, not keys of the file
        else:
            out += f".{part}" if out else str(part)
    return out


def describe_validation_error(filename: str, exc: ValidationError, prefix: str = "") -> SlipwayError:
    """The first pydantic error as one line: `file: field.path: problem; fix`."""
    err = exc.errors()[0]
    where = field_path(err["loc"], prefix)
    msg = err["msg"]
    for lead in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(lead)
    msg = " ".join(msg.split())
    loc = [p for p in err["loc"] if p not in ("number", "mapping")]  # union tags (see field_path)
    # A field's fix is for the field itself; an entry of a list has its own ("schedules[]"): deployments[0]
    # not being a mapping is not fixed by "declare at least one deployment".
    named = [p for p in loc if isinstance(p, str)]
    field = (named[-1] + "[]" if isinstance(loc[-1], int) else named[-1]) if named else ""
    if err["type"] == "extra_forbidden":
        msg, fix = "unknown key", f"remove it or fix its spelling (the accepted keys are in {README_SECTION})"
    elif err["type"] == "missing":
        msg, fix = "required field is missing", f"add it (see {README_SECTION})"
    else:
        fix = (_FIXES.get(field) or TYPE_FIXES.get(err["type"]) or _FIXES_BY_TYPE.get(err["type"])
               or f"see {README_SECTION}")
    return SlipwayError(f"{filename}: {where}: {msg}" if where else f"{filename}: {msg}", fix)


_FIXES = {
    "cron": "use five fields: minute hour day-of-month month day-of-week, e.g. '0 6 * * *'",
    "timezone": "use an IANA name such as Europe/Amsterdam or UTC",
    "rrule": "use an RFC 5545 rule such as 'FREQ=DAILY;BYHOUR=6'",
    "interval": "use seconds (3600), HH:MM:SS or ISO 8601 (PT1H)",
    "entrypoint": "write it as flows/<file>.py:<flow function>",
    "name": "give every deployment a name without '/'",
    "deployments": "declare at least one deployment, as a list of mappings (- name: ..., entrypoint: ...)",
    "concurrency_limit": "use a whole number of at least 1, or a mapping {limit: N, collision_strategy: "
                         "ENQUEUE|CANCEL_NEW}, or leave it out for no limit",
    "limit": "use a whole number of at least 1",
    "collision_strategy": "use ENQUEUE or CANCEL_NEW",
    "version_type": f"use one of {', '.join(VERSION_TYPES)}",
    "triggers": "write each trigger as Prefect's deployment triggers (https://docs.prefect.io/v3/automate/"
                "events/automations-triggers)",
    "triggers[]": "write each trigger as Prefect's deployment triggers (https://docs.prefect.io/v3/automate/"
                  "events/automations-triggers)",
    "paused": "use true or false, or leave it out",
    "not_secret": f"list paths like {NOT_SECRET_FORM}",
    "schedules": "give each schedule a unique slug (or none: slipway names them schedule-<n>)",
    "schedules[]": "give each schedule exactly one of cron, interval or rrule (anchor_date goes with interval, "
                   "day_or with cron)",
}
_FIXES_BY_TYPE = {
    "value_error": f"see {README_SECTION} for what this field accepts",
    "too_short": "add at least one entry",
    "greater_than": "use a number of at least 1",
}


# --- loading -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Declarations:
    """The parsed deployments file plus where it came from (for error messages)."""

    filename: str
    deployments: tuple[DeploymentDecl, ...]
    warnings: tuple[str, ...] = ()  # one per slipway-owned key the file sets (see SLIPWAY_OWNED)


# Keys of a prefect.yaml that slipway owns: ignored, one warning per key saying which step slipway does instead.
_STEPS = {
    "build": "slipway builds the image (slipway.yaml image.dockerfile)",
    "push": "slipway pushes the image to each environment's registry",
    "pull": "slipway sets the pull step (the working directory inside the release image)",
}
SLIPWAY_OWNED = {
    **{key: _STEPS[key] for key in _STEPS},
    "version": "slipway sets the version to the release's Git SHA",
    "work_pool.name": f"slipway registers every deployment in the environment's pool ({CONFIG_FILE} "
                      "environments.<env>.work_pool.name)",
    "work_pool.job_variables.image": "slipway sets the image to the release's digest reference",
}


def _strip_owned(data: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The file without the keys slipway owns, and (field, key) for each one it set (null values are unset)."""
    data = dict(data)
    if isinstance(data.get("deployments"), list):  # YAML anchors share objects: strip each deployment's own copy
        data["deployments"] = [copy.deepcopy(dep) for dep in data["deployments"]]
    found: list[tuple[str, str]] = []
    for key in _STEPS:
        if data.pop(key, None) is not None:
            found.append((key, key))
    for i, dep in enumerate(data.get("deployments") or []):
        if not isinstance(dep, dict):
            continue
        for key in (*_STEPS, "version"):
            if dep.pop(key, None) is not None:
                found.append((f"deployments[{i}].{key}", key))
        pool = dep.get("work_pool")
        if isinstance(pool, dict):
            if pool.pop("name", None) is not None:
                found.append((f"deployments[{i}].work_pool.name", "work_pool.name"))
            variables = pool.get("job_variables")
            if isinstance(variables, dict) and variables.pop("image", None) is not None:
                found.append((f"deployments[{i}].work_pool.job_variables.image", "work_pool.job_variables.image"))
            if variables is None and "job_variables" in pool:
                pool["job_variables"] = {}
    return data, found


def _owned_warnings(filename: str, found: list[tuple[str, str]]) -> tuple[str, ...]:
    """One warning per owned key, naming where it is set (the first place, and how many more)."""
    by_key: dict[str, list[str]] = {}
    for where, key in found:
        by_key.setdefault(key, []).append(where)
    out = []
    for key, places in by_key.items():
        more = f" (and {len(places) - 1} more)" if len(places) > 1 else ""
        out.append(f"{filename}: {places[0]}{more}: ignored: {SLIPWAY_OWNED[key]}")
    return tuple(out)


def parse_declarations(text: str, filename: str = "deployments.yaml") -> Declarations:
    """Parse a deployments file's text (from the working tree, or from an older release's image label)."""
    try:
        data = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SlipwayError(f"{filename}:{where} is not valid YAML ({problem})", "fix the syntax") from exc
    if not isinstance(data, dict) or "deployments" not in data:
        raise SlipwayError(f"{filename}: expected a mapping with a 'deployments:' list",
                           f"see {README_SECTION}")
    data, owned = _strip_owned(data)
    try:
        parsed = DeploymentsFile.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_error(filename, exc) from exc
    return Declarations(filename=filename, deployments=tuple(parsed.deployments),
                        warnings=_owned_warnings(filename, owned))


def load_declarations(project: Project) -> Declarations:
    """deployments.yaml from the working tree (the path is slipway.yaml's `deployments:`)."""
    relative = project.config.deployments
    path = project.resolve(relative)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise SlipwayError(f"{relative} not found in {project.root}",
                           f"create it or fix 'deployments:' in {CONFIG_FILE}") from exc
    return parse_declarations(text, Path(relative).name if "/" not in relative else relative)


def parse_overrides(env_name: str, env: EnvironmentConfig) -> dict[str, DeploymentOverride]:
    """`environments.<env>.deployments` validated with the same strictness as deployments.yaml."""
    out = {}
    for key, raw in env.deployments.items():
        prefix = f"environments.{env_name}.deployments.{key}"
        if key.count("/") != 1 or not all(key.split("/")):
            raise SlipwayError(f"{CONFIG_FILE}: {prefix}: keys are '<flow name>/<deployment name>'",
                               "for example 'elt/daily'")
        try:
            out[key] = DeploymentOverride.model_validate(raw or {})
        except ValidationError as exc:
            raise describe_validation_error(CONFIG_FILE, exc, prefix) from exc
    return out


# --- secrets -----------------------------------------------------------------------------------------------

def refuse_declared_secrets(declarations: Declarations) -> None:
    """deployments.yaml holds no secret-looking parameter or job variable (project/secrets.py)."""
    for i, decl in enumerate(declarations.deployments):
        where = f"{declarations.filename}: deployments[{i}]"
        places = [(f"{where}.parameters", "parameters", decl.parameters),
                  *((f"{where}.schedules[{j}].parameters", "parameters", s.parameters)
                    for j, s in enumerate(decl.schedules)),
                  (f"{where}.work_pool.job_variables", "job_variables", decl.work_pool.job_variables)]
        refuse_secrets(places, decl.not_secret, where)


def refuse_project_secrets(project: Project, declarations: Declarations) -> None:
    """Neither file, in any environment, holds a secret: both go into the release image (`make image`)."""
    refuse_declared_secrets(declarations)
    for env_name, env in project.config.environments.items():
        refuse_environment_secrets(env_name, env)


def refuse_environment_secrets(env_name: str, env: EnvironmentConfig) -> None:
    """An environment of slipway.yaml holds none either: its job variables and its deployments' overrides."""
    field = f"{CONFIG_FILE}: environments.{env_name}"
    refuse_secrets([(f"{field}.job_variables", "job_variables", env.job_variables)], env.not_secret, field)
    for key, override in parse_overrides(env_name, env).items():
        where = f"{field}.deployments.{key}"
        places = [(f"{where}.parameters", "parameters", override.parameters),
                  *((f"{where}.schedules[{j}].parameters", "parameters", s.parameters)
                    for j, s in enumerate(override.schedules or [])),
                  (f"{where}.work_pool.job_variables", "job_variables", override.work_pool.job_variables),
                  (f"{where}.job_variables", "job_variables", override.job_variables)]
        refuse_secrets(places, override.not_secret, where)


# --- per-environment merge ---------------------------------------------------------------------------------

@dataclass
class ResolvedDeployment:
    """One deployment as it will be registered in one environment, before the image is pinned."""

    index: int  # position in deployments.yaml, for error messages
    flow_name: str
    name: str
    entrypoint: str
    description: str | None
    parameters: dict[str, Any]
    schedules: list[ScheduleDecl]
    schedules_field: str  # where the schedules came from: "deployments.yaml: deployments[3].schedules" ...
    tags: list[str]
    work_pool_name: str
    work_queue_name: str | None
    job_variables: dict[str, Any]
    job_variables_source: dict[str, str] = field(default_factory=dict)  # key -> "file: field" that set it
    concurrency_limit: int | None = None
    enforce_parameter_schema: bool = True
    concurrency_options: dict[str, Any] | None = None  # collision strategy of the mapping form
    paused: bool | None = None  # declared: slipway makes the deployment paused (true) or active (false)
    version_type: str | None = None
    triggers: list[dict[str, Any]] = field(default_factory=list)  # Prefect deployment trigger specs

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.name}"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` wins; nested mappings (job variable `env`, for instance) are merged key by key."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _dedup(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def resolve_for_environment(declarations: Declarations, flow_names: list[str], env_name: str,
                            env: EnvironmentConfig, pull: Any = None) -> list[ResolvedDeployment]:
    """Merge slipway.yaml's environment settings into each declaration.

    `flow_names[i]` is the name of the flow at declaration i's entrypoint, as read inside the image
    (the flow's `name=`, not the function name): the override keys use it, as Prefect does.
    Precedence, lowest first: the pull credentials (deploy/pull.py) < environment `job_variables` < the
    declaration's `work_pool.job_variables` < the environment's per-deployment override.
    """
    overrides = parse_overrides(env_name, env)
    fname = declarations.filename
    env_field = f"environments.{env_name}"
    resolved: list[ResolvedDeployment] = []
    seen: dict[str, int] = {}
    for i, (decl, flow_name) in enumerate(zip(declarations.deployments, flow_names)):
        key = f"{flow_name}/{decl.name}"
        where = f"{fname}: deployments[{i}]"
        if key in seen:
            raise SlipwayError(f"{where}.name: '{key}' is already declared by deployments[{seen[key]}]",
                               "give one of them another name")
        seen[key] = i
        override = overrides.get(key, DeploymentOverride())
        over_field = f"{CONFIG_FILE}: {env_field}.deployments.{key}"

        pool_name = override.work_pool.name or env.work_pool.name  # the file's own is ignored (SLIPWAY_OWNED)
        if pool_name != env.work_pool.name:
            source = f"{over_field}.work_pool.name"
            raise SlipwayError(
                f"{source}: '{pool_name}' is not the environment's work pool '{env.work_pool.name}'",
                f"remove it: slipway registers every deployment in {CONFIG_FILE} {env_field}.work_pool.name")

        sources: dict[str, str] = dict(pull.sources) if pull is not None else {}
        job_variables: dict[str, Any] = copy.deepcopy(pull.job_variables) if pull is not None else {}
        for layer, src in ((env.job_variables, f"{CONFIG_FILE}: {env_field}.job_variables"),
                           (decl.work_pool.job_variables, f"{where}.work_pool.job_variables"),
                           (override.work_pool.job_variables, f"{over_field}.work_pool.job_variables"),
                           (override.job_variables, f"{over_field}.job_variables")):
            job_variables = deep_merge(job_variables, layer)
            sources.update({k: f"{src}.{k}" for k in layer})

        if override.schedules is not None:
            schedules, schedules_field = list(override.schedules), f"{over_field}.schedules"
        else:
            schedules, schedules_field = decl.all_schedules, f"{where}.{decl.schedules_key}"

        resolved.append(ResolvedDeployment(
            index=i,
            flow_name=flow_name,
            name=decl.name,
            entrypoint=decl.entrypoint,
            description=override.description if override.description is not None else decl.description,
            parameters={**decl.parameters, **override.parameters},
            schedules=schedules,
            schedules_field=schedules_field,
            tags=_dedup([*decl.tags, *env.tags, *override.tags]),
            work_pool_name=env.work_pool.name,
            work_queue_name=override.work_pool.work_queue_name or decl.work_pool.work_queue_name,
            job_variables=job_variables,
            job_variables_source=sources,
            concurrency_limit=override.concurrency_limit or decl.limit,
            enforce_parameter_schema=(override.enforce_parameter_schema
                                      if override.enforce_parameter_schema is not None
                                      else decl.enforce_parameter_schema),
            concurrency_options=decl.concurrency_options,
            paused=decl.paused,
            version_type=decl.version_type,
            triggers=[dict(t.root) for t in decl.triggers],
        ))
    unknown = sorted(set(overrides) - set(seen))
    if unknown:
        raise SlipwayError(
            f"{CONFIG_FILE}: {env_field}.deployments.{unknown[0]}: no such deployment in {fname}",
            f"use one of: {', '.join(sorted(seen))}")
    return resolved
