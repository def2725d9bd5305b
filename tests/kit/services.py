"""Service containers for the integration tests and the benchmarks, started with testcontainers.

Every image is built here, on the Debian base slipway uses (nothing can be pulled on an air-gapped machine):
the registry (Debian's docker-registry, slipway/stack_images/registry/), PostgreSQL (Debian's postgresql, slipway/stack_images/postgres/)
and the Prefect server (the runtime base image, the very Prefect the flows run with). Each container starts
with a wait strategy, publishes its port on a random loopback port, and carries two kinds of labels:
testcontainers' own (`org.testcontainers*`, which its reaper Ryuk removes when the test process dies) and the
kit's (`io.slipway.kit=<host>:<pid>`, the process that started it).

Clean-up, wherever the tests run:
- where Ryuk's image can be had (GitHub's runners), Ryuk stays on and reaps what a dead process left;
- where it cannot (an air-gapped machine like this one), `prepare()` turns Ryuk off by itself, and the kit
  removes what it labelled: its own containers and networks at the end of the run (`remove_own`), and at the
  start of the next run those of processes that no longer exist (`remove_leftovers`: a run killed with
  SIGKILL). Containers of another live test run on the same machine are never touched.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from docker.errors import APIError, ImageNotFound, NotFound
from testcontainers.core.config import ConnectionMode, testcontainers_config
from testcontainers.core.container import DockerContainer
from testcontainers.core.labels import LABEL_SESSION_ID, SESSION_ID
from testcontainers.core.wait_strategies import HttpWaitStrategy, LogMessageWaitStrategy

from tests.kit.repo import REPO_ROOT

KIT_LABEL = "io.slipway.kit"  # <host>:<pid> of the process that started the container or network
ROLE_LABEL = "io.slipway.kit.role"
RYUK_PULL_SECONDS = 30
PREFECT_STARTUP_SECONDS = 240  # a first start migrates the database; slow on a busy 2-core machine

_prepared = threading.Lock()
_state: dict[str, Any] = {}


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def kit_labels(role: str) -> dict[str, str]:
    return {KIT_LABEL: owner(), ROLE_LABEL: role}


# --- session set-up and clean-up -------------------------------------------------------------------------

def prepare(engine: docker.DockerClient) -> dict[str, Any]:
    """Once per process: testcontainers' host, Ryuk on or off, leftovers of killed runs removed.
    Returns {"ryuk": bool, "removed": [names of leftovers removed]}."""
    with _prepared:
        if not _state:
            # The engine publishes ports on this machine's loopback (TC_HOST=localhost); when testcontainers
            # detects that it runs inside a container it would otherwise connect through a gateway address.
            testcontainers_config.tc_host_override = testcontainers_config.tc_host_override or "localhost"
            if testcontainers_config.connection_mode_override is None:
                testcontainers_config.connection_mode_override = ConnectionMode.docker_host
            _state["ryuk"] = configure_reaper(engine)
            _state["removed"] = remove_leftovers(engine)
        return dict(_state)


def configure_reaper(engine: docker.DockerClient) -> bool:
    """Ryuk stays on when its image is here or can be pulled (GitHub's hosted runners pull
    testcontainers/ryuk from Docker Hub); otherwise it is turned off, and the kit's own label clean-up does
    its job. An explicit choice (TESTCONTAINERS_RYUK_DISABLED, or ryuk.disabled in ~/.testcontainers.properties)
    is respected. Returns whether Ryuk is on."""
    if os.environ.get("TESTCONTAINERS_RYUK_DISABLED") or "ryuk.disabled" in testcontainers_config.tc_properties:
        return not testcontainers_config.ryuk_disabled
    image = testcontainers_config.ryuk_image
    available = True
    try:
        engine.images.get(image)
    except ImageNotFound:
        try:
            docker.from_env(timeout=RYUK_PULL_SECONDS).images.pull(image)
        except Exception:  # noqa: BLE001 - no registry, no DNS, a proxy: all mean "not here"
            available = False
    testcontainers_config.ryuk_disabled = not available
    return available


def _owner_alive(label: str | None) -> bool:
    host, _, pid = (label or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's (a shared remote engine): never ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(engine: docker.DockerClient) -> list[str]:
    """Remove the kit's containers and networks whose process is gone (a run killed halfway)."""
    return _remove(engine, lambda labels: not _owner_alive(labels.get(KIT_LABEL)))


def remove_own(engine: docker.DockerClient) -> list[str]:
    """Remove every container and network this process labelled (the end of a test run)."""
    me = owner()
    return _remove(engine, lambda labels: labels.get(KIT_LABEL) == me)


def _remove(engine: docker.DockerClient, doomed) -> list[str]:
    removed = []
    for container in engine.containers.list(all=True, filters={"label": KIT_LABEL}):
        if doomed(container.labels or {}):
            with contextlib.suppress(NotFound, APIError):
                container.remove(force=True, v=True)
                removed.append(container.name)
    for network in engine.networks.list(filters={"label": KIT_LABEL}):
        if doomed(network.attrs.get("Labels") or {}):
            with contextlib.suppress(NotFound, APIError):
                network.remove()
                removed.append(network.name)
    return removed


def _quiet():
    from slipway.output import Reporter

    return Reporter(stream=io.StringIO())


def _project():
    from slipway.project.config import load_project

    return load_project(REPO_ROOT)


def _container(engine: docker.DockerClient, image: str, role: str, name: str, **create: Any) -> DockerContainer:
    """A DockerContainer with the kit's labels (`create`: more arguments for the engine's create call)."""
    prepare(engine)
    return DockerContainer(image).with_name(name).with_kwargs(labels=kit_labels(role), **create)


def create_network(engine: docker.DockerClient, name_prefix: str):
    """A bridge network with the kit's labels (and testcontainers' session label, which Ryuk reaps)."""
    prepare(engine)
    return engine.networks.create(f"{name_prefix}-net-{uuid.uuid4().hex[:8]}",
                                  labels={**kit_labels("network"), LABEL_SESSION_ID: SESSION_ID})


# --- the registry ------------------------------------------------------------------------------------------

@dataclass
class Registry:
    """A throwaway OCI registry: where it listens, its access log, and an HTTP view of it."""

    container: DockerContainer
    port: int
    auth: tuple[str, str] | None = None

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> str:
        """Everything the registry logged: one access-log line per request, and its own messages."""
        out, err = self.container.get_logs()
        return (out + err).decode(errors="replace")

    def count(self, method: str, path_prefix: str) -> int:
        """Requests in the access log, e.g. ("POST", "/v2/<repo>/blobs/uploads/")."""
        return len(re.findall(rf'"{method} {re.escape(path_prefix)}', self.access_log()))

    def tags(self, repository: str) -> list[str]:
        resp = requests.get(f"{self.url}/v2/{repository}/tags/list", auth=self.auth, timeout=10)
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        return resp.json().get("tags") or []

    def manifest(self, repository: str, reference: str) -> dict:
        from slipway.registry import MANIFEST_TYPES

        resp = requests.get(f"{self.url}/v2/{repository}/manifests/{reference}", auth=self.auth,
                            headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def digest(self, repository: str, reference: str) -> str | None:
        from slipway.registry import MANIFEST_TYPES

        resp = requests.head(f"{self.url}/v2/{repository}/manifests/{reference}", auth=self.auth,
                             headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=10)
        return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None

    def stop_serving(self) -> None:
        """Stop the container, keeping it and its data (start_again() resumes)."""
        self.container.get_wrapped_container().stop(timeout=2)

    def start_again(self) -> None:
        """Start the stopped container again (same data, same port mapping)."""
        wrapped = self.container.get_wrapped_container()
        wrapped.start()
        _wait_http(f"{self.url}/v2/", (200, 401), 60)

    def remove(self) -> None:
        with contextlib.suppress(NotFound, APIError):
            self.container.stop()


HTPASSWD_PATH = "/etc/slipway-registry/htpasswd"


def start_registry(engine: docker.DockerClient, name_prefix: str, htpasswd: bytes | None = None,
                   auth: tuple[str, str] | None = None, port: int | None = None,
                   env: dict[str, str] | None = None, files: dict[str, bytes] | None = None) -> Registry:
    """A registry on a loopback port (`port`, else a random one); with `htpasswd` (bcrypt lines),
    authentication is required. A fixed port survives `stop()` and `start_again()`. `env` and `files` add
    REGISTRY_* settings and the files they name (token authentication: tests/kit/token_auth.py)."""
    from slipway.stack import registry_image

    image = registry_image(engine, _project(), _quiet())
    container = (_container(engine, image, "registry", f"{name_prefix}-registry-{uuid.uuid4().hex[:8]}")
                 .with_bind_ports(5000, port)
                 .waiting_for(HttpWaitStrategy(5000, "/v2/").for_status_code_matching(lambda s: s in (200, 401))
                              .with_startup_timeout(60)))
    if htpasswd is not None:
        # config.yml has no auth section: these REGISTRY_AUTH_* variables add one (the registry's own override).
        container = (container.with_env("REGISTRY_AUTH", "htpasswd")
                     .with_env("REGISTRY_AUTH_HTPASSWD_REALM", "slipway-tests")
                     .with_env("REGISTRY_AUTH_HTPASSWD_PATH", HTPASSWD_PATH)
                     .with_copy_into_container(htpasswd, HTPASSWD_PATH))
    for key, value in (env or {}).items():
        container = container.with_env(key, value)
    for path, data in (files or {}).items():
        container = container.with_copy_into_container(data, path)
    container.start()
    return Registry(container, int(container.get_exposed_port(5000)), auth)


# --- PostgreSQL and the Prefect server ---------------------------------------------------------------------

@dataclass
class Postgres:
    container: DockerContainer
    network: Any  # docker.models.networks.Network
    password: str
    host: str  # its container name: resolvable on its network

    @property
    def prefect_url(self) -> str:
        """The Prefect server's database URL, from inside the network (it carries the password: env only)."""
        return f"postgresql+asyncpg://prefect:{self.password}@{self.host}:5432/prefect"

    def remove(self) -> None:
        with contextlib.suppress(NotFound, APIError):
            self.container.stop()
        with contextlib.suppress(NotFound, APIError):
            self.network.remove()


def start_postgres(engine: docker.DockerClient, name_prefix: str) -> Postgres:
    """PostgreSQL 15 (Debian's) on its own network, reachable from it as `postgres`."""
    from slipway.stack import postgres_image

    image = postgres_image(engine, _project(), _quiet())
    network = create_network(engine, name_prefix)
    password = secrets.token_hex(16)
    name = f"{name_prefix}-postgres-{uuid.uuid4().hex[:8]}"
    container = (_container(engine, image, "postgres", name, network=network.name)
                 .with_env("POSTGRES_PASSWORD", password)
                 .with_env("POSTGRES_UNSAFE_FAST", "1")  # a throwaway database: speed over crash safety
                 .waiting_for(LogMessageWaitStrategy("database system is ready to accept connections")
                              .with_startup_timeout(90)))
    try:
        container.start()
    except BaseException:
        with contextlib.suppress(Exception):
            container.stop()
        with contextlib.suppress(Exception):
            network.remove()
        raise
    return Postgres(container, network, password, name)


@dataclass
class PrefectServer:
    """A Prefect server container: its API URL, which database it runs on, its log."""

    container: DockerContainer | None
    port: int
    database: str  # "sqlite" | "postgres"
    postgres: Postgres | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def logs(self) -> str:
        out, err = self.container.get_logs()
        return (out + err).decode(errors="replace")

    def stop(self) -> None:
        """Stop the server's container, keeping it and its database (start_again() resumes)."""
        self.container.get_wrapped_container().stop(timeout=5)

    def start_again(self) -> None:
        """Start the stopped container again, on the same database; the engine publishes it on a new port."""
        wrapped = self.container.get_wrapped_container()
        wrapped.start()
        wrapped.reload()
        self.port = int(wrapped.ports["4200/tcp"][0]["HostPort"])
        _wait_http(f"{self.api_url}/health", (200,), PREFECT_STARTUP_SECONDS)

    def remove(self) -> None:
        if self.container is not None:
            with contextlib.suppress(NotFound, APIError):
                self.container.stop()
        if self.postgres is not None:
            self.postgres.remove()


def start_prefect(engine: docker.DockerClient, name_prefix: str, database: str = "sqlite",
                  env: dict[str, str] | None = None) -> PrefectServer:
    """`prefect server start` in a container of the runtime base image, on SQLite (in the container) or on
    PostgreSQL (a second container). API only (no UI) and no scheduler: the flow runs the tests see are the
    ones they start. `env` adds or overrides server settings (PREFECT_SERVER_API_AUTH_STRING, ...)."""
    from slipway.image.base import ensure_base

    if database not in ("sqlite", "postgres"):
        raise ValueError(f"unknown database {database!r}")
    base = ensure_base(engine, _project(), _quiet())
    postgres = start_postgres(engine, name_prefix) if database == "postgres" else None
    settings = {
        "PREFECT_HOME": "/home/slipway/.prefect",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "INFO",  # uvicorn's access log: one line per request (the bench counts)
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **({"PREFECT_API_DATABASE_CONNECTION_URL": postgres.prefect_url} if postgres else {}),
        **(env or {}),
    }
    network = {"network": postgres.network.name} if postgres else {}
    container = (_container(engine, base, f"prefect-{database}", f"{name_prefix}-prefect-{uuid.uuid4().hex[:8]}",
                            **network)
                 .with_command(["prefect", "server", "start", "--host", "0.0.0.0", "--port", "4200"])
                 .with_exposed_ports(4200)
                 .waiting_for(HttpWaitStrategy(4200, "/api/health").for_status_code(200)
                              .with_startup_timeout(PREFECT_STARTUP_SECONDS)))
    for key, value in settings.items():
        container = container.with_env(key, value)
    try:
        container.start()
    except BaseException:
        with contextlib.suppress(Exception):
            container.stop()
        if postgres is not None:
            postgres.remove()
        raise
    return PrefectServer(container, int(container.get_exposed_port(4200)), database, postgres)


def _wait_http(url: str, statuses: tuple[int, ...], timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code in statuses:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer {statuses} within {timeout} s")
