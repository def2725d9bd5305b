"""The release pipeline: the order of the steps of every verb, read top to bottom as
commit → image → digest → plan → apply.

Each verb is one function here; it receives its collaborators (a Workspace for the local side — the project,
the commit, the Docker engine — and a Target for the environment — its registry and Prefect) and hands typed
values from step to step. The rule every writing verb follows: all input is checked, and every check that
can be made is made, before the first write to a registry or to Prefect; a failure after writes began says
what was written and how to finish (deploy/apply.py).

- `build`: the image of HEAD (content, entry-point probe, release layer).
- `push`: HEAD's image to the environment's registry; the digest read back.
- `plan` / `deploy`: HEAD's release, validated, compared with Prefect, and (deploy) pushed and applied.
- `release`: `build` then `deploy` in one process (`make image deploy`).
- `rollback`: an older release, read from the registry (no pull, no build), validated and applied.
- `manifests`: each deployment's Kubernetes Job, rendered and validated.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import anyio

from slipway.build import release_layer
from slipway.build.engine import docker_client
from slipway.build.image import (
    REVISION_LABEL,
    BuiltImage,
    build_content,
    code_layers,
    find_local_image,
    finish_image,
    probe_code,
    refuse_dirty,
)
from slipway.build.release_layer import ReleaseLayer
from slipway.deploy.apply import apply_plan
from slipway.deploy.desired import desired_deployments
from slipway.deploy.guard import LiveRelease, check_downgrade
from slipway.deploy.lease import release_lease
from slipway.deploy.plan import Plan, plan_deployments, plan_work_pool
from slipway.deploy.prefect_api import PrefectApi
from slipway.deploy.validate import ReleaseConfig, ValidatedRelease, check_manifests, pool_state, validate_release
from slipway.errors import SlipwayError
from slipway.output import Reporter
from slipway.project.config import CONFIG_FILE, Project
from slipway.project.declarations import load_declarations, refuse_project_secrets
from slipway.project.git import GitFacts, is_ancestor, read_git_facts
from slipway.registry.push import PushedImage, push_image
from slipway.registry.releases import Release, find_release, read_labels, read_release_layer, release_at
from slipway.target import Target

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64  # validation before the first push: the real digest is not known yet


@dataclass
class Workspace:
    """The local side of one run: the project, its commit, the Docker engine (connected on first use)."""

    project: Project
    reporter: Reporter

    @cached_property
    def commit(self) -> GitFacts:
        return read_git_facts(self.project.root)

    @cached_property
    def engine(self):
        return docker_client()


@dataclass(frozen=True)
class HeadRelease:
    """HEAD's release as deploy finds it: where its image is, and what its release layer holds."""

    image: str  # for messages: the local reference, or the digest reference in the registry
    layer: ReleaseLayer
    pushed: PushedImage | None  # None until the registry holds it
    local: object | None  # the docker-py Image to push, when the local engine has it


@dataclass(frozen=True)
class RolledBack:
    release: Release
    plan: Plan


# --- build -------------------------------------------------------------------------------------------------

def build(ws: Workspace, allow_dirty: bool = False, nocache: bool = False) -> BuiltImage:
    """HEAD's image: the content image (built only when its inputs changed), the code layers written from
    the commit, the entry points probed in that exact image, then slipway's release layer."""
    facts = ws.commit
    refuse_dirty(facts, allow_dirty)
    declarations = load_declarations(ws.project)  # a broken deployments.yaml fails before any build work
    refuse_project_secrets(ws.project, declarations)  # both files go into the image: no secret may
    files = release_layer.collect(ws.project)
    content = build_content(ws.engine, ws.project, facts, ws.reporter, nocache=nocache)
    code = code_layers(ws.project, facts)
    probe = probe_code(ws.engine, ws.project, content, code, declarations, ws.reporter)
    return finish_image(ws.engine, ws.project, content, code, ReleaseLayer(files, probe), facts, ws.reporter)


# --- push --------------------------------------------------------------------------------------------------

def refuse_dirty_release(ws: Workspace, target: Target) -> None:
    """A `-dirty` image is not any commit: it may only go to the developer's own `local` environment."""
    facts = ws.commit
    if facts.dirty and not target.accepts_dirty:
        raise SlipwayError(
            f"{facts.root} has uncommitted changes, so HEAD's image is a -dirty build, which cannot be released "
            f"to '{target.name}' (only to 'local')", "commit your changes, run `make image`, then release")


def push(ws: Workspace, target: Target) -> PushedImage:
    refuse_dirty_release(ws, target)
    image = find_local_image(ws.engine, ws.project, ws.commit)
    if image is None:
        raise SlipwayError(f"no image {ws.project.config.image.name}:{ws.commit.image_tags()[0]} for HEAD "
                           f"({ws.commit.short_sha}) in the local engine", "run `make image` first")
    return push_image(ws.engine, target.registry, image, ws.commit.image_tags(), ws.reporter)


# --- plan and deploy ---------------------------------------------------------------------------------------

def find_head_release(ws: Workspace, target: Target) -> HeadRelease:
    """Where HEAD's release is, and its release layer, which must come from the working tree's configuration.

    A clean commit the registry already holds is deployed as the registry holds it (built once, deployed
    anywhere: no rebuild and no push). Otherwise the local engine's image is the release, pushed by deploy.
    A -dirty tag names no single state of the tree, so for a dirty tree the local image always wins."""
    facts, project = ws.commit, ws.project
    tag = facts.image_tags()[0]
    digest = target.registry.manifest_digest(tag)
    if digest is not None and not facts.dirty:
        release = release_at(target.registry, digest, [tag])
        head = HeadRelease(target.reference(digest), read_release_layer(target.registry, release),
                           PushedImage(target.repository, digest, facts.image_tags()), None)
    else:
        local = find_local_image(ws.engine, project, facts)
        if local is None:
            raise SlipwayError(f"HEAD's image ({project.config.image.name}:{tag}) is neither in the local engine "
                               f"nor in {target.repository}", "build it with `make image`")
        layer = release_layer.read_from_local_image(ws.engine, local.id, local.labels or {},
                                                    project.config.image.app_dir)
        pushed = None
        if digest is not None and digest in _repo_digests(local, target.repository):
            pushed = PushedImage(target.repository, digest, facts.image_tags())
        head = HeadRelease(f"{project.config.image.name}:{tag}", layer, pushed, local)
    if head.layer.config_hash != release_layer.encode(release_layer.collect(project))[1]:
        raise SlipwayError(f"{head.image} was built from another {CONFIG_FILE} or {project.config.deployments} "
                           "than the working tree's", "rebuild it: make image (ALLOW_DIRTY=1 for uncommitted changes)")
    return head


def _repo_digests(image, repository: str) -> set[str]:
    prefix = repository + "@"
    return {ref[len(prefix):] for ref in image.attrs.get("RepoDigests") or [] if ref.startswith(prefix)}


async def validate_head(ws: Workspace, target: Target, api: PrefectApi, head: HeadRelease,
                        config: ReleaseConfig) -> ValidatedRelease:
    live_pool = await api.read_work_pool(config.env.work_pool.name)
    pool = pool_state(config, ws.project, live_pool)
    reference = head.pushed.reference if head.pushed else target.reference(PLACEHOLDER_DIGEST)
    return await validate_release(config, pool, head.layer, head.image, reference, ws.reporter)


async def plan_release(api: PrefectApi, validated: ValidatedRelease, reference: str, commit: GitFacts,
                       environment: str, reported_reference: str | None) -> Plan:
    """Compare the validated release, pinned to `reference`, with what Prefect holds."""
    pool = validated.pool
    live_pool = await api.read_work_pool(pool.name)
    pool_plan = plan_work_pool(live_pool, pool.name, pool.type, pool.template, pool.managed)
    desired = desired_deployments(validated.deployments, validated.schemas, reference, commit,
                                  validated.config.app_dir)
    live = await api.read_deployments([d.full_name for d in desired])
    return Plan(environment, reported_reference, pool_plan, plan_deployments(desired, live))


def _live_digests(deployments, target: Target) -> set[str]:
    return {d.image.partition("@")[2] for d in deployments
            if d.image.startswith(target.repository + "@") and not d.paused}


async def live_digests(target: Target) -> set[str]:
    """The digests the environment's active deployments of this repository pin: its live release (or
    several, mid-migration)."""
    async with target.connect() as api:
        return _live_digests(await api.deployments_in_pool(target.env.work_pool.name), target)


async def live_releases(api: PrefectApi, target: Target, pool_name: str) -> list[LiveRelease]:
    """The releases the environment runs, with the revision each one's image was built from."""
    digests = _live_digests(await api.deployments_in_pool(pool_name), target)
    return [LiveRelease(digest, read_labels(target.registry, digest).get(REVISION_LABEL))
            for digest in sorted(digests)]


async def guard_downgrade(ws: Workspace, target: Target, api: PrefectApi, pool_name: str,
                          head_digest: str | None) -> None:
    live = [r for r in await live_releases(api, target, pool_name) if r.digest != head_digest]
    check_downgrade(target.name, ws.commit.sha, live, lambda older, newer: is_ancestor(ws.commit.root, older, newer))


async def plan(ws: Workspace, target: Target) -> tuple[Plan, HeadRelease]:
    """What deploy would do, writing nothing (not even the work pool); the downgrade guard runs too."""
    config = ReleaseConfig.from_project(ws.project, target.name)
    head = find_head_release(ws, target)
    async with target.connect() as api:
        validated = await validate_head(ws, target, api, head, config)
        await guard_downgrade(ws, target, api, config.env.work_pool.name, head.pushed and head.pushed.digest)
        reference = head.pushed.reference if head.pushed else target.reference(PLACEHOLDER_DIGEST)
        result = await plan_release(api, validated, reference, ws.commit, target.name,
                                    head.pushed.reference if head.pushed else None)
    return result, head


async def deploy(ws: Workspace, target: Target, allow_downgrade: bool = False) -> Plan:
    """Register every deployment pinned to HEAD's image digest, pushing the image first when needed."""
    refuse_dirty_release(ws, target)
    config = ReleaseConfig.from_project(ws.project, target.name)
    head = find_head_release(ws, target)
    async with target.connect() as api:
        validated = await validate_head(ws, target, api, head, config)
        return await apply_head(ws, target, api, head, validated, allow_downgrade)


async def apply_head(ws: Workspace, target: Target, api: PrefectApi, head: HeadRelease,
                     validated: ValidatedRelease, allow_downgrade: bool) -> Plan:
    """The writing half of deploy, every check passed: push HEAD's image when the registry lacks it, then
    write what differs, holding the environment's release lease (deploy/lease.py)."""
    head_digest = head.pushed.digest if head.pushed else None
    pool_name = validated.pool.name
    if not allow_downgrade:  # a stale CI job must not undo a newer release: said before any write...
        await guard_downgrade(ws, target, api, pool_name, head_digest)
    if head.pushed is not None:  # a redeploy that changes nothing needs no lease: there is nothing to race
        unchanged = await plan_pushed(api, validated, head.pushed, ws.commit, target.name)
        if unchanged.writes == 0:
            ws.reporter.step(f"{target.name} already runs {head.pushed.reference}: nothing to write")
            return unchanged
    async with release_lease(api, target.name, ws.reporter) as lease:
        if not allow_downgrade:  # ...and checked again once no other release can write meanwhile
            await guard_downgrade(ws, target, api, pool_name, head_digest)
        pushed = head.pushed
        if pushed is None:  # the first write to the registry
            pushed = await anyio.to_thread.run_sync(
                push_image, ws.engine, target.registry, head.local, ws.commit.image_tags(), ws.reporter)
        else:
            ws.reporter.step(f"{pushed.reference} is in the registry: nothing to push")
        result = await plan_pushed(api, validated, pushed, ws.commit, target.name)
        await apply_plan(api, result, ws.reporter, lease=lease)
    return result


async def plan_pushed(api: PrefectApi, validated: ValidatedRelease, pushed: PushedImage, commit: GitFacts,
                      environment: str) -> Plan:
    if validated.pool.type == "kubernetes":  # validated against a placeholder until now: the real Jobs
        await check_manifests(validated, pushed.reference)
    return await plan_release(api, validated, pushed.reference, commit, environment, pushed.reference)


async def release(ws: Workspace, target: Target, allow_dirty: bool = False,
                  allow_downgrade: bool = False) -> tuple[BuiltImage | None, Plan]:
    """`make image deploy` in one process: HEAD's image (unless the registry already holds HEAD's release),
    then deploy. Work that does not depend on each other overlaps: the Docker build runs while the
    declarations load (and Prefect is imported); the in-image probe runs while Prefect's client connects and
    the work pool is read. Nothing is written anywhere before the probe and every check have passed."""
    refuse_dirty(ws.commit, allow_dirty)
    refuse_dirty_release(ws, target)
    if not ws.commit.dirty and target.registry.manifest_digest(ws.commit.image_tags()[0]) is not None:
        ws.reporter.step(f"{target.repository} already holds HEAD's release ({ws.commit.short_sha}): "
                         "nothing to build or push")
        return None, await deploy(ws, target, allow_downgrade)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="slipway-docker") as docker_work:
        content = docker_work.submit(build_content, ws.engine, ws.project, ws.commit, ws.reporter)
        config = ReleaseConfig.from_project(ws.project, target.name)  # meanwhile: a broken file fails now
        files = release_layer.collect(ws.project)
        code = code_layers(ws.project, ws.commit)
        content_image = await anyio.to_thread.run_sync(content.result)
        probe = docker_work.submit(probe_code, ws.engine, ws.project, content_image, code, config.declarations,
                                   ws.reporter)
        async with target.connect() as api:
            live_pool = await api.read_work_pool(config.env.work_pool.name)
            pool = pool_state(config, ws.project, live_pool)
            layer = ReleaseLayer(files, await anyio.to_thread.run_sync(probe.result))
            built = finish_image(ws.engine, ws.project, content_image, code, layer, ws.commit, ws.reporter)
            head = HeadRelease(built.reference, layer, None, find_local_image(ws.engine, ws.project, ws.commit))
            validated = await validate_release(config, pool, layer, head.image,
                                               target.reference(PLACEHOLDER_DIGEST), ws.reporter)
            return built, await apply_head(ws, target, api, head, validated, allow_downgrade)


# --- rollback ----------------------------------------------------------------------------------------------

async def rollback(ws: Workspace, target: Target, ref: str) -> RolledBack:
    """Re-register release `ref` (tag, SHA or SHA prefix): its image digest and its own configuration, read
    from the registry (no build, no push, no layer pulled). This repository's deployments that the release
    does not have are paused, not deleted."""
    ws.reporter.step(f"looking up '{ref}' in {target.repository}")
    found = find_release(target.registry, ref)
    if found.dirty and not target.accepts_dirty:
        raise SlipwayError(f"{target.repository}:{found.sorted_tags()[0]} was built from uncommitted changes",
                           "roll back to a committed release")
    layer = read_release_layer(target.registry, found)
    reference = target.reference(found.digest)
    ws.reporter.step(f"release {found.version} ({(found.revision or '')[:12]}, {found.digest[:19]}): "
                     "configuration read from the registry")
    config = ReleaseConfig.from_layer(layer, target.name, reference)
    async with target.connect() as api:
        pool = pool_state(config, ws.project, await api.read_work_pool(config.env.work_pool.name))
        validated = await validate_release(config, pool, layer, reference, reference, ws.reporter)
        async with release_lease(api, target.name, ws.reporter) as lease:
            result = await plan_release(api, validated, reference, found.commit(ws.project.root), target.name,
                                        reference)
            keep = {d.full_name for d in validated.deployments}
            result.to_pause = [d for d in await api.deployments_in_pool(pool.name)
                               if d.image.startswith(target.repository + "@") and d.full_name not in keep
                               and not d.paused]
            await apply_plan(api, result, ws.reporter, verb="rollback", lease=lease)
    return RolledBack(found, result)


# --- manifests ---------------------------------------------------------------------------------------------

async def manifests(ws: Workspace, target: Target) -> tuple[ValidatedRelease, str]:
    """Each deployment's Kubernetes Job as the worker would create it, pinned to the digest the registry
    holds for HEAD, from the repository's pool template. Reads nothing from Prefect."""
    env = target.env
    if env.work_pool.type != "kubernetes":
        raise SlipwayError(f"{CONFIG_FILE}: environments.{target.name}.work_pool.type is '{env.work_pool.type}': "
                           "its flow runs are not Kubernetes Jobs", "pick a Kubernetes environment (--env kind)")
    config = ReleaseConfig.from_project(ws.project, target.name)
    head = find_head_release(ws, target)
    if head.pushed is None:
        raise SlipwayError(f"HEAD's image ({head.image}) is not in {target.repository}",
                           f"push it first: python build.py push --env {target.name}")
    pool = pool_state(config, ws.project, None)
    validated = await validate_release(config, pool, head.layer, head.image, head.pushed.reference, ws.reporter)
    return validated, head.pushed.reference
