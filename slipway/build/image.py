"""Build HEAD's release image: `<name>:<sha>`, `<name>:<short sha>`, `<name>:<git tag>`, with OCI labels.

Three steps, each a function the pipeline calls in order (slipway/pipeline.py):
1. `build_content`: the team's images/flow/Dockerfile on the runtime base (the engine's build cache makes an
   unchanged layer free);
2. `probe_content`: every entry point imported inside that image (build/probe.py);
3. `add_release_layer`: slipway's own small layer on top (build/release_layer.py) with the commit's labels.

The labels describe the commit, not the build: `created` is the commit time, so rebuilding a commit yields
the same labels. A dirty tree is refused unless --allow-dirty, and then every tag says `-dirty`.
"""
from __future__ import annotations

import datetime
import io
import tarfile
from dataclasses import dataclass

import docker

from slipway.build import release_layer
from slipway.build.base import ensure_base
from slipway.build.engine import BuildFailed, stream_build
from slipway.build.probe import probe_requests, run_probe
from slipway.build.release_layer import ReleaseLayer
from slipway.errors import SlipwayError
from slipway.output import Reporter
from slipway.project.config import Project
from slipway.project.declarations import Declarations
from slipway.project.git import GitFacts

REVISION_LABEL = "org.opencontainers.image.revision"
CREATED_LABEL = "org.opencontainers.image.created"
VERSION_LABEL = "org.opencontainers.image.version"
SOURCE_LABEL = "org.opencontainers.image.source"

# The release layer is slipway's, not the team's: it goes on top of whatever images/flow/Dockerfile builds.
# COPY and no RUN: a few KB, nothing executed, and the same files give the same (cached) layer.
RELEASE_LAYER_DOCKERFILE = """\
FROM {content}
COPY .slipway/ {directory}/
"""


@dataclass(frozen=True)
class BuiltImage:
    """HEAD's image in the local engine: its tags, ID and what its release layer holds."""

    name: str  # the local repository (slipway.yaml image.name)
    tags: list[str]  # full SHA, short SHA, Git tag (each suffixed -dirty for a dirty tree)
    revision: str
    image_id: str
    layer: ReleaseLayer

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tags[0]}"


def commit_labels(facts: GitFacts, config_hash: str) -> dict[str, str]:
    """The labels an image gets from its commit (never from the build): see the module docstring."""
    return {
        REVISION_LABEL: facts.sha,
        SOURCE_LABEL: facts.source,
        VERSION_LABEL: facts.version,
        CREATED_LABEL: facts.commit_time,
        release_layer.HASH_LABEL: config_hash,
    }


def refuse_dirty(facts: GitFacts, allow_dirty: bool) -> None:
    if facts.dirty and not allow_dirty:
        raise SlipwayError(
            f"the working tree of {facts.root} has uncommitted or untracked changes",
            "commit or stash them; or pass --allow-dirty (make image ALLOW_DIRTY=1) for a local-only "
            "image tagged -dirty",
        )


def head_reference(project: Project, facts: GitFacts) -> str:
    """The local reference of HEAD's image: `<name>:<40-char sha>[-dirty]`."""
    return f"{project.config.image.name}:{facts.image_tags()[0]}"


def build_content(engine: docker.DockerClient, project: Project, facts: GitFacts, reporter: Reporter,
                  nocache: bool = False) -> str:
    """images/flow/Dockerfile on the runtime base (built first when its inputs changed); returns the image ID."""
    base = ensure_base(engine, project, reporter)
    config = project.config.image
    reporter.step(f"building {config.name}:{facts.version} ({facts.sha})")
    with reporter.group(f"docker build {config.dockerfile}"):
        stream = engine.api.build(
            path=str(project.resolve(config.context)),
            dockerfile=config.dockerfile,
            buildargs={"BASE_IMAGE": base},
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,  # benchmarks measure a cold build with it
            decode=True,
        )
        try:
            return stream_build(stream, reporter.detail)
        except BuildFailed as exc:
            raise SlipwayError(f"{config.dockerfile}: image build failed at {exc}",
                               "fix that step and rebuild (`python build.py image --verbose` shows the whole "
                               "build output)") from exc


def probe_content(engine: docker.DockerClient, project: Project, content: str, declarations: Declarations,
                  reporter: Reporter) -> list[dict]:
    """Import every entry point inside the content image (one container, no network).

    A flow that does not import is recorded, not fatal here: deploy and plan report it against the field of
    deployments.yaml that names it (and the build warns now)."""
    reporter.step(f"importing {len(declarations.deployments)} entry point(s) in the image")
    probe = run_probe(engine, content, project.config.image.app_dir, probe_requests(declarations))
    for request, result in zip(declarations.deployments, probe):
        if "error" in result:
            reporter.warn(f"{request.entrypoint} does not import in the image: {result['error']}")
    return probe


def add_release_layer(engine: docker.DockerClient, project: Project, content: str, layer: ReleaseLayer,
                      facts: GitFacts, reporter: Reporter) -> BuiltImage:
    """Put the release layer on `content` with the commit's labels and tag it `<name>:<each tag>`."""
    name = project.config.image.name
    context = io.BytesIO()
    mtime = _epoch(facts.commit_time)  # file times from the commit, not the clock: rebuilds reuse the layer
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = RELEASE_LAYER_DOCKERFILE.format(
            content=content, directory=release_layer.dir_in_image(project.config.image.app_dir)).encode()
        files = {f"{release_layer.DIR_NAME}/{n}": data for n, data in release_layer.layer_files(layer).items()}
        for path, data in {"Dockerfile": dockerfile, **files}.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tags = facts.image_tags()
    stream = engine.api.build(fileobj=context, custom_context=True, labels=commit_labels(facts, layer.config_hash),
                              tag=f"{name}:{tags[0]}", rm=True, forcerm=True, pull=False, decode=True)
    try:
        image_id = stream_build(stream, reporter.detail)
    except BuildFailed as exc:
        raise SlipwayError(f"the release layer did not build: {exc}", "check the Docker engine's disk space") from exc
    image = engine.images.get(image_id)
    for tag in tags[1:]:
        image.tag(name, tag)
    reporter.step(f"built {name}:{tags[0]} ({image_id[:19]})")
    return BuiltImage(name, tags, facts.sha, image_id, layer)


def _epoch(iso_time: str) -> int:
    try:
        return int(datetime.datetime.fromisoformat(iso_time).timestamp())
    except ValueError:
        return 0


def find_local_image(engine: docker.DockerClient, project: Project, facts: GitFacts):
    """HEAD's image in the local engine, checked by its revision label; None when the engine lacks it."""
    ref = head_reference(project, facts)
    try:
        image = engine.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    if (image.labels or {}).get(REVISION_LABEL) != facts.sha:
        raise SlipwayError(f"image {ref} is not labelled with revision {facts.sha}",
                           "rebuild it with `make image`")
    return image
