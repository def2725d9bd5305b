"""The release configuration carried by every image: the slipway.yaml and deployments.yaml of its commit.

It travels in an image label (inside the image config blob: a few KB, readable from the registry without
pulling a layer), with its SHA-256 in a second label, and as a file in the image for people who `docker run`.
A rollback restores both the image and the configuration released with it.

Next to it, in the image's last (and small) layer, the build leaves what the entry-point probe found in the
image: each deployment's flow name and parameter schema. A rollback reads that one blob from the registry
instead of pulling the image to import the flows again.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json

from slipway.config import CONFIG_FILE, Project
from slipway.errors import SlipwayError

LABEL = "io.slipway.release-config"
HASH_LABEL = "io.slipway.release-config.sha256"
FILE_IN_IMAGE = "/opt/prefect/.slipway/release-config.json"
PROBE_FILE_IN_IMAGE = "/opt/prefect/.slipway/flows.json"


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


def encode(files: dict[str, str]) -> tuple[str, str]:
    """(label value, sha256): canonical JSON, gzip with a fixed mtime, base64 — same files, same label."""
    canonical = json.dumps(files, sort_keys=True, separators=(",", ":")).encode()
    packed = base64.b64encode(gzip.compress(canonical, mtime=0)).decode()
    return packed, hashlib.sha256(canonical).hexdigest()


def decode(labels: dict[str, str], where: str) -> dict[str, str]:
    """Read the files back from an image's labels, checking the hash label."""
    packed = labels.get(LABEL)
    if not packed:
        raise SlipwayError(f"{where} carries no release configuration (label {LABEL})",
                           "it was not built by slipway; roll back to a release built by slipway")
    try:
        canonical = gzip.decompress(base64.b64decode(packed))
        files = json.loads(canonical)
    except (ValueError, OSError) as exc:
        raise SlipwayError(f"{where}: release configuration label is unreadable ({exc})") from None
    if hashlib.sha256(canonical).hexdigest() != labels.get(HASH_LABEL):
        raise SlipwayError(f"{where}: release configuration does not match its hash label {HASH_LABEL}",
                           "the image was altered; rebuild that commit or pick another release")
    return files


def declared_parameter_sets(declarations) -> list[list[dict]]:
    """Per deployment: its parameters, then each schedule's (schedule values override)."""
    return [[d.parameters] + [{**d.parameters, **s.parameters} for s in d.schedules if s.parameters]
            for d in declarations.deployments]


def flow_probe_script(project: Project) -> str:
    """The entry-point probe for this commit's declarations, run once at build time (images/flow/Dockerfile)."""
    from slipway.deployments import load_declarations
    from slipway.validate import probe_requests, probe_script

    declarations = load_declarations(project)
    return probe_script(probe_requests(declarations, declared_parameter_sets(declarations)))
