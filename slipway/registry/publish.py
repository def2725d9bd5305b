"""Push an image slipway assembled (image/assemble.py) over the registry API, without the Docker engine: the
content image's layers mounted from the build cache, slipway's own layers and the config uploaded only when
the repository lacks them, then one manifest written under each tag.

Why not `docker push`: the engine re-sends a config and a manifest per tag, and an image it pushes has a
digest only that push knows. Here the manifest is written from the content image's manifest in the build
cache plus slipway's reproducible layers (image/layers.py), so its digest follows from the commit: the same
commit gives the same digest on any machine whose build cache holds the same content image, and a code-only
release uploads the changed layers, the config and the manifest — nothing else.

Order of writes: blobs first, each tag's manifest last. A push that stops halfway (a registry dies, a process
is killed) leaves blobs no tag names yet — harmless, and skipped by the next push — never a tag that points
at an incomplete image.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from slipway.errors import SlipwayError
from slipway.image.assemble import DOCKER_MANIFEST, AssembledImage, registry_manifest, sha256
from slipway.output import Reporter
from slipway.registry.client import RawManifest, RegistryClient
from slipway.registry.copy import CopyResult, copy_blob, human_size
from slipway.registry.push import PushedImage, plan_push, refuse_overwrite


class NotPublishable(Exception):
    """The build cache's content image is not the one this image was assembled on: the caller pushes through
    the engine instead (the message says why)."""


@dataclass(frozen=True)
class ContentInCache:
    """The content image as the build cache holds it: the layer descriptors its manifest lists."""

    tag: str
    layers: list[dict]


def content_in_cache(cache: RegistryClient, tag: str, image_id: str) -> ContentInCache:
    """The cache's manifest for `tag`, checked to be the engine's content image (its config digest is the
    image ID). Another machine may have cached another build of the same inputs first: then its layers are
    not this image's and NotPublishable says so."""
    manifest = cache.manifest_raw(tag)
    if manifest is None:
        raise NotPublishable(f"the build cache has no {tag}")
    parsed = json.loads(manifest.body)
    if manifest.is_index or (parsed.get("config") or {}).get("digest") != image_id:
        raise NotPublishable(f"the build cache's {tag} is another build of the same inputs than the engine's")
    return ContentInCache(tag, list(parsed.get("layers") or []))


def publish_assembled(registry: RegistryClient, cache: RegistryClient, image: AssembledImage,
                      content: ContentInCache, tags: list[str], reporter: Reporter) -> PushedImage:
    """Write `image` to `registry` under `tags`; returns the digest the registry holds for all of them."""
    repository = f"{registry.host}/{registry.repository}"
    try:
        manifest_bytes = registry_manifest(image, content.layers)
    except ValueError as exc:
        raise NotPublishable(str(exc)) from exc
    manifest = RawManifest(manifest_bytes, DOCKER_MANIFEST, sha256(manifest_bytes))
    reporter.step(f"checking access to {repository} ({registry.kind})")
    registry.check_access()
    plan = plan_push({tag: registry.manifest_digest(tag) for tag in tags}, {manifest.digest}, tags)
    refuse_overwrite(registry, repository, plan)
    setup = registry.ensure_repository()  # the first write (ECR needs the repository before a push)
    if setup.get("created"):
        reporter.step(f"created repository {registry.repository} (tags immutable, scan on push)")
    if not plan.to_push:
        reporter.step(f"{repository} already holds {', '.join(tags)} for this image: nothing uploaded")
        return PushedImage(repository, manifest.digest, tags)
    for tag in plan.replaced:
        reporter.warn(f"{repository}:{tag} pointed at {plan.held[tag]}; it now points at this build")
    result = CopyResult(manifest.digest)
    for descriptor in content.layers:  # on one registry: mounted, no byte moves
        copy_blob(cache, registry, descriptor, reporter, result)
    blobs = [(layer.name, layer.digest, layer.blob) for layer in image.layers]
    blobs.append(("image config", image.config_digest, image.config))
    uploaded = 0
    for name, digest, data in blobs:
        if registry.blob_size(digest) is not None:
            continue
        registry.upload_blob(registry.start_upload(), digest, len(data), [data])
        uploaded += len(data)
        reporter.detail(f"uploaded {name} {digest[:19]} ({human_size(len(data))})")
    for tag in plan.to_push:
        written = registry.put_manifest(tag, manifest)
        if written != manifest.digest:
            raise SlipwayError(f"{repository} stored the manifest {manifest.digest} as {written} (the "
                               "registry rewrites manifests, so the digest deployments pin would not be the "
                               "image's)", "report it with the registry's name and version")
    reporter.step(f"pushed {repository}:{', '.join(plan.to_push)}: {human_size(uploaded)} uploaded, "
                  f"{result.mounted_blobs + result.present_blobs} layer(s) already in the registry")
    pushed = verify(registry, repository, manifest.digest, tags)
    reporter.step(f"{pushed.reference} holds {', '.join(tags)}")
    return pushed


def verify(registry: RegistryClient, repository: str, digest: str, tags: list[str]) -> PushedImage:
    """Every tag read back (manifest HEAD): all of them must name `digest`."""
    held = {tag: registry.manifest_digest(tag) for tag in tags}
    wrong = {tag: found for tag, found in held.items() if found != digest}
    if wrong:
        tag, found = next(iter(wrong.items()))
        raise SlipwayError(f"after the push, {repository}:{tag} is {found or 'missing'}, not {digest}",
                           "another push is racing this one for the same tag: run the same command again")
    return PushedImage(repository, digest, tags)
