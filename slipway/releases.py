"""Release history and rollback.

The registry is the history: every release is an image whose tags name its commit and whose config blob
carries its labels (revision, commit time, the release configuration's hash). Prefect says which release is live: the
digest its deployments pin. Nothing here pulls an image layer: listing reads tags, manifests and config
blobs; a rollback also reads the image's last layer, a few KB holding the release's configuration and what
the build-time probe found (slipway/release_config.py).
"""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import anyio

from slipway import release_config
from slipway.config import EnvironmentConfig
from slipway.errors import SlipwayError
from slipway.git import DIRTY_SUFFIX, GitFacts, docker_tag_for
from slipway.image import REVISION_LABEL

_SHA = re.compile(r"[0-9a-f]{40}")
_HEX = re.compile(r"[0-9a-f]{4,40}")
REGISTRY_READERS = 8  # concurrent manifest/config reads when listing


@dataclass
class Release:
    digest: str
    tags: list[str] = field(default_factory=list)
    revision: str | None = None
    created: str | None = None  # the commit time (org.opencontainers.image.created)
    version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    live: bool = False

    def public(self) -> dict[str, Any]:
        return {"revision": self.revision, "tags": sorted(self.tags, key=_tag_order), "digest": self.digest,
                "created": self.created, "live": self.live}


def _tag_order(tag: str) -> tuple[int, str]:
    # Human tags first, then the short SHA, then the full SHA.
    return (2 if _SHA.fullmatch(tag.removesuffix(DIRTY_SUFFIX)) else 1 if len(tag) <= 17 and
            _HEX.fullmatch(tag.removesuffix(DIRTY_SUFFIX)) else 0, tag)


# --- reading the registry ----------------------------------------------------------------------------------

def image_labels(registry, digest: str) -> dict[str, str]:
    """An image's labels from its config blob: one manifest and one small blob, no layer."""
    manifest = registry.get_manifest(digest)
    config_digest = (manifest.get("config") or {}).get("digest")
    if not config_digest:
        raise SlipwayError(f"{registry.host}/{registry.repository}@{digest} is not a single-platform image",
                           "slipway releases single-platform images built by `make image`")
    config = json.loads(registry.get_blob(config_digest))
    return (config.get("config") or {}).get("Labels") or {}


def list_releases(registry) -> list[Release]:
    """Every release in the repository, newest commit first. Tags that point at one image are grouped."""
    tags = registry.list_tags()
    with ThreadPoolExecutor(REGISTRY_READERS) as pool:
        digests = list(pool.map(registry.manifest_digest, tags))
    releases: dict[str, Release] = {}
    for tag, digest in zip(tags, digests):
        if digest:
            releases.setdefault(digest, Release(digest)).tags.append(tag)
    with ThreadPoolExecutor(REGISTRY_READERS) as pool:
        all_labels = list(pool.map(lambda r: image_labels(registry, r.digest), releases.values()))
    for release, labels in zip(releases.values(), all_labels):
        release.labels = labels
        release.revision = labels.get(REVISION_LABEL)
        release.created = labels.get("org.opencontainers.image.created")
        release.version = labels.get("org.opencontainers.image.version")
    return sorted(releases.values(), key=lambda r: (r.created or "", r.revision or ""), reverse=True)


def resolve_tag(tags: list[str], ref: str, where: str) -> str:
    """The registry tag a user's reference means: a tag, a full SHA, or an unambiguous SHA prefix."""
    ref = ref.strip()
    if ref in tags:
        return ref
    if docker_tag_for(ref) in tags:  # a Git tag such as release/1.2 is tagged release-1.2
        return docker_tag_for(ref)
    if _HEX.fullmatch(ref):
        matches = sorted(t for t in tags if _SHA.fullmatch(t) and t.startswith(ref))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(m[:12] for m in matches[:5])
            raise SlipwayError(f"'{ref}' matches {len(matches)} releases in {where} ({shown})",
                               "give more characters of the SHA, or a tag")
    raise SlipwayError(f"no release '{ref}' in {where}",
                       "`make releases ENV=<env>` lists the releases (tags, SHAs) it holds")


def release_bundle(registry, digest: str, labels: dict[str, str]) -> tuple[dict[str, str], list[dict]]:
    """(configuration files, build-time probe results) of a release: its last layer, one small blob."""
    where = f"{registry.host}/{registry.repository}@{digest}"
    layers = registry.get_manifest(digest).get("layers") or []
    if not layers or layers[-1].get("size", 0) > release_config.MAX_LAYER_BYTES:
        raise SlipwayError(f"{where} has no release layer (its last layer is not slipway's)",
                           "roll back to a release built by this version of slipway, or deploy it from its commit")
    return release_config.parse_layer(registry.get_blob(layers[-1]["digest"]), labels, where)


def facts_of(release: Release, root) -> GitFacts:
    """The Git facts a release was built from, as its labels record them (the commit need not be local)."""
    version = release.version or ""
    tag = version if version and version != (release.revision or "")[:12] else None
    return GitFacts(root=root, sha=release.revision or "", tag=tag, dirty=False,
                    commit_time=release.created or "", source=release.labels.get("org.opencontainers.image.source", ""))


# --- what Prefect runs -------------------------------------------------------------------------------------

async def deployments_in_environment(env: EnvironmentConfig, env_name: str) -> list[dict[str, Any]]:
    """This repository's deployments in the environment's work pool: name, id, pinned image, paused."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId, WorkPoolFilter, WorkPoolFilterName

    from slipway.prefect_api import prefect_client

    repository = env.image_repository()
    async with prefect_client(env, env_name) as client:
        found = await client.read_deployments(
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[env.work_pool.name])))
        flows = await client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=[d.flow_id for d in found])))
    flow_names = {f.id: f.name for f in flows}
    out = []
    for dep in found:
        image = (dep.job_variables or {}).get("image") or ""
        if not image.startswith(repository + "@"):
            continue  # another project's deployment in a shared pool: not ours to judge or pause
        out.append({"name": f"{flow_names.get(dep.flow_id, '?')}/{dep.name}", "id": str(dep.id),
                    "image": image, "digest": image.partition("@")[2], "paused": bool(dep.paused)})
    return out


def live_digests(env: EnvironmentConfig, env_name: str) -> set[str]:
    """The digests active (not paused) deployments pin: the live release, or several mid-migration."""
    return {d["digest"] for d in anyio.run(deployments_in_environment, env, env_name) if not d["paused"]}


async def pause_deployments(env: EnvironmentConfig, env_name: str, ids: list[str]) -> None:
    from slipway.prefect_api import prefect_client, write

    async with prefect_client(env, env_name) as client:
        for deployment_id in ids:
            await write(client.pause_deployment, deployment_id)


# --- rollback ----------------------------------------------------------------------------------------------

def rollback(project, env_name: str, ref: str, reporter, registry=None) -> dict:
    """Re-register release `ref` (tag, SHA or SHA prefix) in `env_name`: its image digest and its own
    configuration. No build, no push, no layer pulled. This repository's deployments that the release does
    not have are paused, not deleted."""
    from slipway.registration import apply_validated, inputs_from_files, read_environment, validate_release
    from slipway.registry import registry_client

    env = project.environment(env_name)
    registry = registry or registry_client(env, env_name)
    where = env.image_repository()
    reporter.step(f"looking up '{ref}' in {where}")
    tag = resolve_tag(registry.list_tags(), ref, where)
    if tag.endswith(DIRTY_SUFFIX) and env_name != "local":
        raise SlipwayError(f"{where}:{tag} was built from uncommitted changes", "roll back to a committed release")
    digest = registry.manifest_digest(tag)
    if digest is None:  # deleted between the listing and now
        raise SlipwayError(f"no release '{ref}' in {where}", "`make releases` lists the releases it holds")
    release = Release(digest, [tag])
    release.labels = image_labels(registry, digest)
    release.revision = release.labels.get(REVISION_LABEL)
    release.created = release.labels.get("org.opencontainers.image.created")
    release.version = release.labels.get("org.opencontainers.image.version")
    if not release.revision:
        raise SlipwayError(f"{where}:{tag} has no {REVISION_LABEL} label", "roll back to a release built by slipway")
    files, probe = release_bundle(registry, digest, release.labels)
    reporter.step(f"release {release.version} ({release.revision[:12]}, {digest[:19]}): configuration read "
                  f"from the registry")

    inputs = inputs_from_files(project, env_name, files)
    reference = f"{where}@{digest}"
    pool = anyio.run(read_environment, inputs)
    validated = validate_release(inputs, pool, reference, reference, reporter, probe_results=probe)
    current = anyio.run(deployments_in_environment, env, env_name)
    keep = {d.full_name for d in validated.deployments}
    to_pause = [d for d in current if d["name"] not in keep and not d["paused"]]

    result = apply_validated(validated, reference, facts_of(release, project.root), reporter)
    if to_pause:
        anyio.run(pause_deployments, env, env_name, [d["id"] for d in to_pause])
        for d in to_pause:
            reporter.step(f"paused {d['name']}: release {release.version} does not have it")
    result["paused"] = sorted(d["name"] for d in to_pause)
    result["revision"] = release.revision
    return result


def refuse_downgrade(project, env_name: str, facts: GitFacts, head_digest: str | None, registry=None) -> None:
    """Deploy must not replace a live release with one of its ancestors (a stale CI job finishing late)."""
    from slipway.git import is_ancestor
    from slipway.registry import registry_client

    env = project.environment(env_name)
    live = live_digests(env, env_name) - ({head_digest} if head_digest else set())
    if not live:
        return
    registry = registry or registry_client(env, env_name)
    for digest in live:
        revision = image_labels(registry, digest).get(REVISION_LABEL)
        if revision and revision != facts.sha and is_ancestor(project.root, facts.sha, revision):
            raise SlipwayError(
                f"'{env_name}' runs {revision[:12]}, a newer commit than HEAD {facts.short_sha}: deploying HEAD "
                f"would downgrade it",
                f"to roll back on purpose use `make rollback ENV={env_name} TAG={facts.short_sha}` "
                f"or `build.py deploy --env {env_name} --rollback`")
