"""The embedded default: a local OCI registry (localhost:5000) and a Prefect server (127.0.0.1:4200).

Both run as containers of images built here, so nothing is pulled from an image registry:
- the registry is Debian's `docker-registry` package (images/registry/) on the Debian base slipway uses;
- the Prefect server runs from the runtime base image, the very Prefect release the flows run with.
Their data lives on named volumes, so `down` then `up` keeps pushed images and Prefect's database.
Ports are published on 127.0.0.1 only: nothing here is reachable from the network.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import time
from dataclasses import dataclass, field, replace

import docker
import requests
from docker.errors import APIError, NotFound

from slipway.base import ensure_base, ensure_os_base
from slipway.config import Project
from slipway.engine import BuildFailed, image_exists, stream_build
from slipway.errors import SlipwayError
from slipway.output import Reporter

REGISTRY_IMAGE_REPOSITORY = "slipway/registry"
REGISTRY_CONTEXT = "images/registry"
STACK_LABEL = "io.slipway.stack"  # marks containers this module created; `down` stops nothing else
HEALTH_TIMEOUT = 90  # seconds: a first Prefect start migrates its database, slow on a busy machine


@dataclass(frozen=True)
class Service:
    """One container of the stack: names, where it listens, and how to tell it is healthy."""

    role: str  # "registry" | "prefect"
    container: str
    volume: str
    mount: str  # where the volume is mounted in the container
    container_port: int
    host_port: int | None  # None: a random free port (tests)
    health_path: str
    environment: dict[str, str] = field(default_factory=dict)


REGISTRY = Service(role="registry", container="slipway-registry", volume="slipway-registry-data",
                   mount="/var/lib/registry", container_port=5000, host_port=5000, health_path="/v2/")
# The volume is mounted on the server user's home (uid 10001 owns it in the image, and a new named volume
# takes over that ownership); the SQLite database is $PREFECT_HOME/prefect.db inside it.
PREFECT = Service(role="prefect", container="slipway-prefect", volume="slipway-prefect-data",
                  mount="/home/slipway", container_port=4200, host_port=4200, health_path="/api/health")


def prefect_environment(host_port: int) -> dict[str, str]:
    return {
        "PREFECT_HOME": "/home/slipway/.prefect",
        "PREFECT_SERVER_API_HOST": "0.0.0.0",
        "PREFECT_SERVER_API_PORT": "4200",
        # The UI runs in the user's browser: it must call the API on the published address.
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{host_port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


# -- images -----------------------------------------------------------------------------------------------

def registry_image(client: docker.DockerClient, project: Project, reporter: Reporter) -> str:
    """`slipway/registry:<hash>` over images/registry/ and the Debian base, built only when missing."""
    os_base = ensure_os_base(client, project, reporter)
    context = project.resolve(REGISTRY_CONTEXT)
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(os_base.encode() + b"\0" + client.images.get(os_base).id.encode())
    tag = f"{REGISTRY_IMAGE_REPOSITORY}:{digest.hexdigest()[:16]}"
    if image_exists(client, tag):
        return tag
    reporter.step(f"building the registry image {tag} from {os_base} (Debian's docker-registry)")
    stream = client.api.build(path=str(context), buildargs={"BASE_IMAGE": os_base}, tag=tag, rm=True,
                              forcerm=True, pull=False, decode=True)
    try:
        stream_build(stream, reporter.detail)
    except BuildFailed as exc:
        raise SlipwayError(f"{REGISTRY_CONTEXT}/Dockerfile: registry image build failed at {exc}",
                           "check access to the Debian mirror (apt) and retry") from None
    return tag


# -- containers ------------------------------------------------------------------------------------------

def find_container(client: docker.DockerClient, name: str):
    try:
        return client.containers.get(name)
    except NotFound:
        return None


def published_port(container, service: Service) -> int | None:
    container.reload()
    bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).get(f"{service.container_port}/tcp")
    return int(bindings[0]["HostPort"]) if bindings else None


def healthy(port: int | None, service: Service) -> bool:
    if not port:
        return False
    try:
        resp = requests.get(f"http://127.0.0.1:{port}{service.health_path}", timeout=3)
    except requests.RequestException:
        return False
    return resp.status_code in (200, 401)  # 401: a registry with authentication is up too


def wait_healthy(container, service: Service, reporter: Reporter, timeout: float = HEALTH_TIMEOUT) -> int:
    """Poll the service's health endpoint; on timeout or exit, fail with the container's last log line."""
    deadline = time.monotonic() + timeout
    next_note = time.monotonic() + 5
    port = None
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            break
        port = port or published_port(container, service)
        if healthy(port, service):
            return port
        if time.monotonic() >= next_note:
            reporter.step(f"waiting for {service.container} on 127.0.0.1:{port}{service.health_path}")
            next_note += 5
        time.sleep(0.5)
    logs = container.logs(tail=5).decode(errors="replace").strip().splitlines()
    last = logs[-1] if logs else "no output"
    raise SlipwayError(f"{service.container} did not become healthy (status {container.status}; last log: {last})",
                       f"see `docker logs {service.container}`; then `python build.py down` and `up` again")


def start_service(client: docker.DockerClient, service: Service, image: str, command: list[str] | None,
                  reporter: Reporter) -> dict:
    """Reuse the service's container when healthy, restart it when stopped, else create it."""
    container = find_container(client, service.container)
    if container is not None and container.status == "running" and healthy(published_port(container, service),
                                                                              service):
        port = published_port(container, service)
        reporter.step(f"{service.container} is up on 127.0.0.1:{port}")
        return {"container": service.container, "port": port, "status": "reused"}
    if container is not None:
        reporter.step(f"restarting {service.container}")
        _guard(lambda: container.restart(timeout=10), service)
        status = "restarted"
    else:
        reporter.step(f"starting {service.container} from {image}")
        container = _guard(lambda: client.containers.run(
            image, command=command, name=service.container, detach=True,
            environment=service.environment,
            ports={f"{service.container_port}/tcp": ("127.0.0.1", service.host_port)},
            volumes={service.volume: {"bind": service.mount, "mode": "rw"}},
            labels={STACK_LABEL: service.role},
            restart_policy={"Name": "unless-stopped"},
        ), service)
        status = "started"
    port = wait_healthy(container, service, reporter)
    reporter.step(f"{service.container} is up on 127.0.0.1:{port}")
    return {"container": service.container, "port": port, "status": status}


def _guard(action, service: Service):
    try:
        return action()
    except APIError as exc:
        text = " ".join(str(exc.explanation or exc).split())
        if "port is already allocated" in text or "address already in use" in text:
            raise SlipwayError(f"cannot start {service.container}: 127.0.0.1:{service.host_port} is already in use",
                               f"stop what listens on port {service.host_port} (`ss -ltnp`) and retry") from None
        raise SlipwayError(f"cannot start {service.container}: {text}",
                           f"see `docker logs {service.container}`") from None


def remove_service(client: docker.DockerClient, service: Service) -> None:
    """Remove the service's container (its volume is kept): `up --recreate` uses it."""
    container = find_container(client, service.container)
    if container is not None and (container.labels or {}).get(STACK_LABEL) == service.role:
        container.remove(force=True)


# -- throwaway registries (tests, benchmark) -------------------------------------------------------------

SCRATCH_REGISTRY_TIMEOUT = 30  # seconds, what the tests and the benchmark allowed before: an empty registry needs ~1


@dataclass(frozen=True)
class ScratchRegistry:
    """A registry container started by `start_scratch_registry`: where it listens and its access log."""

    container: object  # docker.models.containers.Container
    port: int

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> str:
        """Everything the registry logged: its access log (one line per request) and its own messages."""
        return self.container.logs().decode(errors="replace")

    def remove(self) -> None:
        """Remove the container and its anonymous data volume; a container already gone is fine."""
        with contextlib.suppress(NotFound):
            self.container.remove(force=True, v=True)


def start_scratch_registry(client: docker.DockerClient, project: Project, reporter: Reporter, *, name: str,
                           labels: dict[str, str], environment: dict[str, str] | None = None,
                           files: dict[str, bytes] | None = None) -> ScratchRegistry:
    """A throwaway registry for the tests and the benchmark, healthy when returned; the caller removes it.

    The image `up` runs (built locally, nothing pulled), on a random 127.0.0.1 port so it never collides with
    `up`'s localhost:5000. Unlike `ensure_registry` it never reuses a container, has no named volume (its data
    goes with the container) and no restart policy. `environment` overrides config.yml (REGISTRY_AUTH=htpasswd,
    ...); `files` ({absolute path: content}) are copied in before the registry starts, e.g. an htpasswd file.
    """
    image = registry_image(client, project, reporter)
    container = client.containers.create(image, name=name, labels=labels, environment=environment or {},
                                         ports={f"{REGISTRY.container_port}/tcp": ("127.0.0.1", None)})
    # REGISTRY's port and health check; volume "": only the image's anonymous volume, removed with the container.
    service = replace(REGISTRY, container=name, volume="", host_port=None)
    try:
        if files:
            container.put_archive("/", _tar(files))
        container.start()
        port = wait_healthy(container, service, reporter, SCRATCH_REGISTRY_TIMEOUT)
    except BaseException as exc:
        # The container is removed here, so `docker logs` (wait_healthy's advice) would find nothing afterwards:
        # a registry that did not come up is reported with the end of its log instead.
        tail = ""
        if isinstance(exc, SlipwayError):
            with contextlib.suppress(Exception):
                tail = container.logs().decode(errors="replace")[-2000:]
        with contextlib.suppress(Exception):  # the original error is the one worth seeing
            container.remove(force=True, v=True)
        if tail:
            raise SlipwayError(exc.message, f"the registry's log ends: {tail}") from None
        raise
    return ScratchRegistry(container, port)


def _tar(files: dict[str, bytes]) -> bytes:
    """A tar of `files` for put_archive at "/" (Docker creates missing parent directories); readable by all,
    since the registry runs as its own user."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(name=path.lstrip("/"))
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


# -- the two verbs ---------------------------------------------------------------------------------------

def ensure_registry(client: docker.DockerClient, project: Project, reporter: Reporter,
                    service: Service = REGISTRY) -> dict:
    container = find_container(client, service.container)
    image = None if container is not None else registry_image(client, project, reporter)
    result = start_service(client, service, image, None, reporter)
    return {**result, "address": f"localhost:{result['port']}"}


def ensure_prefect(client: docker.DockerClient, project: Project, reporter: Reporter,
                   service: Service = PREFECT) -> dict:
    container = find_container(client, service.container)
    image = None if container is not None else ensure_base(client, project, reporter)
    service = Service(**{**service.__dict__, "environment": {**prefect_environment(service.host_port or 4200),
                                                             **service.environment}})
    command = ["prefect", "server", "start", "--host", "0.0.0.0", "--port", str(service.container_port)]
    result = start_service(client, service, image, command, reporter)
    return {**result, "api_url": f"http://127.0.0.1:{result['port']}/api"}


def stack_up(client: docker.DockerClient, project: Project, reporter: Reporter, recreate: bool = False) -> dict:
    if recreate:
        for service in (REGISTRY, PREFECT):
            remove_service(client, service)
    return {"registry": ensure_registry(client, project, reporter),
            "prefect": ensure_prefect(client, project, reporter)}


def stack_down(client: docker.DockerClient, reporter: Reporter, services: tuple[Service, ...] = (REGISTRY, PREFECT)
               ) -> dict:
    """Stop the stack's containers; volumes and containers are kept, so `up` resumes with the same data."""
    result = {}
    for service in services:
        container = find_container(client, service.container)
        if container is None:
            result[service.role] = "absent"
        elif (container.labels or {}).get(STACK_LABEL) != service.role:
            raise SlipwayError(f"container {service.container} was not started by slipway",
                               f"stop it yourself (`docker stop {service.container}`) if it is yours")
        elif container.status == "running":
            reporter.step(f"stopping {service.container}")
            container.stop(timeout=10)
            result[service.role] = "stopped"
        else:
            result[service.role] = "already stopped"
    return result
