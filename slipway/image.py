"""Build HEAD's release image: `<name>:<sha>`, `<name>:<short sha>`, `<name>:<git tag>`, with OCI labels.

The labels describe the commit, not the build: `created` is the commit time, so rebuilding a commit yields
the same labels. A dirty tree is refused unless --allow-dirty, and then every tag says `-dirty`.
"""
from __future__ import annotations

import base64

import docker

from slipway import release_config
from slipway.base import ensure_base
from slipway.config import Project
from slipway.engine import BuildFailed, stream_build
from slipway.errors import SlipwayError
from slipway.git import GitFacts
from slipway.output import Reporter

REVISION_LABEL = "org.opencontainers.image.revision"


def image_labels(facts: GitFacts, config_hash: str, config_label: str) -> dict[str, str]:
    return {
        REVISION_LABEL: facts.sha,
        "org.opencontainers.image.source": facts.source,
        "org.opencontainers.image.version": facts.version,
        "org.opencontainers.image.created": facts.commit_time,
        release_config.LABEL: config_label,
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
    refuse_dirty(facts, allow_dirty)
    config_label, config_hash = release_config.encode(release_config.collect(project))
    flow_probe = release_config.flow_probe_script(project)
    base = ensure_base(client, project, reporter)
    name = project.config.image.name
    tags = facts.image_tags()
    reporter.step(f"building {name}:{facts.version} ({facts.sha})")
    stream = client.api.build(
        path=str(project.resolve(project.config.image.context)),
        dockerfile=project.config.image.dockerfile,
        buildargs={"BASE_IMAGE": base, "SLIPWAY_RELEASE_CONFIG": config_label,
                   "SLIPWAY_FLOW_PROBE": base64.b64encode(flow_probe.encode()).decode()},
        labels=image_labels(facts, config_hash, config_label),
        tag=f"{name}:{tags[0]}",
        rm=True,
        forcerm=True,
        pull=False,
        nocache=nocache,  # benchmarks measure a cold build with it
        decode=True,
    )
    try:
        image_id = stream_build(stream, reporter.detail)
    except BuildFailed as exc:
        hint = ("fix the dbt project (`dbt parse` in dbt/ shows the full error)" if "dbt" in exc.step
                else "fix the step above and rebuild")
        raise SlipwayError(f"{project.config.image.dockerfile}: image build failed at {exc}", hint) from None
    image = client.images.get(image_id)
    for tag in tags[1:]:
        image.tag(name, tag)
    reporter.step(f"built {name}:{tags[0]} ({image_id[:19]})")
    return {"image": f"{name}:{tags[0]}", "tags": tags, "revision": facts.sha, "image_id": image_id}


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
