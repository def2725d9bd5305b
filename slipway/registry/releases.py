"""The releases a registry holds: every image is one, its tags name its commit and its config blob carries
its labels (revision, commit time, the release configuration's hash).

Nothing here pulls an image layer: listing reads tags, manifests and config blobs; `read_release_layer`
also reads the image's last layer, a few KB holding the release's configuration and what the build-time
probe found (image/release_layer.py).
"""
from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from slipway.errors import SlipwayError
from slipway.image.build import CREATED_LABEL, REVISION_LABEL, SOURCE_LABEL, VERSION_LABEL
from slipway.image.release_layer import MAX_LAYER_BYTES, ReleaseLayer, parse_layer
from slipway.invocation import command
from slipway.project.git import DIRTY_SUFFIX, GitFacts, docker_tag_for
from slipway.registry.client import RegistryClient
from slipway.registry.promotion import Promotion, is_record_tag, read_records

_SHA = re.compile(r"[0-9a-f]{40}")
_HEX = re.compile(r"[0-9a-f]{4,40}")
REGISTRY_READERS = 8  # concurrent manifest/config reads when listing


@dataclass
class Release:
    """One release image in the registry."""

    digest: str
    tags: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    promoted_from: Promotion | None = None  # set by list_releases for a release copied here by promote

    @property
    def revision(self) -> str | None:
        return self.labels.get(REVISION_LABEL)

    @property
    def created(self) -> str | None:
        """The commit time (org.opencontainers.image.created)."""
        return self.labels.get(CREATED_LABEL)

    @property
    def version(self) -> str | None:
        return self.labels.get(VERSION_LABEL)

    @property
    def dirty(self) -> bool:
        return any(t.endswith(DIRTY_SUFFIX) for t in self.tags) or (self.version or "").endswith(DIRTY_SUFFIX)

    def sorted_tags(self) -> list[str]:
        return sorted(self.tags, key=_tag_order)

    def commit(self, root) -> GitFacts:
        """The Git facts this release was built from, as its labels record them (the commit need not be local)."""
        version = (self.version or "").removesuffix(DIRTY_SUFFIX)
        tag = version if version and version != (self.revision or "")[:12] else None
        return GitFacts(root=root, sha=self.revision or "", tag=tag, dirty=self.dirty,
                        commit_time=self.created or "", source=self.labels.get(SOURCE_LABEL))


def _tag_order(tag: str) -> tuple[int, str]:
    # Human tags first, then the short SHA, then the full SHA.
    bare = tag.removesuffix(DIRTY_SUFFIX)
    return (2 if _SHA.fullmatch(bare) else 1 if len(bare) <= 12 and _HEX.fullmatch(bare) else 0, tag)


def read_labels(registry: RegistryClient, digest: str) -> dict[str, str]:
    """An image's labels from its config blob: one manifest and one small blob, no layer."""
    manifest = registry.get_manifest(digest)
    config_digest = (manifest.get("config") or {}).get("digest")
    if not config_digest:
        raise SlipwayError(f"{registry.host}/{registry.repository}@{digest} is not a single-platform image",
                           "slipway releases single-platform images it builds itself")
    config = json.loads(registry.get_blob(config_digest))
    return (config.get("config") or {}).get("Labels") or {}


def release_at(registry: RegistryClient, digest: str, tags: list[str] | None = None) -> Release:
    return Release(digest, list(tags or []), read_labels(registry, digest))


def list_releases(registry: RegistryClient) -> list[Release]:
    """Every release in the repository, newest commit first. Tags that point at one image are grouped; a
    release promote copied here says where from (registry/promotion.py: its records are not releases)."""
    every_tag = registry.list_tags()
    records = read_records(registry, every_tag)
    tags = [tag for tag in every_tag if not is_record_tag(tag)]
    with ThreadPoolExecutor(REGISTRY_READERS) as pool:
        digests = list(pool.map(registry.manifest_digest, tags))
    by_digest: dict[str, list[str]] = {}
    for tag, digest in zip(tags, digests):
        if digest:
            by_digest.setdefault(digest, []).append(tag)
    with ThreadPoolExecutor(REGISTRY_READERS) as pool:
        releases = list(pool.map(lambda item: release_at(registry, *item), by_digest.items()))
    for release in releases:
        release.promoted_from = records.get(release.digest)
    return sorted(releases, key=lambda r: (r.created or "", r.revision or ""), reverse=True)


class ReleaseNotFound(SlipwayError):
    """No release matches a reference (as opposed to several matching it)."""


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
    raise ReleaseNotFound(f"no release '{ref}' in {where}",
                          f"`{command('releases', '--env', '<env>')}` lists the releases (tags, SHAs) it holds")


def find_release(registry: RegistryClient, ref: str) -> Release:
    """The release a reference (tag, SHA or SHA prefix) names in the registry."""
    where = f"{registry.host}/{registry.repository}"
    tag = resolve_tag([t for t in registry.list_tags() if not is_record_tag(t)], ref, where)
    digest = registry.manifest_digest(tag)
    if digest is None:  # deleted between the listing and now
        raise ReleaseNotFound(f"no release '{ref}' in {where}", f"`{command('releases', '--env', '<env>')}` lists the releases it holds")
    release = release_at(registry, digest, [tag])
    if not release.revision:
        raise SlipwayError(f"{where}:{tag} has no {REVISION_LABEL} label", "pick a release built by slipway")
    return release


def read_release_layer(registry: RegistryClient, release: Release) -> ReleaseLayer:
    """A release's configuration and build-time probe results: its last layer, one small blob."""
    where = f"{registry.host}/{registry.repository}@{release.digest}"
    layers = registry.get_manifest(release.digest).get("layers") or []
    if not layers or layers[-1].get("size", 0) > MAX_LAYER_BYTES:
        raise SlipwayError(f"{where} has no release layer (its last layer is not slipway's)",
                           "use a release built by this version of slipway, or deploy it from its commit")
    return parse_layer(registry.get_blob(layers[-1]["digest"]), release.labels, where)
