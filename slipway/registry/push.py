"""Push HEAD's image to an environment's registry through the Docker engine, and read back the digest the
registry holds for it.

Everything that can be checked is checked before the first byte is uploaded (pipeline.py runs the input
checks; `push_image` checks the credentials and which tags need a push). Credentials reach the engine as
docker-py's `auth_config` (an API header), never argv or a file. The registry-qualified local tags created
for the push (`<registry>/<repo>:<tag>`) are kept afterwards: they are cheap, show up in `docker images`,
and keep the engine's RepoDigests.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import docker
from docker.errors import APIError

from slipway.errors import SlipwayError
from slipway.invocation import command
from slipway.output import Reporter
from slipway.registry.client import RegistryClient

PROGRESS_EVERY = 3.0  # seconds between two progress lines of one layer


@dataclass(frozen=True)
class PushedImage:
    """An image the registry holds under all of its tags, by one digest."""

    repository: str  # <registry host>/<repository>
    digest: str
    tags: list[str]

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class PushPlan:
    """Which tags the registry already holds for this very image, and which need a push."""

    held: dict[str, str | None]  # tag -> the registry's digest for it (None: absent)
    to_push: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # tags that point at another image today


def plan_push(held: dict[str, str | None], known: set[str], tags: list[str]) -> PushPlan:
    """A tag is up to date when its registry digest is one the engine recorded for this image in this
    repository (`known`, its RepoDigests); then nothing is uploaded for it."""
    to_push = [tag for tag in tags if held[tag] is None or held[tag] not in known]
    return PushPlan(held, to_push, [t for t in to_push if held[t] is not None])


def push_image(engine: docker.DockerClient, registry: RegistryClient, image, tags: list[str],
               reporter: Reporter) -> PushedImage:
    """Push `image` (a docker-py Image of the local engine) under `tags`; the registry's digest, read back."""
    repository = f"{registry.host}/{registry.repository}"
    reporter.step(f"checking access to {repository} ({registry.kind})")
    registry.check_access()
    plan = plan_push({tag: registry.manifest_digest(tag) for tag in tags}, repo_digests(image, repository), tags)
    refuse_overwrite(registry, repository, plan)
    # The first write: ECR needs the repository before a push (other registries create it on push).
    setup = registry.ensure_repository()
    if setup.get("created"):
        reporter.step(f"created repository {registry.repository} (tags immutable, scan on push)")
    if plan.to_push:
        for tag in plan.replaced:
            reporter.warn(f"{repository}:{tag} pointed at {plan.held[tag]}; it now points at this build")
        with reporter.group(f"docker push {repository}"):
            upload(engine, image, repository, plan.to_push, registry.auth_config(), reporter)
    else:
        reporter.step(f"{repository} already holds {', '.join(tags)} for this image: nothing uploaded")
    digest = verify_digest(image, registry, repository, tags)
    reporter.step(f"{repository}@{digest} holds {', '.join(tags)}")
    return PushedImage(repository, digest, tags)


def repo_digests(image, repository: str) -> set[str]:
    """The digests the engine knows `image` by in `repository` (from pushes or pulls), `sha256:...`."""
    image.reload()
    prefix = repository + "@"
    return {ref[len(prefix):] for ref in image.attrs.get("RepoDigests") or [] if ref.startswith(prefix)}


def refuse_overwrite(registry: RegistryClient, repository: str, plan: PushPlan) -> None:
    if plan.replaced and registry.tags_immutable():
        tag = plan.replaced[0]
        raise SlipwayError(
            f"{repository}:{tag} already exists with another image ({plan.held[tag]}) and the "
            "repository's tags are immutable",
            "this commit was released from a different build: deploy the pushed one "
            "(`{command('deploy')}`) instead of pushing a rebuild")


def upload(client: docker.DockerClient, image, repository: str, tags: list[str], auth_config: dict | None,
           reporter: Reporter) -> None:
    """Tag and push each tag; the first push uploads the layers, the others only add the tag."""
    existing = set(image.tags)
    added: list[str] = []
    try:
        for tag in tags:
            ref = f"{repository}:{tag}"
            if ref not in existing:
                image.tag(repository, tag)
                added.append(ref)
            reporter.step(f"pushing {ref}")
            stream = client.api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth_config)
            consume_push_stream(stream, ref, reporter)
    except BaseException:
        # A failed push leaves the engine as it was: no half-made registry tags locally.
        for ref in added:
            try:
                client.images.remove(ref, noprune=True)
            except APIError:
                pass
        raise


def consume_push_stream(stream, ref: str, reporter: Reporter) -> str | None:
    """Show the push's progress; an error line is a failure. Returns the digest the engine reports."""
    digest = None
    shown: dict[str, float] = {}  # layer -> when its upload progress was last shown
    try:
        for line in stream:
            if "error" in line or "errorDetail" in line:
                message = (line.get("errorDetail") or {}).get("message") or line.get("error") or "unknown error"
                raise SlipwayError(f"pushing {ref} failed: {message}", push_fix(message))
            if line.get("aux", {}).get("Digest"):
                digest = line["aux"]["Digest"]
            status = line.get("status")
            if status == "Pushing" and line.get("progress"):
                # Upload progress: one line per layer every few seconds, enough to see a big push move.
                layer, now = line.get("id", ""), time.monotonic()
                if now - shown.get(layer, 0.0) >= PROGRESS_EVERY:
                    shown[layer] = now
                    reporter.detail(f"{layer}: {line['progress']}")
            elif status and status not in ("Pushing", "Waiting", "Preparing"):
                reporter.detail(f"{line['id']}: {status}" if line.get("id") else status)
    except APIError as exc:
        message = str(exc.explanation or exc)
        raise SlipwayError(f"pushing {ref} failed: {message}", push_fix(message)) from exc
    return digest


def push_fix(message: str) -> str:
    lowered = message.lower()
    if "unauthorized" in lowered or "denied" in lowered or "authentication required" in lowered:
        return "check the registry credentials and that they may push to this repository"
    if "immutable" in lowered or "cannot be overwritten" in lowered:
        return "the tag exists with another image: deploy the release already pushed"
    if "connection refused" in lowered or "no such host" in lowered or "timeout" in lowered:
        return "check that the registry runs and that the Docker engine reaches it at that address"
    if "http response to https client" in lowered:
        return "add the registry to the Docker engine's insecure-registries, or serve it over TLS"
    return "see the Docker engine's log for details"


def verify_digest(image, registry: RegistryClient, repository: str, tags: list[str]) -> str:
    """The registry's digest for every tag (manifest HEAD), cross-checked with the engine's RepoDigests."""
    held = {tag: registry.manifest_digest(tag) for tag in tags}
    missing = [tag for tag, digest in held.items() if digest is None]
    if missing:
        raise SlipwayError(f"after the push, {repository} has no tag {missing[0]}",
                           "check the registry's logs; then push again")
    digests = set(held.values())
    if len(digests) != 1:
        raise SlipwayError(f"the tags of {repository} point at different images: {held}",
                           "push again; if it persists, another push is racing this one")
    digest = digests.pop()
    known = repo_digests(image, repository)
    if digest not in known:
        engine = ", ".join(sorted(known)) or "none"
        raise SlipwayError(f"{repository}:{tags[0]} is {digest} in the registry but the engine pushed {engine}",
                           f"another build was pushed under the same tag: rebuild with `{command('image')}` and push again")
    return digest
