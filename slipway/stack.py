"""The embedded default: a local OCI registry (localhost:5000) and a Prefect server (127.0.0.1:4200).

Both run as containers of images built here, so nothing is pulled from an image registry:
- the registry is Debian's `docker-registry` package (images/registry/) on the Debian base slipway uses;
- the Prefect server runs from the runtime base image, the very Prefect release the flows run with.
Their data lives on named volumes, so `down` then `up` keeps pushed images and Prefect's database.
Ports are published on 127.0.0.1 only: nothing here is reachable from the network.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import docker
import requests
from docker.errors import APIError, NotFound

from slipway.build.base import ensure_base, ensure_os_base
from slipway.build.engine import BuildFailed, image_exists, stream_build
from slipway.errors import SlipwayError
from slipway.output import Reporter
from slipway.project.config import Project

REGISTRY_IMAGE_REPOSITORY = "slipway/registry"
REGISTRY_CONTEXT = "images/registry"
POSTGRES_IMAGE_REPOSITORY = "slipway/postgres"
POSTGRES_CONTEXT = "images/postgres"
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
    """`slipway/registry:<hash>`: Debian's docker-registry (images/registry/), built only when missing."""
    return service_image(client, project, reporter, REGISTRY_CONTEXT, REGISTRY_IMAGE_REPOSITORY,
                         "Debian's docker-registry")


def postgres_image(client: docker.DockerClient, project: Project, reporter: Reporter) -> str:
    """`slipway/postgres:<hash>`: Debian's PostgreSQL 15 (images/postgres/), built only when missing."""
    return service_image(client, project, reporter, POSTGRES_CONTEXT, POSTGRES_IMAGE_REPOSITORY,
                         "Debian's postgresql")


def service_image(client: docker.DockerClient, project: Project, reporter: Reporter, context_dir: str,
                  repository: str, what: str) -> str:
    """`<repository>:<hash>` over the context directory and the Debian base, built only when missing."""
    os_base = ensure_os_base(client, project, reporter)
    context = project.resolve(context_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(os_base.encode() + b"\0" + client.images.get(os_base).id.encode())
    tag = f"{repository}:{digest.hexdigest()[:16]}"
    if image_exists(client, tag):
        return tag
    reporter.step(f"building {tag} from {os_base} ({what})")
    stream = client.api.build(path=str(context), buildargs={"BASE_IMAGE": os_base}, tag=tag, rm=True,
                              forcerm=True, pull=False, decode=True)
    try:
        stream_build(stream, reporter.detail)
    except BuildFailed as exc:
        raise SlipwayError(f"{context_dir}/Dockerfile: image build failed at {exc}",
                           "check access to the Debian mirror (apt) and retry") from exc
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
                               f"stop what listens on port {service.host_port} (`ss -ltnp`) and retry") from exc
        raise SlipwayError(f"cannot start {service.container}: {text}",
                           f"see `docker logs {service.container}`") from exc


def remove_service(client: docker.DockerClient, service: Service) -> None:
    """Remove the service's container (its volume is kept): `up --recreate` uses it."""
    container = find_container(client, service.container)
    if container is not None and (container.labels or {}).get(STACK_LABEL) == service.role:
        container.remove(force=True)


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
