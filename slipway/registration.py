"""Register a release's deployments in an environment: inputs -> validation -> plan -> apply.

Inputs are data (`ReleaseInputs`: the environment's config and the parsed declarations), never read inside
plan/apply, so a rollback can pass an older release's slipway.yaml and deployments.yaml (from its release
layer) and reuse every step. The order guarantees "nothing written unless everything is valid":

1. read-only checks of the environment: Prefect answers, the work pool's current state;
2. `validate_release`: the entry points imported in the image (the build-time probe, read from the image's
   release layer), parameters, job variables, Kubernetes Jobs;
3. (deploy only) push the image if the registry does not hold it yet, then read the digest back;
4. `plan_release` / `apply_release`: compare with Prefect and write only what differs.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import anyio
import yaml
from pydantic import ValidationError

from slipway import prefect_api
from slipway.config import (
    CONFIG_FILE,
    EnvironmentConfig,
    Project,
    ProjectConfig,
    format_validation_error,
)
from slipway.deployments import (
    Declarations,
    ResolvedDeployment,
    load_declarations,
    parse_declarations,
    resolve_for_environment,
)
from slipway.errors import SlipwayError
from slipway.git import GitFacts
from slipway.kubernetes import load_job_template, render_job_manifest_async
from slipway.output import Reporter
from slipway.validate import (
    check_probe,
    validate_job_variables,
    validate_kubernetes_manifest,
    validate_parameters,
)

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64  # validation before the push: the real digest is not known yet


@dataclass
class ReleaseInputs:
    """What to register: one environment's configuration and the release's declarations."""

    project: Project  # root (work-pool template files) and kubernetes_version
    env_name: str
    env: EnvironmentConfig
    declarations: Declarations
    kubernetes_version: str


@dataclass
class PoolState:
    name: str
    type: str
    template: dict[str, Any]  # the template deployments are validated against and the pool will have
    template_display: str  # where that template comes from, for messages
    managed: bool  # the template is the repo's: create or update the pool to match it
    live: Any = None  # the pool as Prefect has it, None when missing or not read


@dataclass
class ValidatedRelease:
    inputs: ReleaseInputs
    pool: PoolState
    deployments: list[ResolvedDeployment]
    schemas: list[dict[str, Any]]  # parameter schema by deployment, from the image
    image: str  # the image whose probe results these are, for messages
    manifests: dict[str, dict] = field(default_factory=dict)  # kubernetes: full name -> rendered Job


def inputs_from_working_tree(project: Project, env_name: str) -> ReleaseInputs:
    env = project.environment(env_name)
    return ReleaseInputs(project, env_name, env, load_declarations(project), project.config.kubernetes_version)


def inputs_from_files(project: Project, env_name: str, files: dict[str, str]) -> ReleaseInputs:
    """A release's inputs from the slipway.yaml and deployments.yaml texts in its release layer."""
    try:
        config = ProjectConfig.model_validate(yaml.safe_load(files[CONFIG_FILE]))
    except (ValidationError, yaml.YAMLError) as exc:
        detail = format_validation_error(CONFIG_FILE, exc) if isinstance(exc, ValidationError) else str(exc)
        raise SlipwayError(f"the release's {detail}") from None
    if env_name not in config.environments:
        raise SlipwayError(f"the release's {CONFIG_FILE} has no environment '{env_name}'",
                           "pick a release that was built with this environment")
    declarations = parse_declarations(files[config.deployments], config.deployments)
    return ReleaseInputs(project, env_name, config.environments[env_name], declarations,
                         config.kubernetes_version)


# --- work pool ---------------------------------------------------------------------------------------------

def default_pool_template(pool_type: str) -> dict[str, Any]:
    """The worker type's default base job template (prefect-docker's for `docker`), from the installed worker."""
    from prefect.workers.base import BaseWorker

    worker_cls = BaseWorker.get_worker_class_from_type(pool_type)
    if worker_cls is None:
        raise SlipwayError(f"no Prefect worker of type '{pool_type}' is installed",
                           "install its integration (prefect-docker, prefect-kubernetes)")
    return worker_cls.get_default_base_job_template()


def pool_state(inputs: ReleaseInputs, live) -> PoolState:
    pool = inputs.env.work_pool
    if pool.base_job_template:
        path = inputs.project.resolve(pool.base_job_template)
        template = load_job_template(path, pool.base_job_template)
        return PoolState(pool.name, pool.type, template, pool.base_job_template, True, live)
    if live is not None:  # not managed from the repo: validate against what the pool really has
        return PoolState(pool.name, pool.type, live.base_job_template, f"'{pool.name}' (as in Prefect)", False, live)
    return PoolState(pool.name, pool.type, default_pool_template(pool.type),
                     f"'{pool.name}' ({pool.type} worker default)", False, None)


async def read_environment(inputs: ReleaseInputs) -> PoolState:
    """Prefect answers and the work pool's current state; reads only."""
    async with prefect_api.prefect_client(inputs.env, inputs.env_name) as client:
        live = await prefect_api.read_work_pool(client, inputs.env.work_pool.name)
    return pool_state(inputs, live)


# --- validation --------------------------------------------------------------------------------------------

def validate_release(inputs: ReleaseInputs, pool: PoolState, image: str, reference: str,
                     reporter: Reporter, probe_results: list[dict[str, Any]]) -> ValidatedRelease:
    """Every check, for every deployment, before anything is written. `reference` may be a placeholder.

    `probe_results`: what the entry-point probe found inside `image` when it was built (its release layer,
    slipway/release_config.py): flow names, parameter schemas, and the declared parameters' checks.
    """
    decls = inputs.declarations
    fname = decls.filename
    results = probe_results
    if [r.get("entrypoint") for r in results] != [d.entrypoint for d in decls.deployments]:
        raise SlipwayError(f"{image}: its build-time entry-point probe does not match its {fname}",
                           "rebuild the image from this commit (`make image`)")
    flow_names = check_probe(decls, results, image)
    resolved = resolve_for_environment(decls, flow_names, inputs.env_name, inputs.env)

    validated = ValidatedRelease(inputs, pool, resolved, [r["parameter_schema"] for r in results], image)
    for dep in resolved:
        result = results[dep.index]
        decl = decls.deployments[dep.index]
        # Probe checks line up with parameter_sets only when no override changed the parameters.
        same = dep.parameters == decl.parameters and dep.schedules == list(decl.schedules)
        validate_parameters(dep, result["parameter_schema"], result["parameter_checks"] if same else [], fname)
        if "image" in dep.job_variables:
            where = dep.job_variables_source.get("image", "job_variables.image")
            raise SlipwayError(f"{where}: slipway sets the image to the release's digest reference",
                               "remove it")
        job_variables = pinned_job_variables(dep, reference)
        validate_job_variables(dep, job_variables, pool.template, pool.template_display)
    if pool.type == "kubernetes":
        validated.manifests = render_manifests(validated, reference)
        for dep in resolved:
            validate_kubernetes_manifest(dep, validated.manifests[dep.full_name], inputs.kubernetes_version,
                                         pool.template_display)
    reporter.step(f"validated {len(resolved)} deployment(s) for {inputs.env_name}")
    return validated


def pinned_job_variables(dep: ResolvedDeployment, reference: str) -> dict[str, Any]:
    return {**dep.job_variables, "image": reference}


def render_manifests(validated: ValidatedRelease, reference: str) -> dict[str, dict]:
    async def render_all() -> dict[str, dict]:
        out = {}
        for dep in validated.deployments:
            try:
                out[dep.full_name] = await render_job_manifest_async(
                    validated.pool.template, pinned_job_variables(dep, reference),
                    flow_name=dep.flow_name, deployment_name=dep.name, work_pool_name=validated.pool.name,
                    api_url=validated.inputs.env.prefect.api_url)
            except (ValueError, KeyError, TypeError) as exc:  # prefect-kubernetes refuses the template
                raise SlipwayError(f"{validated.pool.template_display}: prefect-kubernetes cannot render the "
                                   f"Job for {dep.full_name}: {' '.join(str(exc).split())}",
                                   "start from deploy/work-pools/kubernetes-job-template.json") from None
        return out

    return anyio.run(render_all)


# --- desired state -----------------------------------------------------------------------------------------

def release_label(facts: GitFacts) -> str:
    return facts.version  # the Git tag when HEAD is at one, else the short SHA (suffixed -dirty)


def desired_deployments(validated: ValidatedRelease, reference: str, facts: GitFacts) -> list:
    """What Prefect should hold for this release: the image pinned by digest, version = Git SHA."""
    from slipway.deployments import schedule_slugs

    version = facts.sha + ("-dirty" if facts.dirty else "")
    label = release_label(facts)
    out = []
    for dep, schema in zip(validated.deployments, validated.schemas):
        stamp = f"Release {label} ({facts.sha}), image {reference}."
        description = f"{dep.description.rstrip()}\n\n{stamp}" if dep.description else stamp
        out.append(prefect_api.DesiredDeployment(
            flow_name=dep.flow_name,
            name=dep.name,
            version=version,
            description=description,
            tags=list(dict.fromkeys([*dep.tags, f"release:{label}"])),
            parameters=dep.parameters,
            parameter_openapi_schema=schema,
            job_variables=pinned_job_variables(dep, reference),
            work_pool_name=dep.work_pool_name,
            work_queue_name=dep.work_queue_name,
            entrypoint=dep.entrypoint,
            concurrency_limit=dep.concurrency_limit,
            enforce_parameter_schema=dep.enforce_parameter_schema,
            schedules=[prefect_api.DesiredSchedule(slug, s)
                       for slug, s in zip(schedule_slugs(dep.schedules), dep.schedules)],
        ))
    return out


# --- plan / apply ------------------------------------------------------------------------------------------

async def _plan(client, validated: ValidatedRelease, desired: list) -> tuple[dict, list[dict]]:
    pool = validated.pool
    live_pool = await prefect_api.read_work_pool(client, pool.name)
    pool_plan = prefect_api.plan_work_pool(live_pool, pool.name, pool.type, pool.template, pool.managed)
    live = await prefect_api.read_deployments(client, [d.full_name for d in desired])
    return pool_plan, prefect_api.plan_deployments(desired, live)


def _summary(validated: ValidatedRelease, reference: str, pool_plan: dict, rows: list[dict]) -> dict:
    return {
        "environment": validated.inputs.env_name,
        "reference": reference,
        "work_pool": {k: pool_plan[k] for k in ("name", "action", "changes")},
        "deployments": prefect_api.public_rows(rows),
    }


def plan_validated(validated: ValidatedRelease, reference: str, facts: GitFacts) -> dict:
    desired = desired_deployments(validated, reference, facts)

    async def run() -> dict:
        async with prefect_api.prefect_client(validated.inputs.env, validated.inputs.env_name) as client:
            pool_plan, rows = await _plan(client, validated, desired)
        return _summary(validated, reference, pool_plan, rows)

    return anyio.run(run)


def apply_validated(validated: ValidatedRelease, reference: str, facts: GitFacts, reporter: Reporter) -> dict:
    desired = desired_deployments(validated, reference, facts)

    async def run() -> dict:
        async with prefect_api.prefect_client(validated.inputs.env, validated.inputs.env_name) as client:
            pool_plan, rows = await _plan(client, validated, desired)
            if pool_plan["action"] != "unchanged":
                await prefect_api.apply_work_pool(client, pool_plan, validated.pool.template)
                reporter.step(f"work pool {pool_plan['name']}: {pool_plan['action']}")
            await prefect_api.apply_deployments(client, rows, reporter)
        return _summary(validated, reference, pool_plan, rows)

    return anyio.run(run)


def apply_release(validated: ValidatedRelease, reference: str, facts: GitFacts, reporter: Reporter) -> dict:
    """Register the validated release's deployments pinned to `reference`, a digest the registry holds.
    deploy validates before pushing (with a placeholder digest), then applies with the digest the push
    returned."""
    ensure_in_registry(validated.inputs, reference)
    if validated.pool.type == "kubernetes":
        # Validated against a placeholder digest: render and check again with the real one (cheap, no I/O).
        validated.manifests = render_manifests(validated, reference)
        for dep in validated.deployments:
            validate_kubernetes_manifest(dep, validated.manifests[dep.full_name],
                                         validated.inputs.kubernetes_version, validated.pool.template_display)
    return apply_validated(validated, reference, facts, reporter)


def human_summary(result: dict, verb: str) -> str:
    out = io.StringIO()
    pool = result["work_pool"]
    out.write(f"{result['environment']}: {result['reference']}\n")
    out.write(f"  work pool {pool['name']}: {pool['action']}\n")
    width = max((len(r["name"]) for r in result["deployments"]), default=0)
    for row in result["deployments"]:
        changes = f" ({', '.join(row['changes'])})" if row.get("changes") else ""
        out.write(f"  {row['name']:<{width}}  {row['action']}{changes}\n")
    counts: dict[str, int] = {}
    for row in result["deployments"]:
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    tally = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
    prefix = "would be: " if verb == "plan" else ""
    out.write(f"{prefix}{tally}" + (" (nothing written)" if verb == "plan" else "") + "\n")
    return out.getvalue()


# --- the release image: local and in the registry ----------------------------------------------------------

@dataclass
class HeadImage:
    repository: str  # <registry host>/<repository>
    tag: str  # the 40-char SHA tag (suffixed -dirty for a dirty tree)
    local: str | None  # `<image.name>:<tag>` when the local engine has it
    digest: str | None  # what the registry holds for the tag, None when not pushed

    @property
    def reference(self) -> str | None:
        return f"{self.repository}@{self.digest}" if self.digest else None

    @property
    def placeholder_reference(self) -> str:
        return f"{self.repository}@{PLACEHOLDER_DIGEST}"


def locate_head_image(project: Project, env_name: str, facts: GitFacts, docker_client, registry=None) -> HeadImage:
    """Where HEAD's image is: in the local engine (checked by its revision label) and/or the registry."""
    from slipway.engine import image_exists
    from slipway.image import REVISION_LABEL, head_reference
    from slipway.registry import registry_client

    env = project.environment(env_name)
    registry = registry or registry_client(env, env_name)
    tag = facts.image_tags()[0]
    local = head_reference(project, facts)
    if image_exists(docker_client, local):
        if (docker_client.images.get(local).labels or {}).get(REVISION_LABEL) != facts.sha:
            raise SlipwayError(f"image {local} is not labelled with revision {facts.sha}", "rebuild it with `make image`")
    else:
        local = None
    digest = registry.manifest_digest(tag)
    return HeadImage(env.image_repository(), tag, local, digest)


def ensure_in_registry(inputs: ReleaseInputs, reference: str, registry=None) -> None:
    """Never register an image the registry does not hold: the digest must resolve there."""
    from slipway.registry import registry_client

    repository, _, digest = reference.partition("@")
    if repository != inputs.env.image_repository() or not digest.startswith("sha256:"):
        raise SlipwayError(f"{reference} is not a digest reference in {inputs.env.image_repository()}",
                           "deploy a reference of the form <registry>/<repository>@sha256:<digest>")
    registry = registry or registry_client(inputs.env, inputs.env_name)
    if registry.manifest_digest(digest) is None:
        raise SlipwayError(f"{reference} is not in the registry of '{inputs.env_name}'",
                           f"push it first: python build.py push --env {inputs.env_name}")


def head_release_layer(head: HeadImage, docker_client, registry) -> tuple[str, dict[str, str], list[dict]]:
    """(image, configuration files, probe results) of HEAD's image: from the local engine when it has the
    image, else from the registry's copy (one manifest, the config blob and the last layer; no pull)."""
    from slipway.release_config import read_from_local_image
    from slipway.releases import image_labels, release_bundle

    if head.local:
        labels = docker_client.images.get(head.local).labels or {}
        return (head.local, *read_from_local_image(docker_client, head.local, labels))
    if head.reference is None:
        raise SlipwayError(f"HEAD's image ({head.tag}) is neither in the local engine nor in {head.repository}",
                           "build it with `make image`")
    return (head.reference, *release_bundle(registry, head.digest, image_labels(registry, head.digest)))


def validate_head(project: Project, env_name: str, facts: GitFacts, reporter: Reporter, docker_client,
                  pool: PoolState | None = None) -> tuple[HeadImage, ValidatedRelease]:
    """plan, deploy and manifests share this: find HEAD's image (local and/or pushed), check that it was
    built from the working tree's configuration, then validate every deployment with what its build-time
    probe found. Before the first push the digest is unknown, so validation uses a placeholder reference.
    `pool`: the work pool state to validate against (default: read from the environment's Prefect)."""
    from slipway import release_config
    from slipway.registry import registry_client

    inputs = inputs_from_working_tree(project, env_name)
    registry = registry_client(inputs.env, env_name)
    head = locate_head_image(project, env_name, facts, docker_client, registry)
    image, files, probe = head_release_layer(head, docker_client, registry)
    if release_config.encode(files)[1] != release_config.encode(release_config.collect(project))[1]:
        raise SlipwayError(f"{image} was built from another {CONFIG_FILE} or {project.config.deployments} than "
                           f"the working tree's", "rebuild it: make image (ALLOW_DIRTY=1 for uncommitted changes)")
    pool = pool if pool is not None else anyio.run(read_environment, inputs)
    validated = validate_release(inputs, pool, image, head.reference or head.placeholder_reference, reporter,
                                 probe_results=probe)
    return head, validated
