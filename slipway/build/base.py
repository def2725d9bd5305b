"""The runtime base image: Dockerfile.base on top of an OS base, tagged by a hash of its inputs.

OS base resolution, in order: BASE_IMAGE present locally; BASE_IMAGE pulled; the bootstrapped Debian base
(`make base-os`, the air-gapped path) present locally; bootstrapping it now with debootstrap.
"""
from __future__ import annotations

import hashlib
import subprocess

import docker

from slipway.build.engine import BuildFailed, image_exists, stream_build
from slipway.errors import SlipwayError
from slipway.output import Reporter
from slipway.project.config import Project

BASE_REPOSITORY = "slipway-base"
RUNTIME_LOCK = "requirements/runtime.txt"
BOOTSTRAP_SCRIPT = "scripts/bootstrap-base-os.sh"


def ensure_os_base(client: docker.DockerClient, project: Project, reporter: Reporter) -> str:
    """Return a Debian-based image reference to build on, bootstrapping one when nothing can be pulled."""
    wanted = project.base_image
    if image_exists(client, wanted):
        return wanted
    fallback = project.config.base.bootstrap_image
    if image_exists(client, fallback) and wanted == project.config.base.image:
        # This machine already went the air-gapped way: no pull attempt on every build (it can hang behind
        # a firewall). `docker pull <image>` (or SLIPWAY_BASE_IMAGE) switches back to the pulled base.
        return fallback
    reporter.step(f"pulling base image {wanted}")
    try:
        client.images.pull(wanted)
        return wanted
    except docker.errors.APIError as exc:
        pull_error = " ".join(str(exc.explanation or exc).split())
    if image_exists(client, fallback):
        reporter.step(f"cannot pull {wanted}; using the bootstrapped base {fallback}")
        return fallback
    reporter.step(f"cannot pull {wanted} ({pull_error}); bootstrapping {fallback} from a Debian mirror "
                  "(air-gapped path, ~1 min)")
    bootstrap_os_base(project, fallback)
    return fallback


def bootstrap_os_base(project: Project, name: str) -> None:
    script = project.root / BOOTSTRAP_SCRIPT
    proc = subprocess.run(["bash", str(script), name], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise SlipwayError(
            f"base image {project.base_image} cannot be pulled and bootstrapping {name} failed ({last})",
            "make the base image pullable, set SLIPWAY_BASE_IMAGE to a local Debian/Python image, "
            "or fix debootstrap access to a Debian mirror (DEBIAN_MIRROR)",
        )


def base_tag(client: docker.DockerClient, project: Project, os_base: str) -> str:
    """`slipway-base:<hash>` over Dockerfile.base, the runtime lock and the OS base (name and image ID)."""
    digest = hashlib.sha256()
    for relative in (project.config.base.dockerfile, RUNTIME_LOCK):
        digest.update(relative.encode() + b"\0" + project.resolve(relative).read_bytes() + b"\0")
    digest.update(os_base.encode() + b"\0" + client.images.get(os_base).id.encode())
    return f"{BASE_REPOSITORY}:{digest.hexdigest()[:16]}"


def ensure_base(client: docker.DockerClient, project: Project, reporter: Reporter) -> str:
    """Return the runtime base image tag, building it only when its inputs changed."""
    os_base = ensure_os_base(client, project, reporter)
    tag = base_tag(client, project, os_base)
    if image_exists(client, tag):
        reporter.step(f"base image {tag} is up to date")
        return tag
    reporter.step(f"building base image {tag} from {os_base} (installs the locked runtime: a few minutes)")
    stream = client.api.build(
        path=str(project.root),
        dockerfile=project.config.base.dockerfile,
        buildargs={"BASE_IMAGE": os_base},
        tag=tag,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    try:
        stream_build(stream, reporter.detail)
    except BuildFailed as exc:
        raise SlipwayError(f"{project.config.base.dockerfile}: base image build failed at {exc}",
                           "fix the step above; a lock change needs `make lock`") from exc
    reporter.step(f"built base image {tag}")
    return tag
