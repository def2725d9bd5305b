"""Everything checked before the first write, for every deployment of a release at once.

1. Entry points import INSIDE the release image: what the build-time probe found (image/probe.py), read
   from the image's release layer. A flow that does not import is an error naming its deployments.yaml field.
2. Parameters (the deployment's and each schedule's) validate against the flow's schema, with the rules
   the Prefect server applies (`prefect.utilities.schema_tools.validate`, required ones may come at run time).
3. Schedules were already checked by Prefect's own validators when deployments.yaml was loaded.
4. Every job-variable key exists in the work pool's `variables.properties` (Prefect would ignore an unknown
   key silently) and every value validates against it, the way the server checks a deployment.
5. Kubernetes pools: the Job manifest, rendered by prefect-kubernetes' own code, validates strictly for
   slipway.yaml's `kubernetes_version`, and its values follow the API server's own rules (quantities,
   requests within limits, names and labels: deploy/kubernetes_values.py).

Each failure is a SlipwayError naming the file and field it comes from.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from slipway.deploy.desired import pinned_job_variables
from slipway.deploy.kubernetes import load_job_template, render_job_manifests, validate_manifest
from slipway.deploy.kubernetes_values import check_job
from slipway.deploy.live import LivePool
from slipway.deploy.pull import PullCredentials
from slipway.errors import Finding, SlipwayError
from slipway.image.probe import import_time_hint
from slipway.image.release_layer import ReleaseLayer
from slipway.invocation import command
from slipway.output import Reporter
from slipway.project.config import CONFIG_FILE, EnvironmentConfig, Project, parse_config
from slipway.project.declarations import (
    Declarations,
    ResolvedDeployment,
    load_declarations,
    parse_declarations,
    refuse_declared_secrets,
    refuse_environment_secrets,
    resolve_for_environment,
)


@dataclass(frozen=True)
class ReleaseConfig:
    """One release's configuration for one environment: its slipway.yaml environment and its deployments.

    From the working tree (`from_project`) for deploy and plan, or from a release's own layer
    (`from_layer`) for a rollback, which re-registers a release exactly as it was released."""

    env_name: str
    env: EnvironmentConfig
    declarations: Declarations
    kubernetes_version: str
    app_dir: str
    pull: PullCredentials | None = None  # the working tree's pull credentials (deploy/pull.py), set by the pipeline

    @classmethod
    def from_project(cls, project: Project, env_name: str) -> ReleaseConfig:
        """The working tree's release for `env_name`; a secret-looking value in what it registers is refused
        (a rollback re-registers an older release as it was, so `from_layer` does not refuse)."""
        env, declarations = project.environment(env_name), load_declarations(project)
        refuse_declared_secrets(declarations)
        refuse_environment_secrets(env_name, env)
        return cls(env_name, env, declarations, project.config.kubernetes_version, project.config.image.app_dir)

    @classmethod
    def from_layer(cls, layer: ReleaseLayer, env_name: str, where: str) -> ReleaseConfig:
        try:
            data = yaml.safe_load(layer.files[CONFIG_FILE])
        except (KeyError, yaml.YAMLError) as exc:
            raise SlipwayError(f"{where}: its release layer holds no readable {CONFIG_FILE}",
                               "pick a release built by slipway") from exc
        config = parse_config(data, where=f"{where}: the release's {CONFIG_FILE}")
        if env_name not in config.environments:
            raise SlipwayError(f"{where}: the release's {CONFIG_FILE} has no environment '{env_name}'",
                               "pick a release that was built with this environment")
        declarations = parse_declarations(layer.files.get(config.deployments, ""), config.deployments)
        return cls(env_name, config.environments[env_name], declarations, config.kubernetes_version,
                   config.image.app_dir)


@dataclass(frozen=True)
class PoolState:
    """The work pool deployments are validated against, and whether slipway manages its template."""

    name: str
    type: str
    template: dict[str, Any]  # the template deployments are validated against and the pool will have
    template_display: str  # where that template comes from, for messages
    managed: bool  # the template is the repo's: create or update the pool to match it


def pool_state(config: ReleaseConfig, project: Project, live: LivePool | None) -> PoolState:
    """The repo's template when slipway.yaml names one (always read from the working tree: the pool is the
    environment's infrastructure, not part of a release), else the live pool's, else the worker's default."""
    pool = config.env.work_pool
    if pool.base_job_template:
        template = load_job_template(project.resolve(pool.base_job_template), pool.base_job_template)
        return PoolState(pool.name, pool.type, template, pool.base_job_template, True)
    if live is not None:  # not managed from the repo: validate against what the pool really has
        return PoolState(pool.name, pool.type, live.base_job_template, f"'{pool.name}' (as in Prefect)", False)
    return PoolState(pool.name, pool.type, default_pool_template(pool.type),
                     f"'{pool.name}' ({pool.type} worker default)", False)


def default_pool_template(pool_type: str) -> dict[str, Any]:
    """The worker type's default base job template (prefect-docker's for `docker`), from the installed worker."""
    from prefect.workers.base import BaseWorker

    worker_cls = BaseWorker.get_worker_class_from_type(pool_type)
    if worker_cls is None:
        raise SlipwayError(f"no Prefect worker of type '{pool_type}' is installed",
                           "install its integration (prefect-docker, prefect-kubernetes)")
    return worker_cls.get_default_base_job_template()


@dataclass
class ValidatedRelease:
    """A release's deployments for one environment, every check passed: ready to plan and apply."""

    config: ReleaseConfig
    pool: PoolState
    deployments: list[ResolvedDeployment]
    schemas: list[dict[str, Any]]  # parameter schema by declaration, from the image
    image: str  # the image whose probe results these are, for messages
    manifests: dict[str, dict] = field(default_factory=dict)  # kubernetes: full name -> rendered Job


async def validate_release(config: ReleaseConfig, pool: PoolState, layer: ReleaseLayer, image: str,
                           reference: str, reporter: Reporter) -> ValidatedRelease:
    """Every check, for every deployment, before anything is written. `reference` may be a placeholder
    (before the first push); `layer` is the image's release layer: what its build-time probe found."""
    decls = config.declarations
    results = layer.probe
    if [r.get("entrypoint") for r in results] != [d.entrypoint for d in decls.deployments]:
        raise SlipwayError(f"{image}: its build-time entry-point probe does not match its {decls.filename}",
                           f"rebuild the image from this commit (`{command('image')}`)")
    flow_names = check_probe(decls, results, image)
    resolved = resolve_for_environment(decls, flow_names, config.env_name, config.env, config.pull)
    validated = ValidatedRelease(config, pool, resolved, [r["parameter_schema"] for r in results], image)
    for dep in resolved:
        result = results[dep.index]
        decl = decls.deployments[dep.index]
        # Probe checks line up with parameter_sets only when no override changed the parameters.
        same = dep.parameters == decl.parameters and dep.schedules == decl.all_schedules
        validate_parameters(dep, result["parameter_schema"], result["parameter_checks"] if same else [],
                            decls.filename)
        if "image" in dep.job_variables:
            where = dep.job_variables_source.get("image", "job_variables.image")
            raise SlipwayError(f"{where}: slipway sets the image to the release's digest reference", "remove it")
        validate_job_variables(dep, pinned_job_variables(dep, reference), pool.template, pool.template_display)
    if pool.type == "kubernetes":
        await check_manifests(validated, reference)
    reporter.step(f"validated {len(resolved)} deployment(s) for {config.env_name}")
    return validated


async def check_manifests(validated: ValidatedRelease, reference: str) -> None:
    """Render every deployment's Job with `reference` pinned and validate it strictly (no I/O)."""
    pool, config = validated.pool, validated.config
    validated.manifests = await render_job_manifests(
        pool.template, [(dep, pinned_job_variables(dep, reference)) for dep in validated.deployments],
        work_pool_name=pool.name, api_url=config.env.prefect.api_url, template_display=pool.template_display)
    for dep in validated.deployments:
        manifest = validated.manifests[dep.full_name]
        validate_kubernetes_manifest(dep, manifest, config.kubernetes_version, pool.template_display)
        check_job(manifest, pool.template, dep.job_variables, dep.job_variables_source, pool.template_display,
                  dep.full_name)
        check_job_runs_the_release(dep, manifest, reference, pool.template_display)


def check_job_runs_the_release(dep: ResolvedDeployment, manifest: dict[str, Any], reference: str,
                               template_display: str) -> None:
    """The Job's container runs the release's digest, and not as root. A template that drops `{{ image }}`
    validates as a Job, and the worker would then send Prefect's own image by tag: refused here."""
    pod = ((manifest.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or [{}]
    image = containers[0].get("image")
    if image != reference:
        raise SlipwayError(
            f"{template_display}: the Job rendered for {dep.full_name} runs image {image!r}, not the release's "
            f"{reference}", "the template's first container needs `\"image\": \"{{ image }}\"` (slipway sets it)")
    for container in containers:
        context = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
        if not (context.get("runAsNonRoot") is True or context.get("runAsUser") not in (None, 0)) \
                or context.get("runAsUser") == 0:
            raise SlipwayError(
                f"{template_display}: the Job rendered for {dep.full_name} may run container "
                f"'{container.get('name')}' as root",
                "set securityContext.runAsNonRoot: true (and runAsUser) in the base job template")


def check_probe(declarations: Declarations, results: list[dict[str, Any]], image: str) -> list[str]:
    """Flow names by declaration, or the first import failure as a SlipwayError."""
    for error in import_errors(declarations, results, image):
        raise error
    return [result["flow_name"] for result in results]


def import_errors(declarations: Declarations, results: list[dict[str, Any]], image: str) -> list[SlipwayError]:
    """One error per declaration whose entry point did not load in the image, with the hint for a module
    that does work at import time (image/probe.py import_time_hint)."""
    return [SlipwayError(f"{declarations.filename}: deployments[{i}].entrypoint: {decl.entrypoint} does not load "
                         f"in image {image}: {result['error']}",
                         import_time_hint(result["error"]) or "fix the entry point (a path relative to the "
                         "image's app directory, then ':' and the flow function) or the flow")
            for i, (decl, result) in enumerate(zip(declarations.deployments, results)) if "error" in result]


def deployment_findings(project: Project, env_name: str, declarations: Declarations,
                        results: list[dict[str, Any]] | None, reference: str) -> list[Finding]:
    """What validate_release checks of each deployment without Prefect, as `doctor` findings: job variables
    against the pool's template (the repo's, else the worker's default: the live pool is not read) and
    parameters against the flow's schema where the probe found it (`results`; None: not probed, flows named
    by their function). `reference` stands in for the digest."""
    config = ReleaseConfig(env_name, project.environment(env_name), declarations, project.config.kubernetes_version,
                           project.config.image.app_dir)
    names = [(r or {}).get("flow_name") or d.entrypoint.rpartition(":")[2]
             for d, r in zip(declarations.deployments, results or [None] * len(declarations.deployments))]
    try:
        resolved = resolve_for_environment(declarations, names, env_name, config.env)
        pool = pool_state(config, project, None)
    except SlipwayError as exc:
        return [Finding.of("job_variables", exc)]
    findings = []
    for dep in resolved:
        result = (results or [{}] * len(resolved))[dep.index]
        try:
            if "image" in dep.job_variables:
                where = dep.job_variables_source.get("image", "job_variables.image")
                raise SlipwayError(f"{where}: slipway sets the image to the release's digest reference", "remove it")
            validate_job_variables(dep, pinned_job_variables(dep, reference), pool.template, pool.template_display)
        except SlipwayError as exc:
            findings.append(Finding.of("job_variables", exc))
        if "parameter_schema" in result:
            try:
                validate_parameters(dep, result["parameter_schema"], [], declarations.filename)
            except SlipwayError as exc:
                findings.append(Finding.of("parameters", exc))
    return findings


_VALIDATORS: dict[str, Any] = {}  # a schema's canonical JSON -> its validator, checked and built once
_SEEN: dict[int, tuple[dict[str, Any], Any]] = {}  # id(schema) -> (schema, validator): no JSON for a known object


def schema_problem(obj: dict[str, Any], schema: dict[str, Any], where: str) -> tuple[list[str], str] | None:
    """(path, message) of the error Prefect's `schema_tools.validate(..., raise_on_error=True)` would raise
    (jsonschema's best match), or None when `obj` is valid.

    Prefect's `validate` prepares the schema (a deep copy, its preprocessing, `required` removed) and builds
    a validator on every call, and its raising path also checks the schema against the JSON Schema
    meta-schema (~20 ms): for a thousand deployments, two schemas each, that was seconds. Here each distinct
    schema is checked and prepared once, the way `validate` prepares it (tests/unit/test_schema_cache.py
    holds the two to the same answers)."""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    try:
        error = best_match(_validator(schema, where).iter_errors(obj))
    except (RecursionError, Unresolvable) as exc:  # a circular or dangling $ref, as Prefect reports them
        raise SlipwayError(f"{where}: the schema cannot be checked ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:200]})", "fix the schema's references") from exc
    if error is None:
        return None
    return [str(p) for p in error.path], " ".join(error.message.split())


def _validator(schema: dict[str, Any], where: str):
    seen = _SEEN.get(id(schema))
    if seen is not None and seen[0] is schema:
        return seen[1]
    key = json.dumps(schema, sort_keys=True, default=str)
    validator = _VALIDATORS.get(key)
    if validator is None:
        from prefect.utilities.schema_tools import is_valid_schema

        try:
            is_valid_schema(schema)
        except ValueError as exc:
            raise SlipwayError(f"{where}: {' '.join(str(exc).split())}",
                               "fix the flow's parameter annotations so Prefect can build a valid schema") from exc
        validator = _VALIDATORS[key] = prepared_validator(schema)
    _SEEN[id(schema)] = (schema, validator)  # the reference keeps the id from being reused
    return validator


def prepared_validator(schema: dict[str, Any]):
    """The validator `prefect.utilities.schema_tools.validate(obj, schema, ignore_required=True)` builds."""
    from prefect._internal.schemas._registry import non_fetching_registry
    from prefect.utilities.collections import remove_nested_keys
    from prefect.utilities.schema_tools import validation

    prepared = remove_nested_keys(["required"], validation.preprocess_schema(schema))
    return validation._VALIDATOR(prepared, format_checker=validation._VALIDATOR.FORMAT_CHECKER,
                                 registry=non_fetching_registry())


# --- parameters --------------------------------------------------------------------------------------------

def parameter_sets(deployment: ResolvedDeployment) -> list[tuple[str, dict[str, Any]]]:
    """(field, parameters) for the deployment and for each schedule (schedule values override)."""
    sets = [(f"deployments[{deployment.index}].parameters", deployment.parameters)]
    for j, schedule in enumerate(deployment.schedules):
        if schedule.parameters:
            field = deployment.schedules_field.split(": ", 1)[1]  # `schedule` (one) is not a list
            sets.append((f"{field}{'' if field.endswith('.schedule') else f'[{j}]'}.parameters",
                         {**deployment.parameters, **schedule.parameters}))
    return sets


def validate_parameters(deployment: ResolvedDeployment, schema: dict[str, Any], probe_checks: list,
                        filename: str) -> None:
    sets = parameter_sets(deployment)
    for k, (where, params) in enumerate(sets):
        unknown = sorted(set(params) - set(schema.get("properties") or {}))
        if unknown:
            raise SlipwayError(
                f"{filename}: {where}.{unknown[0]}: flow '{deployment.flow_name}' has no parameter '{unknown[0]}'",
                f"use one of: {', '.join(sorted(schema.get('properties') or {})) or '(none)'}")
        problem = schema_problem(params, schema, f"the parameter schema of flow '{deployment.flow_name}'")
        if problem is not None:
            path, message = problem
            raise SlipwayError(f"{filename}: {where}{'.' + '.'.join(path) if path else ''}: {message}",
                               "match the type of the flow's parameter")
        check = probe_checks[k] if k < len(probe_checks) else None
        if check:
            raise SlipwayError(f"{filename}: {where}: rejected by flow '{deployment.flow_name}': {check}",
                               "match the types of the flow's parameters")


# --- job variables -----------------------------------------------------------------------------------------

# The fix for a job variable a team brings from another pool type, where "use one of ..." would not say it.
UNKNOWN_JOB_VARIABLE_FIXES = {
    "pip_packages": "this pool installs nothing when a flow run starts (pip_packages is Prefect's managed "
                    "pools'): add the packages to the runtime lock the image installs (requirements/runtime.txt) "
                    "and remove pip_packages; the release image then holds them, pinned",
}


def validate_job_variables(deployment: ResolvedDeployment, job_variables: dict[str, Any],
                           base_job_template: dict[str, Any], pool_display: str) -> None:
    """Keys must exist in the pool's variables; values must match their schema (as the server checks)."""
    variables = base_job_template.get("variables") or {}
    known = set(variables.get("properties") or {})
    for key in job_variables:
        top = key.split(".", 1)[0]  # Prefect accepts dotted keys ("env.FOO") for nested values
        if top not in known:
            where = deployment.job_variables_source.get(key, f"job_variables.{key}")
            raise SlipwayError(
                f"{where}: unknown job variable for work pool {pool_display} (Prefect would ignore it)",
                UNKNOWN_JOB_VARIABLE_FIXES.get(top) or f"use one of: {', '.join(sorted(known))}")
    problem = schema_problem(job_variables, variables, f"{pool_display}: variables")
    if problem is not None:
        path, message = problem
        key = path[0] if path else ""
        where = deployment.job_variables_source.get(key, f"job_variables.{key}")
        rest = "".join(f".{p}" for p in path[1:])
        raise SlipwayError(f"{where}{rest}: {message} (work pool {pool_display})",
                           "fix the value to match the pool's base job template")


def validate_kubernetes_manifest(deployment: ResolvedDeployment, manifest: dict[str, Any],
                                 kubernetes_version: str, template_display: str) -> None:
    try:
        validate_manifest(manifest, kubernetes_version)
    except ValueError as exc:
        raise SlipwayError(
            f"{template_display}: the Job rendered for {deployment.full_name} is not a valid Kubernetes "
            f"{kubernetes_version} Job: {exc}",
            "fix the base job template or the job variables that fill it") from exc
