"""The release pipeline: the order of the steps of every verb, read top to bottom as
commit → image → digest → plan → apply.

Each verb is one function here; it receives its collaborators (a Workspace for the local side — the project,
the commit, the Docker engine — and a Target for the environment — its registry and Prefect) and hands typed
values from step to step. The rule every writing verb follows: all input is checked, and every check that
can be made is made, before the first write to a registry or to Prefect; a failure after writes began says
what was written and how to finish (deploy/apply.py).

- `build`: the image of HEAD (content image, code layers, entry-point probe, release layer).
- `push`: HEAD's image to the environment's registry; the digest read back.
- `plan` / `deploy`: HEAD's release, validated, compared with Prefect, and (deploy) pushed and applied.
- `release`: `build` then `deploy` in one process (`make image deploy`).
- `rollback`: an older release, read from the registry (no pull, no build), validated and applied.
- `manifests`: each deployment's Kubernetes Job, rendered and validated.
- `promote`: a release copied from one environment's registry to another's by digest (no engine), then tagged.
- `doctor`: every check the others make that needs no registry and no Prefect, as findings (writes nothing).
- `init`: slipway's files for an existing repository (read, answered, rendered and locked in a scratch
  folder, then only what it lacks written); `--upgrade` brings them forward, `--lock` resolves the lock again.
"""
from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import anyio

from slipway.deploy.apply import apply_plan
from slipway.deploy.desired import desired_deployments
from slipway.deploy.guard import LiveRelease, check_downgrade
from slipway.deploy.history import HistoryEntry, ReleaseRef, history_key, new_entry, read_history, write_entry
from slipway.deploy.lease import release_lease
from slipway.deploy.live import LiveDeployment, LiveSnapshot, read_snapshot
from slipway.deploy.ownership import Owner, check_takeover
from slipway.deploy.plan import Plan, plan_deployments, plan_removed, plan_work_pool
from slipway.deploy.prefect_api import PrefectApi
from slipway.deploy.pull import kubernetes_pull, pull_credentials
from slipway.deploy.triggers import owner_resource
from slipway.deploy.unchanged import TOLD_REASON, Inputs, Unchanged, recall, remember, what_to_read
from slipway.deploy.validate import (
    ReleaseConfig,
    ValidatedRelease,
    check_manifests,
    deployment_findings,
    import_errors,
    pool_state,
    validate_release,
)
from slipway.deploy.verify import (
    NotFollowed,
    Verification,
    cancel_left_runs,
    run_tag,
    run_verification,
    verify_parameters,
)
from slipway.errors import Finding, SlipwayError
from slipway.image import release_layer
from slipway.image.base import RUNTIME_LOCK
from slipway.image.build import (
    CONTENT_LABEL,
    REVISION_LABEL,
    BuiltImage,
    assemble_release,
    build_content,
    code_layers,
    content_files,
    entry_point_files,
    find_local_image,
    finish_image,
    load_release,
    probe_code,
    reassemble,
    refuse_dirty,
    refuse_ignored_entry_points,
    release_inputs,
    start_code_probe,
)
from slipway.image.dbt import dbt_findings
from slipway.image.engine import docker_client, pull
from slipway.image.probe import probe_requests
from slipway.image.release_layer import ReleaseLayer
from slipway.init.answers import Ask, answer, moved_answers
from slipway.init.discover import discover
from slipway.init.lock import LOCK_INPUT, compile_lock
from slipway.init.scaffold import (
    ANSWERS_FILE,
    Placement,
    Upgrade,
    compare,
    latest_version,
    place,
    render,
    upgrade,
    with_scratch,
)
from slipway.invocation import command
from slipway.output import Reporter
from slipway.project.config import CONFIG_FILE, Project, VerifyConfig, check_project
from slipway.project.dbt import dbt_projects
from slipway.project.declarations import Declarations, load_declarations, refuse_project_secrets
from slipway.project.git import GitFacts, ignored, is_ancestor, read_git_facts
from slipway.registry.copy import CopyResult, copy_image
from slipway.registry.promotion import write_record
from slipway.registry.publish import NotPublishable, content_in_cache, publish_assembled
from slipway.registry.push import PushedImage, push_image
from slipway.registry.releases import (
    Release,
    ReleaseNotFound,
    find_release,
    read_labels,
    read_release_layer,
    release_at,
)
from slipway.results import unchanged_outputs
from slipway.target import Target

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64  # validation before the first push: the real digest is not known yet


@dataclass
class Workspace:
    """The local side of one run: the project, its commit, the Docker engine (connected on first use)."""

    project: Project
    reporter: Reporter
    warned: set[str] = field(default_factory=set)  # warnings already given this run

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
    built: BuiltImage | None = None  # how that image was assembled, when this process built it


@dataclass(frozen=True)
class RolledBack:
    release: Release
    plan: Plan


# --- build -------------------------------------------------------------------------------------------------

def build(ws: Workspace, allow_dirty: bool = False, nocache: bool = False, target: Target | None = None) -> BuiltImage:
    """HEAD's image: the content image (built only when its inputs changed), the code layers written from
    the commit, the entry points probed in that exact image, then slipway's release layer. With a `target`,
    the base and content images come from (or go to) that environment's build cache (image/cache.py)."""
    facts = ws.commit
    refuse_dirty(facts, allow_dirty)
    declarations = load_declarations(ws.project)  # a broken deployments.yaml fails before any build work
    refuse_ignored_entry_points(ws.project, declarations)
    refuse_project_secrets(ws.project, declarations)  # both files go into the image: no secret may
    warn_declarations(ws, declarations)
    files = release_layer.collect(ws.project)
    cache = target.build_cache() if target is not None else None
    content = build_content(ws.engine, ws.project, facts, ws.reporter, nocache=nocache, cache=cache)
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
            f"to '{target.name}' (only to 'local')", f"commit your changes, run `{command('image')}`, then release")


def push(ws: Workspace, target: Target) -> PushedImage:
    refuse_dirty_release(ws, target)
    image = find_local_image(ws.engine, ws.project, ws.commit)
    if image is None:
        raise SlipwayError(f"no image {ws.project.config.image.name}:{ws.commit.image_tags()[0]} for HEAD "
                           f"({ws.commit.short_sha}) in the local engine", f"run `{command('image')}` first")
    built = None
    if (image.labels or {}).get(CONTENT_LABEL):  # assembled by slipway: it has a release layer
        layer = release_layer.read_from_local_image(ws.engine, image.id, image.labels or {},
                                                    ws.project.config.image.app_dir)
        built = reassemble(ws.engine, ws.project, ws.commit, image, layer)
    return publish(ws, target, image, built)


def publish(ws: Workspace, target: Target, local, built: BuiltImage | None) -> PushedImage:
    """HEAD's local image to the environment's registry. As slipway assembled it (registry/publish.py: the
    content image's layers mounted from the build cache, only the blobs the registry lacks uploaded, a digest
    that follows from the commit) whenever the engine's image is exactly that assembly; otherwise — an image
    made by another slipway version, a build cache that holds another build of the content image — through
    the engine, as `docker push` would."""
    tags = ws.commit.image_tags()
    if built is not None and built.content is not None and built.assembled is not None:
        cache = target.build_cache()
        cached_tag = built.content.cache_tag
        held = cache.holds(cached_tag, ws.reporter)  # None: unreadable (warned)
        if held is False:  # built here without the cache (a plain `make image`): cached now, once
            cache.push(ws.engine, built.content.tag, cached_tag, "content image", ws.reporter)
        try:
            if held is None:
                raise NotPublishable("the build cache cannot be read")
            content = content_in_cache(cache.registry, cached_tag, built.content.image_id)
            pushed = publish_assembled(target.registry, cache.registry, built.assembled, content, tags,
                                       ws.reporter)
        except NotPublishable as exc:
            ws.reporter.warn(f"{exc}: pushing HEAD's image through the Docker engine instead")
        else:
            # The engine learns the image by its registry digest, as after `docker push`: the Docker worker
            # then runs `<repository>@<digest>` without a pull. Only the manifest and slipway's few KB of
            # layers travel; the engine holds every layer already.
            pull(ws.engine, pushed.repository, pushed.digest, target.registry.auth_config(), ws.reporter.detail)
            return pushed
    return push_image(ws.engine, target.registry, local, tags, ws.reporter)


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
                               f"nor in {target.repository}", f"build it with `{command('image')}`")
        layer = release_layer.read_from_local_image(ws.engine, local.id, local.labels or {},
                                                    project.config.image.app_dir)
        pushed = None
        if digest is not None and digest in _repo_digests(local, target.repository):
            pushed = PushedImage(target.repository, digest, facts.image_tags())
        head = HeadRelease(f"{project.config.image.name}:{tag}", layer, pushed, local)
    if head.layer.config_hash != release_layer.encode(release_layer.collect(project))[1]:
        raise SlipwayError(f"{head.image} was built from another {CONFIG_FILE} or {project.config.deployments} "
                           "than the working tree's", f"rebuild it: {command('image')} (--allow-dirty for uncommitted changes)")
    return head


def _repo_digests(image, repository: str) -> set[str]:
    prefix = repository + "@"
    return {ref[len(prefix):] for ref in image.attrs.get("RepoDigests") or [] if ref.startswith(prefix)}


async def validate_head(ws: Workspace, target: Target, api: PrefectApi, head: HeadRelease,
                        config: ReleaseConfig) -> ValidatedRelease:
    config = await with_pull_credentials(api, target, config)
    live_pool = await api.read_work_pool(config.env.work_pool.name)
    pool = pool_state(config, ws.project, live_pool)
    reference = head.pushed.reference if head.pushed else target.reference(PLACEHOLDER_DIGEST)
    return await validate_release(config, pool, head.layer, head.image, reference, ws.reporter)


async def plan_release(api: PrefectApi, validated: ValidatedRelease, reference: str, commit: GitFacts,
                       target: Target, reported_reference: str | None, prune: bool = False) -> Plan:
    """Compare the validated release, pinned to `reference`, with what Prefect holds: the declared deployments
    (refusing one another environment registered), and this environment's deployments the release no longer
    declares (paused, or deleted with `prune`)."""
    desired = desired_deployments(validated.deployments, validated.schemas, reference, commit,
                                  validated.config.app_dir, owner_of(target))
    snapshot = await read_snapshot(api, validated.pool.name, [d.full_name for d in desired])
    return plan_from_snapshot(validated, desired, snapshot, target, reported_reference, prune)


def plan_from_snapshot(validated: ValidatedRelease, desired: list, snapshot: LiveSnapshot, target: Target,
                       reported_reference: str | None, prune: bool = False) -> Plan:
    """The plan of `desired` against what Prefect held (`snapshot`): no reads, no writes."""
    pool = validated.pool
    owner = owner_of(target)
    names = [d.full_name for d in desired]
    pool_plan = plan_work_pool(snapshot.pool, pool.name, pool.type, pool.template, pool.managed)
    automations = snapshot.automations
    live = {name: with_automations(d, automations) for name, d in snapshot.by_name.items()}
    in_pool = [with_automations(d, automations) for d in snapshot.in_pool]
    rows = plan_deployments(desired, live, owner, target.prefect.api_url)
    return Plan(target.name, reported_reference, pool_plan, rows, plan_removed(in_pool, set(names), owner, prune))


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


async def plan(ws: Workspace, target: Target, prune: bool = False) -> tuple[Plan, HeadRelease] | Unchanged:
    """What deploy would do, writing nothing (not even the work pool); the downgrade guard runs too. A release
    a full run left unchanged is told without Prefect's client (deploy/unchanged.py)."""
    known = await recall_unchanged(ws, target, False, prune, verb="plan")
    if known is not None:
        return known
    config = ReleaseConfig.from_project(ws.project, target.name)
    warn_declarations(ws, config.declarations)
    head = find_head_release(ws, target)
    async with target.connect() as api:
        validated = await validate_head(ws, target, api, head, config)
        await guard_downgrade(ws, target, api, config.env.work_pool.name, head.pushed and head.pushed.digest)
        reference = head.pushed.reference if head.pushed else target.reference(PLACEHOLDER_DIGEST)
        result = await plan_release(api, validated, reference, ws.commit, target,
                                    head.pushed.reference if head.pushed else None, prune)
    return result, head


async def deploy(ws: Workspace, target: Target, allow_downgrade: bool = False, prune: bool = False,
                 message: str | None = None, verify: bool = True) -> Plan | Unchanged:
    """Register every deployment pinned to HEAD's image digest, pushing the image first when needed; pause (or
    with `prune` delete) this environment's deployments the release no longer declares; record the release in
    the environment's history. A redeploy of what a full run left unchanged is told without Prefect's client
    (deploy/unchanged.py)."""
    refuse_dirty_release(ws, target)
    known = await recall_unchanged(ws, target, allow_downgrade, prune)
    if known is not None:
        return known
    config = ReleaseConfig.from_project(ws.project, target.name)
    warn_declarations(ws, config.declarations)
    head = find_head_release(ws, target)
    async with target.connect() as api:
        validated = await validate_head(ws, target, api, head, config)
        return await apply_head(ws, target, api, head, validated, allow_downgrade, prune, message, verify)


async def apply_head(ws: Workspace, target: Target, api: PrefectApi, head: HeadRelease,
                     validated: ValidatedRelease, allow_downgrade: bool, prune: bool = False,
                     message: str | None = None, verify: bool = True) -> Plan:
    """The writing half of deploy, every check passed: push HEAD's image when the registry lacks it, then
    write what differs, holding the environment's release lease (deploy/lease.py); then, under the same lease,
    the release's smoke run when the environment has `verify:` (deploy/verify.py, `verify_applied`)."""
    head_digest = head.pushed.digest if head.pushed else None
    pool_name = validated.pool.name
    checks = verification_of(ws, validated, verify)
    skipped = {"verification": "skipped (--no-verify)"} if not verify and validated.config.env.verify else None
    await refuse_takeover(api, target, validated)  # before the push: another environment's deployments
    if not allow_downgrade:  # a stale CI job must not undo a newer release: said before any write...
        await guard_downgrade(ws, target, api, pool_name, head_digest)
    if head.pushed is not None:  # a redeploy that changes nothing needs no lease: there is nothing to race
        unchanged = await plan_pushed(api, validated, head.pushed, ws.commit, target, prune)
        if unchanged.writes == 0:
            ws.reporter.step(f"{target.name} already runs {head.pushed.reference}: nothing to write")
            release_ref = release_of(ws, head.pushed)
            await record_applied(api, target, "deploy", release_ref, unchanged, message, ws.reporter,
                                 skipped)  # records only a release the history does not end with yet
            if checks is not None and not await already_verified(api, target, release_ref.digest):
                async with environment_lease(api, target, ws.reporter) as lease:  # it may roll back
                    await verify_applied(ws, target, api, checks, release_ref, unchanged, lease)
            if skipped is None:
                await remember_unchanged(ws, target, validated, head.pushed, unchanged, allow_downgrade, prune)
            return unchanged
    async with environment_lease(api, target, ws.reporter) as lease:
        if not allow_downgrade:  # ...and checked again once no other release can write meanwhile
            await guard_downgrade(ws, target, api, pool_name, head_digest)
        pushed = head.pushed
        if pushed is None:  # the first write to the registry
            pushed = await anyio.to_thread.run_sync(lambda: publish(
                ws, target, head.local,
                head.built or reassemble(ws.engine, ws.project, ws.commit, head.local, head.layer)))
        else:
            ws.reporter.step(f"{pushed.reference} is in the registry: nothing to push")
        result = await plan_pushed(api, validated, pushed, ws.commit, target, prune)
        await apply_plan(api, result, ws.reporter, lease=lease)
        await record_applied(api, target, "deploy", release_of(ws, pushed), result, message, ws.reporter, skipped)
        if checks is not None:
            await verify_applied(ws, target, api, checks, release_of(ws, pushed), result, lease)
        if skipped is None:
            await remember_unchanged(ws, target, validated, pushed, result, allow_downgrade, prune)
    return result


@asynccontextmanager
async def environment_lease(api: PrefectApi, target: Target, reporter: Reporter) -> AsyncIterator:
    """The environment's release lease (deploy/lease.py), and first of all under it what a release killed
    while it verified left behind: its verification run, cancelled (deploy/verify.py `cancel_left_runs`)."""
    async with release_lease(api, target.name, reporter) as lease:
        await cancel_left_runs(api, run_tag(history_key(target.repository, target.name)), reporter)
        yield lease


def remembers(ws: Workspace, target: Target) -> bool:
    """Whether a deploy of HEAD can be remembered as unchanged: not for a dirty tree (its files are not a
    commit's), nor for a Prefect reached through the test kit's fakes."""
    return not ws.commit.dirty and target.plain_reads


def unchanged_inputs(ws: Workspace, target: Target, digest: str, allow_downgrade: bool, prune: bool) -> Inputs:
    """What a deploy of HEAD follows from besides Prefect's state."""
    return Inputs(ws.commit.root, target.name, target.prefect.api_url, target.repository, ws.commit.sha, digest,
                  allow_downgrade, prune)


async def recall_unchanged(ws: Workspace, target: Target, allow_downgrade: bool, prune: bool,
                           verb: str = "deploy") -> Unchanged | None:
    """A deploy (or plan) whose inputs and whose environment are as a full run left them, told before Prefect
    is even imported (deploy/unchanged.py)."""
    if not remembers(ws, target):
        return None
    digest = target.registry.manifest_digest(ws.commit.image_tags()[0])
    if digest is None:
        return None
    known = await recall(unchanged_inputs(ws, target, digest, allow_downgrade, prune), target, ws.reporter)
    if known is not None:
        ws.reporter.step(f"{target.name} already runs {known.reference}: nothing to "
                         f"{'write' if verb == 'deploy' else 'change'} ({TOLD_REASON})")
    return known


async def remember_unchanged(ws: Workspace, target: Target, validated: ValidatedRelease, pushed: PushedImage,
                             applied: Plan, allow_downgrade: bool, prune: bool) -> None:
    """After a deploy that left the environment as the release declares: remember it for the next one."""
    if not remembers(ws, target):
        return
    inputs = unchanged_inputs(ws, target, pushed.digest, allow_downgrade, prune)

    def plan_of(snapshot: LiveSnapshot) -> Plan:
        desired = desired_deployments(validated.deployments, validated.schemas, pushed.reference, ws.commit,
                                      validated.config.app_dir, owner_of(target))
        return plan_from_snapshot(validated, desired, snapshot, target, pushed.reference, prune)

    await remember(inputs, target, what_to_read(target, applied), plan_of, unchanged_outputs, ws.reporter)


def release_of(ws: Workspace, pushed: PushedImage) -> ReleaseRef:
    return ReleaseRef(pushed.digest, ws.commit.sha, ws.commit.version, ws.commit.image_tags())


async def plan_pushed(api: PrefectApi, validated: ValidatedRelease, pushed: PushedImage, commit: GitFacts,
                      target: Target, prune: bool = False) -> Plan:
    if validated.pool.type == "kubernetes":  # validated against a placeholder until now: the real Jobs
        await check_manifests(validated, pushed.reference)
    return await plan_release(api, validated, pushed.reference, commit, target, pushed.reference, prune)


async def release(ws: Workspace, target: Target, allow_dirty: bool = False, allow_downgrade: bool = False,
                  prune: bool = False, message: str | None = None,
                  verify: bool = True) -> tuple[BuiltImage | None, Plan | Unchanged]:
    """`make image deploy` in one process: HEAD's image (unless the registry already holds HEAD's release),
    then deploy. Work that does not depend on each other overlaps: the content image is found (or built) and
    the probe's container started, importing Prefect in the image, while the declarations load (importing
    Prefect here); the probe answers while Prefect's client connects and the work pool is read; the engine
    loads the finished image while the release is validated. Nothing is written anywhere before the probe
    and every check have passed."""
    refuse_dirty(ws.commit, allow_dirty)
    refuse_dirty_release(ws, target)
    if not ws.commit.dirty and target.registry.manifest_digest(ws.commit.image_tags()[0]) is not None:
        ws.reporter.step(f"{target.repository} already holds HEAD's release ({ws.commit.short_sha}): "
                         "nothing to build or push")
        return None, await deploy(ws, target, allow_downgrade, prune, message, verify)
    engine, cache, code = ws.engine, target.build_cache(), code_layers(ws.project, ws.commit)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="slipway-docker") as docker_work:
        # The content image, then the probe's container in content + code, which imports Prefect while this
        # thread reads deployments.yaml (importing Prefect too, for its schedule models): its questions follow.
        started = docker_work.submit(lambda: start_code_probe(
            engine, ws.project, build_content(engine, ws.project, ws.commit, ws.reporter, cache=cache), code))
        try:
            config = ReleaseConfig.from_project(ws.project, target.name)  # meanwhile: a broken file fails now
            refuse_ignored_entry_points(ws.project, config.declarations)
            refuse_project_secrets(ws.project, config.declarations)
            warn_declarations(ws, config.declarations)
            files = release_layer.collect(ws.project)
            running = await anyio.to_thread.run_sync(started.result)
        except BaseException:
            started.add_done_callback(discard_unasked)
            raise
        probe = docker_work.submit(running.answer, config.declarations, ws.reporter)
        async with target.connect() as api:
            config = await with_pull_credentials(api, target, config)
            live_pool = await api.read_work_pool(config.env.work_pool.name)
            pool = pool_state(config, ws.project, live_pool)
            layer = ReleaseLayer(files, await anyio.to_thread.run_sync(probe.result))
            built = assemble_release(ws.project, running.content, code, layer, ws.commit)
            loaded = docker_work.submit(load_release, engine, built, ws.reporter)  # the engine's share meanwhile
            validated = await validate_release(config, pool, layer, built.reference,
                                               target.reference(PLACEHOLDER_DIGEST), ws.reporter)
            await anyio.to_thread.run_sync(loaded.result)
            head = HeadRelease(built.reference, layer, None, find_local_image(engine, ws.project, ws.commit), built)
            return built, await apply_head(ws, target, api, head, validated, allow_downgrade, prune, message,
                                           verify)


def discard_unasked(started: Future) -> None:
    """A probe started for a run that failed before asking it: its container and candidate image go."""
    if not started.cancelled() and started.exception() is None:
        started.result().discard()


# --- rollback ----------------------------------------------------------------------------------------------

async def rollback(ws: Workspace, target: Target, ref: str | None, message: str | None = None,
                   verify: bool = False) -> RolledBack:
    """Re-register release `ref` (tag, SHA or SHA prefix; None: the release that was live before the current
    one, from the environment's history): its image digest and its own configuration, read from the registry
    (no build, no push, no layer pulled). This environment's deployments that the release does not have are
    paused, not deleted. `verify`: then the release's own smoke run (deploy/verify.py), which only reports."""
    if ref is None:
        async with target.connect() as api:
            found = await release_before_current(api, target, ws.reporter)
    else:
        ws.reporter.step(f"looking up '{ref}' in {target.repository}")
        found = find_release(target.registry, ref)
    if found.dirty and not target.accepts_dirty:
        raise SlipwayError(f"{target.repository}:{found.sorted_tags()[0]} was built from uncommitted changes",
                           "roll back to a committed release")
    async with target.connect() as api:
        validated = await validate_stored(ws, target, api, found)
        checks = verification_of(ws, validated, verify) if verify else None
        if verify and checks is None:
            raise SlipwayError(f"release {found.version} has no verify: settings for '{target.name}' in its "
                               f"{CONFIG_FILE}", "roll back without --verify (VERIFY=1)")
        async with environment_lease(api, target, ws.reporter) as lease:
            result = await apply_stored(ws, target, api, found, validated, lease, message)
            if checks is not None:
                await verify_applied(ws, target, api, checks, ref_of(found), result, lease, report_only=True)
    return RolledBack(found, result)


async def validate_stored(ws: Workspace, target: Target, api: PrefectApi, found: Release) -> ValidatedRelease:
    """A release from the registry, validated for the environment with its own configuration."""
    layer = read_release_layer(target.registry, found)
    reference = target.reference(found.digest)
    ws.reporter.step(f"release {found.version} ({(found.revision or '')[:12]}, {found.digest[:19]}): "
                     "configuration read from the registry")
    config = ReleaseConfig.from_layer(layer, target.name, reference)
    config = await with_pull_credentials(api, target, config)  # the working tree's: infrastructure
    pool = pool_state(config, ws.project, await api.read_work_pool(config.env.work_pool.name))
    return await validate_release(config, pool, layer, reference, reference, ws.reporter)


async def apply_stored(ws: Workspace, target: Target, api: PrefectApi, found: Release,
                       validated: ValidatedRelease, lease, message: str | None,
                       details: dict[str, str] | None = None) -> Plan:
    """The writing half of rollback (the lease held): the release's deployments re-registered, recorded."""
    reference = target.reference(found.digest)
    result = await plan_release(api, validated, reference, found.commit(ws.project.root), target, reference)
    await apply_plan(api, result, ws.reporter, verb="rollback", lease=lease)
    await record_applied(api, target, "rollback", ref_of(found), result, message, ws.reporter, details)
    return result


def ref_of(found: Release) -> ReleaseRef:
    return ReleaseRef(found.digest, found.revision, found.version, found.sorted_tags())


async def release_before_current(api: PrefectApi, target: Target, reporter: Reporter) -> Release:
    """The release that was live before the environment's current one, from its history; says what it found."""
    how = (f"name the release: {command('rollback', '--env', target.name, '--to', '<sha|tag>')} "
           f"({command('releases', '--env', target.name)} lists them)")
    history = await read_history(api, history_key(target.repository, target.name), limit=1)
    if not history:
        raise SlipwayError(f"'{target.name}' has no release history yet, so slipway does not know which release "
                           "was live before the current one", how)
    last = history[0]
    if last.previous is None or last.previous.digest == last.release.digest:
        raise SlipwayError(f"the history of '{target.name}' has no release before {last.release.short}", how)
    before = last.previous
    if target.registry.manifest_digest(before.digest) is None:
        raise SlipwayError(f"{before.short}, the release live before {last.release.short}, is no longer in "
                           f"{target.repository}", how)
    found = release_at(target.registry, before.digest, before.tags)
    if not found.revision:
        raise SlipwayError(f"{target.repository}@{before.digest} has no {REVISION_LABEL} label", how)
    reporter.step(f"rolling back '{target.name}' from {last.release.short} ({last.verb} by {last.actor} at "
                  f"{last.time}) to {before.short}, the release live before it")
    return found


# --- verification (deploy/verify.py): the smoke run after a deploy, and what a failure leads to ------------

@dataclass(frozen=True)
class VerifyChecks:
    """A release's verify: settings, checked against its deployments before anything is written."""

    settings: VerifyConfig
    names: list[str]  # every deployment of the release: what is paused when there is nothing to roll back to


def verification_of(ws: Workspace, validated: ValidatedRelease, enabled: bool) -> VerifyChecks | None:
    """The release's verification, when its environment has one and it is not skipped (said once)."""
    settings = validated.config.env.verify
    if settings is None:
        return None
    if not enabled:
        ws.reporter.warn(f"verification of '{validated.config.env_name}' skipped (--no-verify): the history "
                         "records the release as not verified")
        return None
    verify_parameters(settings, validated, validated.config.env_name)
    return VerifyChecks(settings, [d.full_name for d in validated.deployments])


async def already_verified(api: PrefectApi, target: Target, digest: str) -> bool:
    history = await read_history(api, history_key(target.repository, target.name), limit=1)
    return bool(history) and history[0].release.digest == digest and \
        history[0].details.get("verification") == "verified"


async def verify_applied(ws: Workspace, target: Target, api: PrefectApi, checks: VerifyChecks,
                         release: ReleaseRef, plan: Plan, lease, report_only: bool = False) -> Verification:
    """Run the release's smoke run (the lease held since the writes) and act on its end: recorded verified;
    else rolled back to the release live before it (`on_failure: rollback`, through rollback's own path),
    its deployments paused when there is none (an environment's first release), or left live (`keep`, and
    `rollback --verify`, which only reports). A failure exits non-zero with one line saying what was done."""
    key = history_key(target.repository, target.name)
    history = await read_history(api, key, limit=1)
    last = history[0] if history else None
    before = (last.previous if last.release.digest == release.digest else last.release) if last else None
    name = release.version or release.digest[:19]
    finish = (command("rollback", "--env", target.name, *(("--to", before.version) if before.version else ()))
              if before else f"pause its deployments in Prefect, or release a fixed commit "
                             f"({command('deploy', '--env', target.name)})")
    ids = {n: live.id for n, live in (await api.read_deployments(checks.settings.deployments)).items() if live}
    try:
        verification = await run_verification(api, checks.settings, ids, name, ws.reporter, lease,
                                            run_tag(key))
    except NotFollowed as exc:
        raise SlipwayError(f"release {name} is live in '{target.name}' but its verification could not be followed "
                           f"({exc.deployment}: run {exc.run_name}, {exc.url}: the Prefect server stopped answering: "
                           f"{exc.cause}); nothing was rolled back",
                           f"read the run's end in the UI; if it failed: {finish}; to verify again: "
                           f"{command('rollback', '--env', target.name, '--to', name, '--verify')}") from exc
    except Exception:
        raise
    except BaseException:  # Ctrl-C, SIGTERM: the run was cancelled (verify.py); say what stands
        ws.reporter.warn(f"interrupted while verifying release {name}: it is live in '{target.name}', not "
                         f"verified, its verification run cancelled; to undo it: {finish}; to verify it: "
                         f"{command('rollback', '--env', target.name, '--to', name, '--verify')}")
        raise
    data = {"release": name, "environment": target.name, **verification.to_json()}
    ws.reporter.record("verify", data)  # the CI step summary shows the runs and their links, pass or fail
    plan.verification = verification.to_json()
    failed = verification.failed
    runs = ", ".join(f"{r.run_name} ({r.run_id})" for r in verification.runs)
    if failed is None:
        await _record_verify(api, target, release, before, {"verification": "verified", "run": runs}, ws.reporter)
        ws.reporter.step(f"release {name} verified in '{target.name}' ({runs})")
        return verification
    reason = f"release {name} failed verification ({failed.describe()})"
    details = {"verification": "failed", "run": f"{failed.run_name} ({failed.run_id}) {failed.state}"}
    if report_only or checks.settings.on_failure == "keep":
        await _record_verify(api, target, release, before, details, ws.reporter)
        why = "rollback --verify only reports" if report_only else "verify.on_failure is keep"
        raise SlipwayError(f"{reason}; it stays live ({why})",
                           f"see {failed.url}; roll back with {finish}" if before else f"see {failed.url}")
    if before is None:
        await _pause_first_release(api, checks.names, lease)
        await _record_verify(api, target, release, None, {**details, "paused": ", ".join(checks.names)},
                             ws.reporter)
        raise SlipwayError(f"{reason}; it is the first release of '{target.name}', so there is nothing to roll "
                           f"back to: its {len(checks.names)} deployment(s) are paused",
                           f"see {failed.url}; release a fixed commit ({command('deploy', '--env', target.name)}), or "
                           "resume them in Prefect to run this release anyway")
    ws.reporter.step(f"{reason}: rolling back '{target.name}' to {before.short}, the release live before it")
    try:
        found = release_at(target.registry, before.digest, before.tags)
        validated = await validate_stored(ws, target, api, found)
        await apply_stored(ws, target, api, found, validated, lease, f"automatic rollback: {reason}",
                           {**details, "failed_release": name})
    except SlipwayError as exc:
        raise SlipwayError(f"{reason}; rolling back to {before.short} failed ({exc.message}); release {name} is "
                           "still live", f"finish it: {finish}") from exc
    raise SlipwayError(f"{reason}; rolled back to {before.version or before.short}",
                       f"see {failed.url}; fix the release and deploy it again (history: "
                       f"{command('releases', '--env', target.name)})")


async def _record_verify(api: PrefectApi, target: Target, release: ReleaseRef, before: ReleaseRef | None,
                         details: dict[str, str], reporter: Reporter) -> None:
    """The verification's end as one more history entry of the live release (`previous` stays the release it
    replaced, so a later `rollback` without TAG still goes back to that one)."""
    entry = new_entry("verify", target.name, release, before, None, details)
    try:
        await write_entry(api, history_key(target.repository, target.name), entry)
    except SlipwayError as exc:
        reporter.warn(f"the verification's end was not recorded in the history of '{target.name}' ({exc.message})")
        return
    reporter.step(f"recorded in the history of '{target.name}': {entry.describe()}")


async def _pause_first_release(api: PrefectApi, names: list[str], lease) -> None:
    for live in (await api.read_deployments(names)).values():
        if live is not None and not live.paused:
            lease.check()
            await api.pause_deployment(live)


# --- promote -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Promoted:
    source: str  # environment names
    destination: str
    release: Release
    reference: str  # <destination repository>@<digest>
    tags: list[str]
    copied: CopyResult


async def promote(ws: Workspace, source: Target, dest: Target, ref: str | None = None,
                  any_release: bool = False) -> Promoted:
    """Copy a release from `source`'s registry to `dest`'s by digest, then give it the same tags there: the
    image `dest` runs is the very image `source` ran. Default: the release live in `source` (its Prefect);
    `ref` names another (tag, SHA, SHA prefix or digest), which must be live in `source` unless `any_release`.

    Everything is checked before the first write (the release, the destination's credentials, its tags);
    blobs and the manifest by digest go first, tags last (registry/copy.py), so an interrupted copy moves no
    tag and a rerun completes it. No Docker engine, no build, no checkout of the release's commit."""
    if source.name == dest.name:
        raise SlipwayError(f"promote copies a release between two environments; got '{source.name}' twice",
                           "pass --to another environment of slipway.yaml")
    live: set[str] | None = None
    if ref is None or not any_release:
        ws.reporter.step(f"reading the release live in '{source.name}' from {source.prefect.api_url}")
        live = await live_digests(source)
    ws.reporter.step(f"looking up {f'{ref!r}' if ref else 'the live release'} in {source.repository}")
    release = _release_to_promote(source, dest, ref, live)
    if release.dirty:
        raise SlipwayError(f"{source.repository}@{release.digest[:19]} ({release.version}) was built from "
                           "uncommitted changes", "promote a release built from a commit")
    if live is not None and release.digest not in live and not any_release:
        running = ", ".join(d[:19] for d in sorted(live)) or "nothing"
        raise SlipwayError(f"release {release.version} ({release.digest[:19]}) is not live in '{source.name}' "
                           f"(it runs {running})", f"promote what '{source.name}' runs (no TAG), deploy it there "
                           "first, or pass --any (ANY=1) to promote a release that was never live there")
    tags = release.commit(ws.project.root).image_tags()
    held = _check_destination(dest, release.digest, tags)
    # The first write. The same repository on both sides (two environments sharing one) has it all already.
    same_repository = source.repository == dest.repository
    if dest.registry.ensure_repository().get("created"):
        ws.reporter.step(f"created repository {dest.registry.repository}")
    ws.reporter.step(f"copying {release.version} ({release.digest[:19]}) from {source.repository} to "
                     f"{dest.repository}")
    try:
        copied = copy_image(source.registry, dest.registry, release.digest, ws.reporter)
        manifest = dest.registry.manifest_raw(release.digest)
    except SlipwayError as exc:
        raise SlipwayError(f"copying {release.digest[:19]} to {dest.repository} stopped ({exc.message}); no tag "
                           "was written", "run the same command again once both registries answer: what is "
                           "already copied is not sent again") from exc
    if manifest is None or manifest.digest != release.digest:
        raise SlipwayError(f"after the copy, {dest.repository} does not serve {release.digest}; no tag was written",
                           "check the destination registry, then run the same command again")
    _tag(dest, manifest, tags, held, ws.reporter)
    if not same_repository:
        _record_origin(ws.reporter, source, dest, manifest)
    return Promoted(source.name, dest.name, release, dest.reference(release.digest), tags, copied)


def _record_origin(reporter: Reporter, source: Target, dest: Target, manifest) -> None:
    """Where the release came from, for `releases` (registry/promotion.py). The release is promoted by now:
    a record that cannot be written (a concurrent promote wrote one first, in an immutable repository) is
    worth a warning, not a failure."""
    try:
        if write_record(dest.registry, manifest, source.name, source.repository):
            reporter.step(f"recorded in {dest.repository} that {manifest.digest[:19]} came from '{source.name}'")
    except SlipwayError as exc:
        reporter.warn(f"the release is promoted, but where it came from was not recorded ({exc.message})")


def _release_to_promote(source: Target, dest: Target, ref: str | None, live: set[str] | None) -> Release:
    """The release in `source`'s registry that `ref` names (default: the one live in `source`)."""
    where = f"{source.repository} ('{source.name}')"
    if ref is None:
        if not live:
            raise SlipwayError(f"no release is live in '{source.name}' (no active deployment pins an image of "
                               f"{source.repository})", "name the release: TAG=<sha|tag> (--ref), with ANY=1 (--any)")
        if len(live) > 1:
            raise SlipwayError(f"'{source.name}' runs {len(live)} releases ({', '.join(d[:19] for d in sorted(live))})",
                               "name the one to promote: TAG=<sha|tag|digest> (--ref)")
        ref = next(iter(live))
    if ref.startswith("sha256:"):
        if source.registry.manifest_digest(ref) != ref:
            raise _not_in_source(source, dest, ref, where)
        release = release_at(source.registry, ref)
    else:
        try:
            release = find_release(source.registry, ref)
        except ReleaseNotFound as exc:
            raise _not_in_source(source, dest, ref, where) from exc
    if not release.revision:
        raise SlipwayError(f"{source.repository}@{release.digest[:19]} is not a release built by slipway (no "
                           "revision label)", f"promote a release listed by `{command('releases', '--env', source.name)}`")
    return release


def _not_in_source(source: Target, dest: Target, ref: str, where: str) -> SlipwayError:
    try:
        in_dest = (dest.registry.manifest_digest(ref) == ref if ref.startswith("sha256:")
                   else find_release(dest.registry, ref) is not None)
    except ReleaseNotFound:
        in_dest = False
    if in_dest:
        return SlipwayError(f"no release '{ref}' in {where}; {dest.repository} ('{dest.name}') already holds it",
                            f"nothing to promote: deploy it there ({command('rollback', '--env', dest.name, '--to', ref)})")
    return SlipwayError(f"no release '{ref}' in {where} nor in {dest.repository} ('{dest.name}')",
                        f"`{command('releases', '--env', source.name)}` lists what '{source.name}' holds")


def _check_destination(dest: Target, digest: str, tags: list[str]) -> dict[str, str | None]:
    """The destination accepts the release: its credentials may push, and no immutable tag of this commit
    points at another image there. Returns what each tag points at today."""
    dest.registry.check_access()
    held = {tag: dest.registry.manifest_digest(tag) for tag in tags}
    elsewhere = [tag for tag, found in held.items() if found not in (None, digest)]
    if elsewhere and dest.registry.tags_immutable():
        tag = elsewhere[0]
        raise SlipwayError(f"{dest.repository}:{tag} already exists with another image ({held[tag][:19]}) and the "
                           "repository's tags are immutable",
                           f"this commit reached '{dest.name}' from another build: deploy that one "
                           f"({command('deploy', '--env', dest.name)}), or promote a later commit")
    return held


def _tag(dest: Target, manifest, tags: list[str], held: dict[str, str | None], reporter: Reporter) -> None:
    """Put the manifest's exact bytes under each tag (the digest stays the same), then read them back."""
    written: list[str] = []
    try:
        for tag in tags:
            if held[tag] == manifest.digest:
                continue
            if held[tag] is not None:
                reporter.warn(f"{dest.repository}:{tag} pointed at {held[tag]}; it now points at {manifest.digest}")
            dest.registry.put_manifest(tag, manifest)
            written.append(tag)
        wrong = [tag for tag in tags if dest.registry.manifest_digest(tag) != manifest.digest]
    except SlipwayError as exc:
        left = [t for t in tags if t not in written and held[t] != manifest.digest]
        raise SlipwayError(f"tagging {dest.repository}@{manifest.digest[:19]} failed ({exc.message}); tagged: "
                           f"{', '.join(written) or 'none'}; not tagged: {', '.join(left)}",
                           "run the same command again: the copy is complete, only the tags are written") from exc
    if wrong:
        raise SlipwayError(f"after tagging, {dest.repository}:{wrong[0]} does not point at {manifest.digest}",
                           "another push or promote is racing this one: run the same command again")
    reporter.step(f"{dest.repository}@{manifest.digest} holds {', '.join(tags)}"
                  + (" (tags already in place)" if not written else ""))


# --- manifests ---------------------------------------------------------------------------------------------

async def manifests(ws: Workspace, target: Target) -> tuple[ValidatedRelease, str]:
    """Each deployment's Kubernetes Job as the worker would create it, pinned to the digest the registry
    holds for HEAD, from the repository's pool template. Reads nothing from Prefect."""
    env = target.env
    if env.work_pool.type != "kubernetes":
        raise SlipwayError(f"{CONFIG_FILE}: environments.{target.name}.work_pool.type is '{env.work_pool.type}': "
                           "its flow runs are not Kubernetes Jobs", "pick a Kubernetes environment (--env kind)")
    config = replace(ReleaseConfig.from_project(ws.project, target.name), pull=kubernetes_pull(env, target.name))
    warn_declarations(ws, config.declarations)
    head = find_head_release(ws, target)
    if head.pushed is None:
        raise SlipwayError(f"HEAD's image ({head.image}) is not in {target.repository}",
                           f"push it first: {command('push', '--env', target.name)}")
    pool = pool_state(config, ws.project, None)
    validated = await validate_release(config, pool, head.layer, head.image, head.pushed.reference, ws.reporter)
    return validated, head.pushed.reference


# --- the server follows the file (issue 16): ownership, pull credentials, history -------------------------

def owner_of(target: Target) -> Owner:
    """Whose deployments these are: the environment's image repository and name (deploy/ownership.py)."""
    return Owner(target.repository, target.name)


def with_automations(live: LiveDeployment | None, automations: dict[str, list[dict]]) -> LiveDeployment | None:
    if live is None:
        return None
    return replace(live, automations=automations.get(owner_resource(live.id), []))


async def refuse_takeover(api: PrefectApi, target: Target, validated: ValidatedRelease) -> None:
    """A deployment of this release that another environment (or project) registered on the same Prefect is
    refused before anything is written (plan_release checks it again under the lease)."""
    owner = owner_of(target)
    names = [d.full_name for d in validated.deployments]
    for name, live in (await api.read_deployments(names)).items():
        if live is not None:
            check_takeover(owner, name, live.labels, target.prefect.api_url)


async def with_pull_credentials(api: PrefectApi, target: Target, config: ReleaseConfig) -> ReleaseConfig:
    """The release's configuration with the working tree's pull credentials (deploy/pull.py)."""
    return replace(config, pull=await pull_credentials(api, target.env, target.name))


def warn_declarations(ws: Workspace, declarations: Declarations) -> None:
    """One warning per prefect.yaml key slipway owns and ignores (project/declarations.py SLIPWAY_OWNED), once
    per run (`release` loads the file for its build and again for its deploy)."""
    for warning in declarations.warnings:
        if warning not in ws.warned:
            ws.warned.add(warning)
            ws.reporter.warn(warning)


async def release_history(target: Target) -> list[HistoryEntry]:
    """The environment's release history, newest first."""
    async with target.connect() as api:
        return await read_history(api, history_key(target.repository, target.name))


async def record_release(api: PrefectApi, target: Target, verb: str, release: ReleaseRef, message: str | None,
                         details: dict[str, str] | None = None, changed: bool = True,
                         live_before: ReleaseRef | None = None) -> HistoryEntry | None:
    """Record that `release` went live in the target's environment (`verb`: deploy, rollback, promote — with
    `details` such as {"promoted_from": "staging"}): one call, after the writes. The previous release is the
    history's last one (else `live_before`). Nothing is recorded when nothing `changed` and the history already
    ends with this release, so a redeploy of the live release adds no entry but a rerun after a failed record
    does."""
    key = history_key(target.repository, target.name)
    history = await read_history(api, key, limit=1)
    last = history[0] if history else None
    if not changed and last is not None and last.release.digest == release.digest:
        return None
    entry = new_entry(verb, target.name, release, last.release if last else live_before, message, details)
    await write_entry(api, key, entry)
    return entry


async def record_applied(api: PrefectApi, target: Target, verb: str, release: ReleaseRef, plan: Plan,
                         message: str | None, reporter: Reporter, details: dict[str, str] | None = None) -> None:
    """record_release after an apply. The release is live by now, so a failure to record is a warning that says
    how to record it, not a failed release."""
    try:
        entry = await record_release(api, target, verb, release, message, details, changed=plan.writes > 0,
                                     live_before=_pinned_before(plan, target, release.digest))
    except SlipwayError as exc:
        reporter.warn(f"the release is live, but recording it in the history of '{target.name}' failed "
                      f"({exc.message}); run the same command again to record it")
        return
    if entry is not None:
        reporter.step(f"recorded in the history of '{target.name}': {entry.describe()}")


def _pinned_before(plan: Plan, target: Target, new_digest: str) -> ReleaseRef | None:
    """The release most of the plan's live deployments pinned before it was applied (a history's first entry)."""
    pinned = Counter((row.live.image.partition("@")[2], row.live.version) for row in plan.rows
                     if row.live is not None and row.live.image.startswith(target.repository + "@")
                     and not row.live.paused)
    ranked = [key for key, _ in pinned.most_common() if key[0] != new_digest]
    if not ranked:
        return None
    digest, version = ranked[0]
    return ReleaseRef(digest, (version or "").removesuffix("-dirty") or None, None, [])


# --- doctor ------------------------------------------------------------------------------------------------

def doctor(root, env_name: str, reporter: Reporter) -> list[Finding]:
    """Every check a release makes that needs neither a registry nor Prefect, each finding one line, in the
    order a release meets them: slipway.yaml (and the slipway version it needs), deployments.yaml, secrets,
    the files Git must hold, the entry points imported in the image (content + code, as `build` probes
    them), the dbt projects parsed there, job variables and parameters against the pool's template.

    Writes nothing to the repository, a registry or Prefect. The image is the local engine's content image
    for these inputs, built (as `image` would) only when the engine lacks it; the candidate image the probe
    runs in is removed after it."""
    project, findings = check_project(root)
    if project is None:
        return findings
    try:
        project.environment(env_name)
        declarations = load_declarations(project)
    except SlipwayError as exc:
        return [*findings, Finding.of("config", exc)]
    findings += [Finding("warning", "deployments", warning) for warning in declarations.warnings]
    try:
        refuse_project_secrets(project, declarations)
    except SlipwayError as exc:
        findings.append(Finding.of("secrets", exc))
    try:
        facts = read_git_facts(project.root)
    except SlipwayError as exc:
        return [*findings, Finding.of("git", exc)]
    if facts.dirty:
        findings.append(Finding("warning", "git", f"{facts.root} has uncommitted or untracked changes: checked as "
                                "they are, but a release is made from a commit", "commit them before releasing"))
    reporter.step("checking that Git holds every file the release needs")
    try:
        needed = {**release_inputs(project, content_files(project)), **entry_point_files(declarations)}
    except (OSError, ValueError) as exc:  # the content Dockerfile or context is missing: the build says so
        needed = entry_point_files(declarations)
        reporter.detail(f"build context not listed: {exc}")
    hidden = ignored(project.root, needed)
    findings += [Finding.of("git", exc) for exc in hidden.values()]
    # An entry point Git ignores is not in the image's code layers either: said once, by the Git check.
    skip = {i for i, decl in enumerate(declarations.deployments) if decl.entrypoint.rpartition(":")[0] in hidden}
    results = doctor_image(project, env_name, facts, declarations, reporter, findings, skip)
    reporter.step(f"checking {len(declarations.deployments)} deployment(s) against work pool "
                  f"'{project.environment(env_name).work_pool.name}'")
    reference = f"{project.environment(env_name).image_repository()}@{PLACEHOLDER_DIGEST}"
    findings += deployment_findings(project, env_name, declarations, results, reference)
    return list({finding.line(): finding for finding in findings}.values())  # one line said once


def doctor_image(project: Project, env_name: str, facts: GitFacts, declarations: Declarations,
                 reporter: Reporter, findings: list[Finding], skip: set[int]) -> list[dict] | None:
    """The probe's results (None when the image could not be made), and the dbt projects parsed in the same
    image; what they find goes to `findings`, except import errors of the declarations in `skip`."""
    try:
        engine = docker_client()
        content = build_content(engine, project, facts, reporter)
        probe = start_code_probe(engine, project, content, code_layers(project, facts))
    except SlipwayError as exc:
        findings.append(Finding.of("image", exc))
        return None
    try:
        reporter.step(f"importing {len(declarations.deployments)} entry point(s) in the image")
        results = [{} if i in skip else result
                   for i, result in enumerate(probe.running.ask(probe_requests(declarations)))]
        findings += [Finding.of("imports", exc) for exc in import_errors(declarations, results, content.tag)]
        for project_dir in dbt_projects(project.root):
            reporter.step(f"parsing the dbt project in {project_dir} in the image")
            findings += dbt_findings(engine, probe.candidate, project, env_name, project_dir)
    except SlipwayError as exc:
        findings.append(Finding.of("imports", exc))
        return None
    finally:
        probe.discard()
    return results


# --- init --------------------------------------------------------------------------------------------------

@dataclass
class Initialised:
    """What `init` did: the files written, those already there (kept: different, never overwritten), and
    what it tells the team (packages moved into the lock)."""

    placement: Placement
    notes: list[str]
    already: str | None = None  # why nothing was written: the repository is set up already


def init_repository(root, ask: Ask, reporter: Reporter, name: str | None = None, dbt: str | None = None,
                    install_from: str | None = None) -> Initialised:
    """slipway's files for an existing repository: what it has is read (discover), the template answered
    from it, rendered into a scratch folder with the runtime lock resolved there, and only then the files
    the repository lacks are written. Nothing is overwritten; run again, nothing changes."""
    if (root / CONFIG_FILE).is_file():  # written last: without it, an earlier init did not finish
        written_by_init = (root / ANSWERS_FILE).is_file()
        return Initialised(Placement(), [], already=(
            f"{ANSWERS_FILE} exists: slipway init set this repository up already; "
            f"`{command('init', '--upgrade')}` brings its files to this slipway's template"
            if written_by_init else f"{CONFIG_FILE} exists: this repository is set up already (not by slipway "
            "init, so there is nothing to upgrade); nothing written"))
    reporter.step(f"reading {root}: flows, deployments, dbt projects, packages, dependency files")
    found = discover(root)
    decided = answer(found, ask, name=name, dbt=dbt, install_from=install_from)
    with with_scratch() as scratch:
        out = Path(scratch) / "render"
        render(decided.values, out, latest_version())
        placement = compare(root, out)
        if not (root / RUNTIME_LOCK).exists():
            reporter.step(f"resolving the runtime lock {RUNTIME_LOCK} (uv pip compile --generate-hashes)")
            _lock_in(root, out, found.dependency_files)
            placement.written.append(RUNTIME_LOCK)
        # slipway.yaml last, the answers just before it: a run killed while writing leaves no slipway.yaml,
        # and the next run finishes the job (what is there already is `unchanged`).
        placement.written.sort(key=lambda path: (path == CONFIG_FILE, path == ANSWERS_FILE))
        place(root, out, placement.written)
    return Initialised(placement, decided.notes)


def _lock_in(root, out, dependency_files: list[str]) -> None:
    """The lock resolved in `out` (the render) from the runtime.in the repository will have (the team's own
    when it has one) and the dependency files that includes."""
    for relative in [*dependency_files, *([LOCK_INPUT] if (root / LOCK_INPUT).is_file() else [])]:
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, out / relative)
    compile_lock(out, out / RUNTIME_LOCK)


def relock(root, reporter: Reporter) -> None:
    """`init --lock`: the runtime lock resolved again from requirements/runtime.in (after an edit there or in
    a dependency file it includes), replaced only once resolved."""
    if not (root / LOCK_INPUT).is_file():
        raise SlipwayError(f"{LOCK_INPUT} not found in {root}", f"run `{command('init')}` first")
    reporter.step(f"resolving the runtime lock {RUNTIME_LOCK} from {LOCK_INPUT}")
    with with_scratch() as scratch:
        resolved = Path(scratch) / "runtime.txt"
        compile_lock(root, resolved)
        shutil.copy2(resolved, root / RUNTIME_LOCK)


def upgrade_repository(root, reporter: Reporter) -> Upgrade:
    """`init --upgrade`: the files init wrote, brought to this slipway's template by copier's three-way merge
    (the team's edits kept, conflicts marked), then the lock resolved again when runtime.in changed."""
    reporter.step("bringing slipway init's files forward (copier update: a three-way merge)")
    done = upgrade(root, moved_answers())
    if LOCK_INPUT in done.changed and not done.conflicts:
        relock(root, reporter)
    return done
