"""The release layer: the last, small layer of every image, written by slipway (not by images/flow/Dockerfile).

It holds two files under /opt/prefect/.slipway/:
- release-config.json: this commit's slipway.yaml and deployments.yaml, as canonical JSON. Its SHA-256 is
  also an image label, so a reader can tell the layer was not altered and which configuration built it.
- flows.json: what the entry-point probe found when the image was built — each deployment's flow name,
  parameter schema and parameter checks (slipway/validate.py runs the probe once, inside the image).

`deploy` and `plan` read this layer from the local image (or from the registry) instead of importing the
flows again; a rollback reads the one blob from the registry instead of pulling the image. The files go in
with a plain COPY, no RUN, so the layer is a few KB and the image config stays small.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile

from slipway.config import CONFIG_FILE, Project
from slipway.errors import SlipwayError

HASH_LABEL = "io.slipway.release-config.sha256"
DIR_IN_IMAGE = "/opt/prefect/.slipway"
CONFIG_NAME = "release-config.json"
PROBE_NAME = "flows.json"
FILE_IN_IMAGE = f"{DIR_IN_IMAGE}/{CONFIG_NAME}"
PROBE_FILE_IN_IMAGE = f"{DIR_IN_IMAGE}/{PROBE_NAME}"
MAX_LAYER_BYTES = 1 << 20  # two small JSON files; a bigger last layer is not slipway's


def collect(project: Project) -> dict[str, str]:
    """The files that make up a release's configuration, by name, as text."""
    names = [CONFIG_FILE, project.config.deployments]
    files = {}
    for name in names:
        path = project.resolve(name)
        if not path.is_file():
            raise SlipwayError(f"{name} not found", f"create it or fix '{name}' in {CONFIG_FILE}")
        files[name] = path.read_text()
    return files


def encode(files: dict[str, str]) -> tuple[bytes, str]:
    """(canonical JSON, its sha256): the same files always give the same bytes, so rebuilds hit the cache."""
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    return canonical, hashlib.sha256(canonical).hexdigest()


def layer_files(files: dict[str, str], probe: list[dict]) -> dict[str, bytes]:
    """The release layer's files, by name under DIR_IN_IMAGE."""
    return {CONFIG_NAME: encode(files)[0],
            PROBE_NAME: json.dumps(probe, sort_keys=True, separators=(",", ":")).encode()}


def parse_layer(tar_bytes: bytes, labels: dict[str, str], where: str) -> tuple[dict[str, str], list[dict]]:
    """(configuration files, probe results) from a tar holding the release layer's files.

    Accepts the layer blob from the registry (paths opt/prefect/.slipway/...) and `docker cp`-style archives
    of the directory (.slipway/...). The configuration must match the image's hash label.
    """
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:*") as tar:
            for member in tar.getmembers():
                parent, _, name = member.name.rstrip("/").rpartition("/")
                if member.isfile() and parent.endswith(".slipway") and name in (CONFIG_NAME, PROBE_NAME):
                    found[name] = tar.extractfile(member).read()
    except tarfile.TarError:
        pass
    if set(found) != {CONFIG_NAME, PROBE_NAME}:
        raise SlipwayError(f"{where} has no release layer ({DIR_IN_IMAGE} with {CONFIG_NAME} and {PROBE_NAME})",
                           "it was built by another version of slipway: rebuild it from its commit (`make image`)")
    if hashlib.sha256(found[CONFIG_NAME]).hexdigest() != labels.get(HASH_LABEL):
        raise SlipwayError(f"{where}: its release configuration does not match its label {HASH_LABEL}",
                           "the image was altered; rebuild that commit or pick another release")
    try:
        files, probe = json.loads(found[CONFIG_NAME]), json.loads(found[PROBE_NAME])
    except ValueError as exc:
        raise SlipwayError(f"{where}: its release layer is unreadable ({exc})") from None
    if not isinstance(files, dict) or not isinstance(probe, list):
        raise SlipwayError(f"{where}: its release layer is not slipway's", "rebuild it from its commit")
    return files, probe


def read_from_local_image(client, image: str, labels: dict[str, str]) -> tuple[dict[str, str], list[dict]]:
    """The release layer's files from an image in the local engine: a created (never started) container."""
    import docker

    container = client.api.create_container(image, command=["true"], entrypoint=[], network_disabled=True)
    try:
        try:
            chunks, _ = client.api.get_archive(container["Id"], DIR_IN_IMAGE)
            archive = b"".join(chunks)
        except docker.errors.NotFound:
            archive = b""
    finally:
        client.api.remove_container(container["Id"], force=True)
    return parse_layer(archive, labels, image)


def declared_parameter_sets(declarations) -> list[list[dict]]:
    """Per deployment: its parameters, then each schedule's (schedule values override)."""
    return [[d.parameters] + [{**d.parameters, **s.parameters} for s in d.schedules if s.parameters]
            for d in declarations.deployments]
