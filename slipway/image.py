"""Build HEAD's release image: `<name>:<sha>`, `<name>:<short sha>`, `<name>:<git tag>`, with OCI labels.

The labels describe the commit, not the build: `created` is the commit time, so rebuilding a commit yields
the same labels. A dirty tree is refused unless --allow-dirty, and then every tag says `-dirty`.
"""
from __future__ import annotations

import datetime
import io
import tarfile

import docker

from slipway import release_config
from slipway.base import ensure_base
from slipway.config import Project
from slipway.deployments import load_declarations
from slipway.engine import BuildFailed, stream_build
from slipway.errors import SlipwayError
from slipway.git import GitFacts
from slipway.output import Reporter
from slipway.release_config import declared_parameter_sets
from slipway.validate import probe_requests, run_probe

REVISION_LABEL = "org.opencontainers.image.revision"

# The release layer is slipway's, not the team's: it goes on top of whatever images/flow/Dockerfile builds.
# COPY and no RUN: a few KB, nothing executed, and the same files give the same (cached) layer.
RELEASE_LAYER_DOCKERFILE = f"""\
FROM {{content}}
COPY .slipway/ {release_config.DIR_IN_IMAGE}/
"""


def image_labels(facts: GitFacts, config_hash: str) -> dict[str, str]:
    return {
        REVISION_LABEL: facts.sha,
        "org.opencontainers.image.source": facts.source,
        "org.opencontainers.image.version": facts.version,
        "org.opencontainers.image.created": facts.commit_time,
        release_config.HASH_LABEL: config_hash,
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


def build_image(client: docker.DockerClient, project: Project, facts: GitFacts, reporter: Reporter,
                allow_dirty: bool = False, nocache: bool = False) -> dict:
    """images/flow/Dockerfile (the content), the entry-point probe in it, then the release layer."""
    refuse_dirty(facts, allow_dirty)
    declarations = load_declarations(project)  # a broken deployments.yaml fails before any build work
    files = release_config.collect(project)
    base = ensure_base(client, project, reporter)
    name = project.config.image.name
    reporter.step(f"building {name}:{facts.version} ({facts.sha})")
    stream = client.api.build(
        path=str(project.resolve(project.config.image.context)),
        dockerfile=project.config.image.dockerfile,
        buildargs={"BASE_IMAGE": base},
        rm=True,
        forcerm=True,
        pull=False,
        nocache=nocache,  # benchmarks measure a cold build with it
        decode=True,
    )
    try:
        content_id = stream_build(stream, reporter.detail)
    except BuildFailed as exc:
        hint = ("fix the dbt project (`dbt parse` in dbt/ shows the full error)" if "dbt" in exc.step
                else "fix the step above and rebuild")
        raise SlipwayError(f"{project.config.image.dockerfile}: image build failed at {exc}", hint) from None
    image_id = add_release_layer(client, content_id, declarations, files, facts, reporter, name)
    reporter.step(f"built {name}:{facts.image_tags()[0]} ({image_id[:19]})")
    return {"image": f"{name}:{facts.image_tags()[0]}", "tags": facts.image_tags(), "revision": facts.sha,
            "image_id": image_id}


def add_release_layer(client: docker.DockerClient, content: str, declarations, files: dict[str, str],
                      facts: GitFacts, reporter: Reporter, name: str) -> str:
    """Probe the entry points in `content` (one container, no network), then put the release layer on top
    with the commit's labels and tag it `name:<each tag>`. Returns the image ID.

    A flow that does not import is recorded, not fatal here: deploy and plan report it against the field of
    deployments.yaml that names it (and `make image` warns now)."""
    reporter.step(f"importing {len(declarations.deployments)} entry point(s) in the image")
    probe = run_probe(client, content, probe_requests(declarations, declared_parameter_sets(declarations)))
    for request, result in zip(declarations.deployments, probe):
        if "error" in result:
            reporter.warn(f"{request.entrypoint} does not import in the image: {result['error']}")
    context = io.BytesIO()
    mtime = _epoch(facts.commit_time)  # file times from the commit, not the clock: rebuilds reuse the layer
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = RELEASE_LAYER_DOCKERFILE.format(content=content).encode()
        layer = {f".slipway/{n}": data for n, data in release_config.layer_files(files, probe).items()}
        for path, data in {"Dockerfile": dockerfile, **layer}.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tags = facts.image_tags()
    stream = client.api.build(fileobj=context, custom_context=True, labels=image_labels(
        facts, release_config.encode(files)[1]), tag=f"{name}:{tags[0]}", rm=True, forcerm=True, pull=False,
        decode=True)
    try:
        image_id = stream_build(stream, reporter.detail)
    except BuildFailed as exc:
        raise SlipwayError(f"the release layer did not build: {exc}", "check the Docker engine's disk space") from None
    image = client.images.get(image_id)
    for tag in tags[1:]:
        image.tag(name, tag)
    return image_id


def _epoch(iso_time: str) -> int:
    try:
        return int(datetime.datetime.fromisoformat(iso_time).timestamp())
    except ValueError:
        return 0


def find_local_image(client: docker.DockerClient, project: Project, facts: GitFacts):
    """HEAD's image in the local engine, checked by its revision label; else tell the user to build it."""
    ref = head_reference(project, facts)
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise SlipwayError(f"no image {ref} for HEAD ({facts.short_sha}) in the local engine",
                           "run `make image` first") from None
    if (image.labels or {}).get(REVISION_LABEL) != facts.sha:
        raise SlipwayError(f"image {ref} is not labelled with revision {facts.sha}",
                           "rebuild it with `make image`")
    return image
