"""Build HEAD's release image: `<name>:<sha>`, `<name>:<short sha>`, `<name>:<git tag>`, with OCI labels.

An image is two parts, each addressed by its inputs:
1. the **content image**: what the team's Dockerfile (or slipway's own, image/content_dockerfile.py)
   builds on the runtime base (the repository's packages, the parsed dbt project: whatever a team puts
   there), built by the engine only when a hash of its inputs changes (`<name>:content-<hash>`). The inputs are content only — the base by its own inputs'
   hash (image/base.py `cache_key`), never by the name or registry it is stored under — so every command
   (`image` with or without an environment, `release`, another clone pulling from the build cache) finds
   the same content image for one commit;
2. slipway's own **layers** on top, written from the commit (image/layers.py), byte for byte the same for
   the same files (a fixed time on every entry, not the commit's): one per code path of slipway.yaml
   `image.code` (the example's: `flows` and `data`), so an unchanged path keeps its layer digest from release to
   release, then the release layer (image/release_layer.py: the commit's configuration and what the
   entry-point probe found).

The steps the pipeline calls in order: `build_content`, `code_layers`, `probe_code` (every entry point
imported inside content + code: the exact image the flows will run in; `start_code_probe` and
`CodeProbe.answer` when the probe starts before the declarations are read), `finish_image` (the release layer,
the commit's labels, the whole image loaded into the engine under HEAD's tags: `assemble_release` then
`load_release`, which a release runs beside validation). The labels and `created`
describe the commit, not the build, so the same commit gives the same image ID.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
import uuid
from dataclasses import dataclass
from typing import Any

import docker

from slipway.errors import SlipwayError
from slipway.image import content_dockerfile, release_layer
from slipway.image.assemble import AssembledImage, assemble, load_archive
from slipway.image.base import RUNTIME_LOCK, ensure_base
from slipway.image.base import cache_key as base_inputs
from slipway.image.base import cache_tag as base_cache_tag
from slipway.image.cache import BuildCache
from slipway.image.engine import BuildFailed, image_exists, stream_build
from slipway.image.layers import FileEntry, Layer, files_from_commit, files_from_tree, write_layer
from slipway.image.probe import PROBE_LABEL, PROBE_PURPOSE, RunningProbe, probe_requests, start_probe
from slipway.image.release_layer import ReleaseLayer
from slipway.invocation import command
from slipway.output import Reporter
from slipway.project.config import CONFIG_FILE, Project
from slipway.project.declarations import Declarations
from slipway.project.git import GitFacts, refuse_ignored

REVISION_LABEL = "org.opencontainers.image.revision"
CREATED_LABEL = "org.opencontainers.image.created"
VERSION_LABEL = "org.opencontainers.image.version"
SOURCE_LABEL = "org.opencontainers.image.source"
CONTENT_LABEL = "io.slipway.content.inputs"  # the hash of the content image's inputs
CANDIDATE_REPOSITORY = "slipway-probe"  # content + code loaded for the probe, one tag per run, removed after it
DOCKERIGNORE = ".dockerignore"


def content_cache_tag(inputs: str) -> str:
    """The content image's tag, locally (`<name>:<this>`) and in the build cache: its inputs' hash."""
    return f"content-{inputs[:16]}"


@dataclass(frozen=True)
class ContentImage:
    tag: str  # `<name>:content-<hash>`
    inputs: str  # the hash of its inputs
    info: dict[str, Any]  # the engine's inspection of it

    @property
    def image_id(self) -> str:
        return self.info["Id"]

    @property
    def cache_tag(self) -> str:
        return content_cache_tag(self.inputs)


@dataclass(frozen=True)
class BuiltImage:
    """HEAD's image in the local engine: its tags, ID, what its release layer holds, and how it was made."""

    name: str  # the local repository (slipway.yaml image.name)
    tags: list[str]  # full SHA, short SHA, Git tag (each suffixed -dirty for a dirty tree)
    revision: str
    image_id: str
    layer: ReleaseLayer
    content: ContentImage | None = None
    assembled: AssembledImage | None = None

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.tags[0]}"


def commit_labels(facts: GitFacts, layer: ReleaseLayer) -> dict[str, str]:
    """The labels an image gets from its commit and its release layer (never from the build): see the
    module docstring."""
    labels = {
        REVISION_LABEL: facts.sha,
        VERSION_LABEL: facts.version,
        CREATED_LABEL: facts.commit_time,
        **release_layer.labels(layer),
    }
    if facts.source:  # a URL, or no label (a local `origin` path is no address, and differs per machine)
        labels[SOURCE_LABEL] = facts.source
    return labels


def refuse_dirty(facts: GitFacts, allow_dirty: bool) -> None:
    if facts.dirty and not allow_dirty:
        raise SlipwayError(
            f"the working tree of {facts.root} has uncommitted or untracked changes",
            "commit or stash them; or pass --allow-dirty for a local-only "
            "image tagged -dirty",
        )


def head_reference(project: Project, facts: GitFacts) -> str:
    """The local reference of HEAD's image: `<name>:<40-char sha>[-dirty]`."""
    return f"{project.config.image.name}:{facts.image_tags()[0]}"


# --- 1. the content image ----------------------------------------------------------------------------------

def dockerfile_of(project: Project) -> tuple[str, bytes]:
    """The content image's Dockerfile: its name in the build context and its bytes. The team's own
    (slipway.yaml image.dockerfile), or the one slipway writes from image.dbt and image.packages."""
    config = project.config.image
    if config.dockerfile is None:
        return content_dockerfile.NAME, content_dockerfile.render(project.root, config).encode()
    path = project.resolve(config.dockerfile)
    try:
        return str(path.relative_to(project.resolve(config.context))), path.read_bytes()
    except FileNotFoundError as exc:
        raise SlipwayError(f"{config.dockerfile} (slipway.yaml image.dockerfile) not found in {project.root}",
                           "create it, or remove image.dockerfile to have slipway write the content image's "
                           "Dockerfile from image.dbt and image.packages") from exc


def dockerfile_shown(project: Project) -> str:
    """How messages name the content image's Dockerfile."""
    return project.config.image.dockerfile or "slipway's content Dockerfile (slipway.yaml image.dbt, image.packages)"


def content_files(project: Project) -> list[str]:
    """The build context of the content image, relative to it: what .dockerignore lets through (slipway's
    allowlist with slipway's Dockerfile), minus the code paths (they become slipway's layers, so a code
    change never rebuilds the content image)."""
    from docker.utils.build import exclude_paths

    config = project.config.image
    context = project.resolve(config.context)
    if config.dockerfile is None:
        patterns = content_dockerfile.context_patterns(project.root, config)
    else:
        ignore = context / DOCKERIGNORE
        patterns = [p.strip() for p in (ignore.read_text().splitlines() if ignore.is_file() else [])
                    if p.strip() and not p.strip().startswith("#")]
    patterns += [f"{path.strip('/')}" for path in config.code] + [f"{path.strip('/')}/**" for path in config.code]
    dockerfile = dockerfile_of(project)[0]
    found = exclude_paths(str(context), patterns, dockerfile=dockerfile)
    return sorted(p for p in found if (context / p).is_file())


def release_inputs(project: Project, files: list[str]) -> dict[str, str]:
    """The files read from the working tree to build the release, each with what it is: the content image's
    Dockerfile and build context (`files`, content_files), the base's Dockerfile and lock, the two
    configuration files."""
    context = project.resolve(project.config.image.context)
    needed = {str((context / name).relative_to(project.root)): "in the content image's build context"
              for name in files if (context / name).is_relative_to(project.root)}
    if project.config.image.dockerfile is not None:
        needed[project.config.image.dockerfile] = "the content image's Dockerfile"
    needed.update({project.config.base.dockerfile: "the base image's Dockerfile",
                   RUNTIME_LOCK: "the runtime lock", CONFIG_FILE: "slipway's configuration",
                   project.config.deployments: "the deployments"})
    return needed


def entry_point_files(declarations: Declarations) -> dict[str, str]:
    """Every entry point's file, with the deployment it is the entry point of."""
    return {decl.entrypoint.rpartition(":")[0]: f"the entry point of '{decl.name}'"
            for decl in declarations.deployments}


def refuse_ignored_inputs(project: Project, files: list[str]) -> None:
    """The release's inputs (release_inputs) must be in Git: an ignored one (GitHub's Python template ignores
    build/, lib/, env/, ...) would make another clone's image differ."""
    refuse_ignored(project.root, release_inputs(project, files))


def refuse_ignored_entry_points(project: Project, declarations: Declarations) -> None:
    """Every entry point's file must be in Git: code layers are written from the commit, so an ignored flow
    file would be missing from the image (the probe would only say it cannot import it)."""
    refuse_ignored(project.root, entry_point_files(declarations))


def content_inputs(project: Project, files: list[str]) -> str:
    """The hash that addresses the content image: its Dockerfile, the context files (names, modes and
    bytes, not times), the base by its own inputs' hash (Dockerfile.base, the runtime lock, BASE_IMAGE:
    what image/base.py tags it by in the build cache) and the app directory. Never a registry, a repository
    or a local tag: built without an environment, with one, or pulled from another's cache, one commit's
    content image has one address."""
    config = project.config.image
    context = project.resolve(config.context)
    digest = hashlib.sha256()
    for part in (config.dockerfile or content_dockerfile.NAME, dockerfile_of(project)[1],
                 "base-inputs:" + base_inputs(project), config.app_dir):
        digest.update((part if isinstance(part, bytes) else part.encode()) + b"\0")
    for name in files:
        path = context / name
        digest.update(name.encode() + b"\0" + (b"x" if path.stat().st_mode & 0o100 else b"-") + path.read_bytes()
                      + b"\0")
    return digest.hexdigest()


def _context_tar(project: Project, files: list[str]) -> io.BytesIO:
    """The content image's build context with fixed file times, so an unchanged context hits the cache."""
    config = project.config.image
    context = project.resolve(config.context)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        name, data = dockerfile_of(project)
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        for name, path in ((n, context / n) for n in files):
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    buf.seek(0)
    return buf


def build_content(engine: docker.DockerClient, project: Project, facts: GitFacts, reporter: Reporter,
                  nocache: bool = False, cache: BuildCache | None = None) -> ContentImage:
    """The content image for these inputs: the engine's when it has it, else built (the runtime base first,
    when its inputs changed). With `cache` (the environment's build cache, image/cache.py) a missing content
    image is pulled from it when it holds one for these inputs — the base comes with it — and one built here
    is pushed there. The inputs need neither the engine nor the base, so the content image is looked for
    (here, then in the cache) before the base is."""
    config = project.config.image
    files = content_files(project)
    refuse_ignored_inputs(project, files)
    inputs = content_inputs(project, files)
    cached = content_cache_tag(inputs)
    tag = f"{config.name}:{cached}"
    if image_exists(engine, tag) and not nocache:
        reporter.step(f"content image {tag} is up to date (no build)")
        if cache is not None and cache.holds(cached, reporter) is False:
            # Built here without the environment (`image`, `doctor`): the cache gets it now, or another
            # machine would build this content again, and the engine's builds are never byte-identical.
            cache.push(engine, tag, cached, "content image", reporter)
        return ContentImage(tag, inputs, engine.api.inspect_image(tag))
    if cache is not None and not nocache:
        held = cache.holds(cached, reporter)
        if held is None:  # unreadable (warned): build as a machine without an environment does
            return build_content(engine, project, facts, reporter)
        if held and cache.pull(engine, cached, "content image", reporter):
            engine.images.get(cache.reference(cached)).tag(config.name, cached)
            return ContentImage(tag, inputs, engine.api.inspect_image(tag))
    base = ensure_base(engine, project, reporter, cache)  # with a cache: pulled, or built and pushed
    if cache is not None and base != cache.reference(base_cache_tag(project)):
        cache = None  # the cache went away meanwhile (warned): nothing is pushed to it
    reporter.step(f"building the content image {tag} ({dockerfile_shown(project)})")
    with reporter.group(f"docker build {dockerfile_shown(project)}"):
        stream = engine.api.build(
            fileobj=_context_tar(project, files), custom_context=True, dockerfile=dockerfile_of(project)[0],
            buildargs={"BASE_IMAGE": base}, labels={CONTENT_LABEL: inputs}, tag=tag,
            rm=True, forcerm=True, pull=False, nocache=nocache, decode=True)
        try:
            stream_build(stream, reporter.detail)
        except BuildFailed as exc:
            raise SlipwayError(f"{dockerfile_shown(project)}: image build failed at {exc}",
                               f"fix that step and rebuild (`{command('image', '--verbose')}` shows the whole "
                               "build output)") from exc
    if cache is not None:
        cache.push(engine, tag, cached, "content image", reporter)
    return ContentImage(tag, inputs, engine.api.inspect_image(tag))


# --- 2. the code layers ------------------------------------------------------------------------------------

def code_layers(project: Project, facts: GitFacts) -> list[Layer]:
    """One layer per code path, written from the commit's Git objects (from the working tree for a -dirty
    build), under the image's app directory: each depends on that path's files only (image/layers.py)."""
    config = project.config.image
    prefix = config.app_dir.lstrip("/")
    layers = []
    for path in config.code:
        path = path.strip("/")
        entries = (files_from_tree(facts.root, [path], prefix) if facts.dirty
                   else files_from_commit(facts.root, facts.sha, [path], prefix))
        layers.append(write_layer(entries, path, under=prefix))
    return layers


def load(engine: docker.DockerClient, image: AssembledImage, repo_tags: list[str]) -> str:
    """Load `image` into the engine (only slipway's layers travel); returns its image ID."""
    try:
        engine.images.load(load_archive(image, repo_tags))
    except docker.errors.APIError as exc:
        raise SlipwayError(f"the Docker engine refused the assembled image: {exc.explanation or exc}",
                           "check the engine's disk space and that it holds the content image") from exc
    return image.image_id


# --- 3. the probe, 4. the release layer --------------------------------------------------------------------

@dataclass
class CodeProbe:
    """The entry-point probe running in content + code layers (a candidate image loaded for it): started as
    soon as both are known, asked once the declarations are (image/probe.py says why)."""

    engine: docker.DockerClient
    content: ContentImage
    code: list[Layer]
    candidate: str  # this run's own tag of the candidate image, removed with the probe
    running: RunningProbe

    def answer(self, declarations: Declarations, reporter: Reporter) -> list[dict]:
        """A flow that does not import is recorded, not fatal here: deploy and plan report it against the
        deployments.yaml field that names it (and the build warns now)."""
        reporter.step(f"importing {len(declarations.deployments)} entry point(s) in the image")
        try:
            probe = self.running.ask(probe_requests(declarations))
        finally:
            self.discard()
        for request, result in zip(declarations.deployments, probe):
            if "error" in result:
                reporter.warn(f"{request.entrypoint} does not import in the image: {result['error']}")
        return probe

    def discard(self) -> None:
        self.running.close()
        _remove_candidate(self.engine, self.candidate)


def start_code_probe(engine: docker.DockerClient, project: Project, content: ContentImage,
                     code: list[Layer]) -> CodeProbe:
    """Import every entry point inside content + code layers (one container, no network): the very files
    the release runs. Started here, answered by `CodeProbe.answer`.

    Two runs of one commit (a person and a CI job, two environments released at once) load the same
    candidate image ID. Each holds it by a tag of its own, so one run's cleanup only drops its own tag and
    never removes the image from under the other's container; the last tag to go takes the image with it."""
    candidate = assemble(content.info, code, {PROBE_LABEL: PROBE_PURPOSE}, content.info.get("Created") or "")
    tag = f"{CANDIDATE_REPOSITORY}:{uuid.uuid4().hex[:16]}"
    load(engine, candidate, [tag])
    try:
        running = start_probe(engine, tag, project.config.image.app_dir)
    except BaseException:
        _remove_candidate(engine, tag)
        raise
    return CodeProbe(engine, content, code, tag, running)


def _remove_candidate(engine: docker.DockerClient, tag: str) -> None:
    try:
        engine.images.remove(tag, noprune=True)
    except docker.errors.APIError:
        pass  # gone already; or a container still uses the image (the image is the other run's to remove)


def probe_code(engine: docker.DockerClient, project: Project, content: ContentImage, code: list[Layer],
               declarations: Declarations, reporter: Reporter) -> list[dict]:
    """`start_code_probe` then `answer`, for a caller that knows the declarations already."""
    return start_code_probe(engine, project, content, code).answer(declarations, reporter)


def finish_image(engine: docker.DockerClient, project: Project, content: ContentImage, code: list[Layer],
                 layer: ReleaseLayer, facts: GitFacts, reporter: Reporter) -> BuiltImage:
    """Content + code + release layer, with the commit's labels, loaded into the engine under HEAD's tags."""
    built = assemble_release(project, content, code, layer, facts)
    load_release(engine, built, reporter)
    return built


def assemble_release(project: Project, content: ContentImage, code: list[Layer], layer: ReleaseLayer,
                     facts: GitFacts) -> BuiltImage:
    """HEAD's image as bytes, not yet in the engine (`load_release`): its ID is known already."""
    config = project.config.image
    release = release_layer_of(layer, config.app_dir)
    image = assemble(content.info, [*code, release], commit_labels(facts, layer), facts.commit_time)
    return BuiltImage(config.name, facts.image_tags(), facts.sha, image.image_id, layer, content, image)


def load_release(engine: docker.DockerClient, built: BuiltImage, reporter: Reporter) -> None:
    """The assembled image into the engine under HEAD's tags (≈ 0.25 s of the engine's own work here)."""
    load(engine, built.assembled, [f"{built.name}:{tag}" for tag in built.tags])
    reporter.step(f"built {built.reference} ({built.image_id[:19]})")


def release_layer_of(layer: ReleaseLayer, app_dir: str) -> Layer:
    """The release layer's files under `<app_dir>/.slipway`, as a reproducible layer."""
    prefix = release_layer.dir_in_image(app_dir).lstrip("/")
    entries = [FileEntry(f"{prefix}/{name}", data) for name, data in release_layer.layer_files(layer).items()]
    return write_layer(entries, "slipway release layer", under=app_dir.lstrip("/"))


def find_local_image(engine: docker.DockerClient, project: Project, facts: GitFacts):
    """HEAD's image in the local engine, checked by its revision label; None when the engine lacks it."""
    ref = head_reference(project, facts)
    try:
        image = engine.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    if (image.labels or {}).get(REVISION_LABEL) != facts.sha:
        raise SlipwayError(f"image {ref} is not labelled with revision {facts.sha}",
                           f"rebuild it with `{command('image')}`")
    return image



def reassemble(engine: docker.DockerClient, project: Project, facts: GitFacts, local,
               layer: ReleaseLayer) -> BuiltImage | None:
    """HEAD's local image (`local`, a docker-py Image) made again in memory from its parts: the content image
    its label names, the code layers from the commit, the release layer it holds (`layer`). Returned only when
    that gives the very image the engine holds (the same ID), so the bytes slipway pushes are that image's;
    None when it does not (an image made by another slipway version, or its content image removed)."""
    inputs = (local.labels or {}).get(CONTENT_LABEL)
    if not inputs:
        return None
    config = project.config.image
    tag = f"{config.name}:{content_cache_tag(inputs)}"
    try:
        content = ContentImage(tag, inputs, engine.api.inspect_image(tag))
    except docker.errors.ImageNotFound:
        return None
    code = code_layers(project, facts)
    release = release_layer_of(layer, config.app_dir)
    image = assemble(content.info, [*code, release], commit_labels(facts, layer), facts.commit_time)
    if image.image_id != local.id:
        return None
    return BuiltImage(config.name, facts.image_tags(), facts.sha, image.image_id, layer, content, image)
