"""The runtime base image: Dockerfile.base on top of an OS base, tagged by a hash of its inputs.

OS base resolution, in order: BASE_IMAGE present locally; BASE_IMAGE pulled; the bootstrapped Debian base
(`make base-os`, the air-gapped path) present locally; bootstrapping it now with debootstrap.

With an environment (`release --env`, `image --env`, `base --env`), the base goes through that environment's
build cache (image/cache.py) as `base-<hash>` of the inputs that need no engine (Dockerfile.base, the runtime
lock, BASE_IMAGE's name): the machine that builds it pushes it, a machine without it (a fresh CI runner)
pulls it instead of rebuilding it (~70 s and a PyPI download). The OS base's image ID, part of the local
tag's hash, is not part of the cache's: the first base pushed for these inputs is the team's, and a machine
that pulls it needs no OS base at all.
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import docker

from slipway.errors import SlipwayError
from slipway.image.cache import BuildCache
from slipway.image.engine import BuildFailed, image_exists, stream_build
from slipway.output import Reporter
from slipway.project.config import CONFIG_FILE, Project

BASE_REPOSITORY = "slipway-base"
RUNTIME_LOCK = "requirements/runtime.txt"
# Shipped inside the package (not the repository): a team's repository has no copy of it.
BOOTSTRAP_SCRIPT = Path(__file__).with_name("bootstrap-base-os.sh")
INPUTS_LABEL = "io.slipway.base.inputs"  # the cache key, on every base built (and so on every one pulled)


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
    proc = subprocess.run(["bash", str(BOOTSTRAP_SCRIPT), name], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise SlipwayError(
            f"base image {project.base_image} cannot be pulled and bootstrapping {name} failed ({last})",
            "make the base image pullable, set SLIPWAY_BASE_IMAGE to a local Debian/Python image, "
            "or fix debootstrap access to a Debian mirror (DEBIAN_MIRROR)",
        )


def _file_inputs(project: Project) -> hashlib._Hash:
    digest = hashlib.sha256()
    for relative, what, fix in (
            (project.config.base.dockerfile, "the base image's Dockerfile",
             f"create it (README.md 'Dependency locks'), or name yours in {CONFIG_FILE} base.dockerfile"),
            (RUNTIME_LOCK, "the runtime lock", "create it: the locked runtime (README.md 'Dependency locks')")):
        try:
            data = project.resolve(relative).read_bytes()
        except FileNotFoundError as exc:
            raise SlipwayError(f"{relative} ({what}) not found in {project.root}", fix) from exc
        digest.update(relative.encode() + b"\0" + data + b"\0")
    return digest


def base_tag(client: docker.DockerClient, project: Project, os_base: str) -> str:
    """`slipway-base:<hash>` over Dockerfile.base, the runtime lock and the OS base (name and image ID)."""
    digest = _file_inputs(project)
    digest.update(os_base.encode() + b"\0" + client.images.get(os_base).id.encode())
    return f"{BASE_REPOSITORY}:{digest.hexdigest()[:16]}"


def cache_key(project: Project) -> str:
    """The base's inputs as the build cache names them: Dockerfile.base, the runtime lock and BASE_IMAGE's
    name, hashed without the engine (a machine that has no OS base can still look the base up)."""
    digest = _file_inputs(project)
    digest.update(b"os-base\0" + project.base_image.encode())
    return digest.hexdigest()[:16]


def cache_tag(project: Project) -> str:
    """The base's tag in the build cache: `base-<inputs>`."""
    return f"base-{cache_key(project)}"


def ensure_base(client: docker.DockerClient, project: Project, reporter: Reporter,
                cache: BuildCache | None = None) -> str:
    """Return the runtime base image to build on. Without `cache`: `slipway-base:<hash>`, built only when
    its inputs changed. With `cache` (the environment's build cache, image/cache.py): the cached base,
    `<registry>/<cache repository>:base-<inputs>`, pulled when the engine lacks it, else built and pushed."""
    if cache is None:
        return build_base(client, project, reporter)
    tag = cache_tag(project)
    reference = cache.reference(tag)
    if image_exists(client, reference):
        reporter.step(f"base image {reference} is up to date")
        return reference
    held = cache.holds(tag, reporter)
    if held is None:  # the cache cannot be read: the engine-local base
        return build_base(client, project, reporter, {INPUTS_LABEL: cache_key(project)})
    if held and cache.pull(client, tag, "base image", reporter):
        return reference
    local = build_base(client, project, reporter, {INPUTS_LABEL: cache_key(project)})
    client.images.get(local).tag(cache.repository, tag)
    cache.push(client, reference, tag, "base image", reporter)
    return reference


def build_base(client: docker.DockerClient, project: Project, reporter: Reporter,
               labels: dict[str, str] | None = None) -> str:
    """`slipway-base:<hash>`, built only when its inputs changed (the engine-local base)."""
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
        labels=labels or None,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    try:
        stream_build(stream, reporter.detail)
    except BuildFailed as exc:
        raise SlipwayError(f"{project.config.base.dockerfile}: base image build failed at {exc}",
                           f"fix the step above (a package missing from the index: regenerate {RUNTIME_LOCK} with uv pip compile --generate-hashes)") from exc
    reporter.step(f"built base image {tag}")
    return tag
