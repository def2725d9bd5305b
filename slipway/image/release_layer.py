"""The release layer: the last, small layer of every image, written by slipway (not by images/flow/Dockerfile).

It holds these files under `<app_dir>/.slipway/` (app_dir: slipway.yaml `image.app_dir`, default /opt/prefect):
- release-config.json: this commit's slipway.yaml and deployments.yaml, as canonical JSON. Its SHA-256 is
  also an image label, so a reader can tell the layer was not altered and which configuration built it.
- flows.json: what the entry-point probe found when the image was built — each deployment's flow name,
  parameter schema and parameter checks (image/probe.py runs the probe once, inside the image).
- release.json (format 2 on): the release format and the slipway version that wrote it, also as labels.

**Release formats.** A newer slipway reads every format any slipway has written, so an upgrade never loses
a rollback; a release in a format newer than this slipway's is one error naming the slipway that made it.
- 1 (slipway 0.3 and before): release-config.json and flows.json; no format file, no format label.
- 2 (slipway 0.4): format 1 plus release.json and the labels FORMAT_LABEL and MADE_BY_LABEL.
A layer is written in the format it was read in (`ReleaseLayer.format`), so an older release pushed again
is the same bytes.

`deploy` and `plan` read this layer from the local image (or from the registry) instead of importing the
flows again; a rollback reads the one blob from the registry instead of pulling the image.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from slipway import __version__
from slipway.errors import SlipwayError
from slipway.invocation import command
from slipway.project.config import CONFIG_FILE, Project

HASH_LABEL = "io.slipway.release-config.sha256"
FORMAT_LABEL = "io.slipway.release-format"
MADE_BY_LABEL = "io.slipway.version"  # the slipway version that made the release
DIR_NAME = ".slipway"
CONFIG_NAME = "release-config.json"
PROBE_NAME = "flows.json"
FORMAT_NAME = "release.json"
FORMAT = 2  # the format this slipway writes; it reads 1 to FORMAT
MAX_LAYER_BYTES = 1 << 20  # a few small JSON files; a bigger last layer is not slipway's


@dataclass(frozen=True)
class ReleaseLayer:
    """What a release carries about itself: its configuration files and what the probe found in its image."""

    files: dict[str, str]  # {"slipway.yaml": text, "<deployments file>": text}
    probe: list[dict[str, Any]]  # one result per declared deployment, in order (image/probe.py)
    format: int = FORMAT  # the release format it is written in (the module doc lists them)
    made_by: str | None = __version__  # the slipway version that wrote it (None: format 1 did not say)

    @property
    def config_hash(self) -> str:
        return encode(self.files)[1]


def labels(layer: ReleaseLayer) -> dict[str, str]:
    """The image labels that describe the release layer (format 1 had only the configuration's hash)."""
    found = {HASH_LABEL: layer.config_hash}
    if layer.format >= 2:
        found.update({FORMAT_LABEL: str(layer.format), MADE_BY_LABEL: layer.made_by or ""})
    return found


def refuse_newer_format(found: int, made_by: str | None, where: str) -> None:
    if found > FORMAT:
        by = f"slipway {made_by}" if made_by else "a newer slipway"
        need = f"slipway>={made_by}" if made_by else "a newer slipway"
        raise SlipwayError(f"{where} was made by {by} in release format {found}, and this slipway ({__version__}) "
                           f"reads formats 1 to {FORMAT}",
                           f"use {need} for it (uv tool install '{need}'); nothing was changed")


def dir_in_image(app_dir: str) -> str:
    return f"{app_dir}/{DIR_NAME}"


def collect(project: Project) -> dict[str, str]:
    """The files that make up a release's configuration, by name, as text, from the working tree."""
    files = {}
    for name in (CONFIG_FILE, project.config.deployments):
        path = project.resolve(name)
        if not path.is_file():
            raise SlipwayError(f"{name} not found", f"create it or fix '{name}' in {CONFIG_FILE}")
        files[name] = path.read_text()
    return files


def encode(files: dict[str, str]) -> tuple[bytes, str]:
    """(canonical JSON, its sha256): the same files always give the same bytes, so rebuilds hit the cache."""
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return canonical, hashlib.sha256(canonical).hexdigest()


def layer_files(layer: ReleaseLayer) -> dict[str, bytes]:
    """The release layer's files, by name under `<app_dir>/.slipway`, in the layer's own format."""
    files = {CONFIG_NAME: encode(layer.files)[0],
             PROBE_NAME: json.dumps(layer.probe, sort_keys=True, separators=(",", ":")).encode()}
    if layer.format >= 2:
        files[FORMAT_NAME] = json.dumps({"format": layer.format, "slipway": layer.made_by},
                                        sort_keys=True, separators=(",", ":")).encode()
    return files


def parse_layer(tar_bytes: bytes, labels: dict[str, str], where: str) -> ReleaseLayer:
    """The release layer from a tar holding its files.

    Accepts the layer blob from the registry (paths <app_dir>/.slipway/...) and `docker cp`-style archives
    of the directory (.slipway/...), in every format (the module doc). The configuration must match the
    image's hash label.
    """
    labelled = labels.get(FORMAT_LABEL)
    if labelled is not None:  # told by the image config before any of the layer is read
        refuse_newer_format(int(labelled) if labelled.isdigit() else FORMAT + 1, labels.get(MADE_BY_LABEL), where)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:*") as tar:
            for member in tar.getmembers():
                parent, _, name = member.name.rstrip("/").rpartition("/")
                if member.isfile() and parent.endswith(DIR_NAME) and name in (CONFIG_NAME, PROBE_NAME, FORMAT_NAME):
                    found[name] = tar.extractfile(member).read()
    except tarfile.TarError:
        pass  # not a tar at all: reported below as "no release layer"
    release_format, made_by = _format_of(found, where)
    if not {CONFIG_NAME, PROBE_NAME} <= set(found):
        raise SlipwayError(f"{where} has no release layer ({DIR_NAME}/ with {CONFIG_NAME} and {PROBE_NAME})",
                           f"it was built by another version of slipway: rebuild it from its commit (`{command('image')}`)")
    if hashlib.sha256(found[CONFIG_NAME]).hexdigest() != labels.get(HASH_LABEL):
        raise SlipwayError(f"{where}: its release configuration does not match its label {HASH_LABEL}",
                           "the image was altered; rebuild that commit or pick another release")
    try:
        files, probe = json.loads(found[CONFIG_NAME]), json.loads(found[PROBE_NAME])
    except ValueError as exc:
        raise SlipwayError(f"{where}: its release layer is unreadable ({exc})", "rebuild it from its commit") from exc
    if not isinstance(files, dict) or not isinstance(probe, list):
        raise SlipwayError(f"{where}: its release layer is not slipway's", "rebuild it from its commit")
    return ReleaseLayer(files, probe, release_format, made_by)


def _format_of(found: dict[str, bytes], where: str) -> tuple[int, str | None]:
    """(format, slipway version) of a release layer's files: format 1 had no release.json."""
    if FORMAT_NAME not in found:
        return 1, None
    try:
        record = json.loads(found[FORMAT_NAME])
        release_format, made_by = int(record["format"]), record.get("slipway")
    except (ValueError, TypeError, KeyError) as exc:
        raise SlipwayError(f"{where}: its {DIR_NAME}/{FORMAT_NAME} is unreadable ({exc})",
                           "rebuild it from its commit") from exc
    refuse_newer_format(release_format, made_by, where)
    return release_format, made_by


def read_from_local_image(engine, image: str, labels: dict[str, str], app_dir: str) -> ReleaseLayer:
    """The release layer of an image in the local engine: a created (never started) container, ~80 ms."""
    import docker

    container = engine.api.create_container(image, command=["true"], entrypoint=[], network_disabled=True)
    try:
        try:
            chunks, _ = engine.api.get_archive(container["Id"], dir_in_image(app_dir))
            archive = b"".join(chunks)
        except docker.errors.NotFound:
            archive = b""  # no such directory: reported by parse_layer
    finally:
        engine.api.remove_container(container["Id"], force=True)
    return parse_layer(archive, labels, image)
