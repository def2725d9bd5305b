"""The benchmark's own stack, started fresh for one run and removed afterwards, by the test kit
(tests/kit/services.py): a registry container (the image `build.py up` runs) and a Prefect server container
(the runtime base image; SQLite by default, or PostgreSQL), each on a random loopback port. Never ports
5000/4200: those belong to `make up`.

Both tools are measured against these two, so they share the registry, the server and the machine.
Every Docker object created here is named `bench-...` (or tagged `localhost:<random port>/bench-...`) and is
removed by `BenchStack.close()`, which also stops the server.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import requests
from docker.errors import ImageNotFound

from slipway.deploy.prefect_api import PAGE_SIZE  # the server's largest page
from tests.kit import services
from tests.kit.services import PrefectServer, Registry

PREFECT_BIN = Path(sys.executable).parent / "prefect"
PREFIX = "bench-"


@dataclass
class BenchStack:
    client: object  # docker.DockerClient
    workdir: Path  # temp dir: PREFECT_HOMEs, docker config, logs, the snapshot repository
    database: str = "sqlite"  # the Prefect server's database: "sqlite" | "postgres"
    registry: Registry | None = None
    server: PrefectServer | None = None
    images: set[str] = field(default_factory=set)  # image IDs built by the benchmark (removed at close)

    @property
    def registry_address(self) -> str:
        return self.registry.address

    @property
    def registry_url(self) -> str:
        return self.registry.url

    @property
    def api_url(self) -> str:
        return self.server.api_url

    # -- start / stop ------------------------------------------------------------------------------------

    def start(self) -> BenchStack:
        self.registry = services.start_registry(self.client, PREFIX.rstrip("-"))
        self.server = services.start_prefect(self.client, f"{PREFIX}{self.database}", database=self.database)
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.remove()
        if self.registry is not None:
            with contextlib.suppress(Exception):  # the images below are removed even so
                self.registry.remove()
        self.remove_images()

    # -- images ------------------------------------------------------------------------------------------

    def mine(self, tag: str) -> bool:
        return tag.startswith(PREFIX) or (self.registry is not None and tag.startswith(f"{self.registry_address}/"))

    def track(self, ref: str) -> str:
        """Remember an image the benchmark built (by ID: rebuilt tags leave the old image dangling)."""
        with contextlib.suppress(Exception):
            self.images.add(self.client.images.get(ref).id)
        return ref

    @property
    def label(self) -> str:
        """`io.slipway.bench=<workdir>`: marks the incumbent's build steps (Dockerfile.prefect's first line)."""
        return f"io.slipway.bench={self.workdir}"

    def labelled(self, image) -> bool:
        """Built on this run's marked base or by the incumbent's Dockerfile: every tag of it is this run's."""
        key, _, value = self.label.partition("=")
        return (image.labels or {}).get(key) == value

    def own_images(self) -> set[str]:
        """IDs of every image of this run that is still in the engine and still ours: carrying this run's label
        (the incumbent's build steps, intermediates included; everything built on (h)'s marked base), or a tag
        of ours (`bench-...`, the bench registry's), or recorded by `track` and carrying no one else's tag."""
        ids = {image.id for image in self.client.images.list(all=True, filters={"label": self.label})}
        ids |= {image.id for image in self.client.images.list() if any(self.mine(t) for t in image.tags)}
        for image_id in self.images - ids:
            with contextlib.suppress(ImageNotFound):
                if all(self.mine(t) for t in self.client.images.get(image_id).tags):
                    ids.add(image_id)
        return ids

    def remove_images(self, strict: bool = False) -> int:
        """Remove this run's images: first the stopped containers of them (prefect-docker builds with docker-py's
        default rm=False, which leaves one container per build step), then our tags (every tag of an image
        carrying this run's label, such as (h)'s base `slipway-base:<hash>`; only our tags of any other, such as
        the shared base the bench registry's cache tag points at), then the images left untagged. Others' tags,
        containers and images are never touched. Returns how many images were ours; `strict` (a cold run
        follows): raises when one of them is still in the engine."""
        ids = self.own_images()
        for container in self.client.containers.list(all=True):
            if container.status != "running" and container.attrs.get("Image") in ids:
                with contextlib.suppress(Exception):
                    container.remove(force=True)
        for image_id in ids:
            with contextlib.suppress(Exception):
                image = self.client.images.get(image_id)
                for tag in image.tags:
                    if self.mine(tag) or self.labelled(image):
                        self.client.images.remove(tag, noprune=True)
        left = set(ids)
        for _ in range(6):  # parents go once their children are gone
            for image_id in list(left):
                try:
                    if not self.client.images.get(image_id).tags:
                        self.client.images.remove(image_id)
                    left.discard(image_id)
                except ImageNotFound:
                    left.discard(image_id)
                except Exception:  # noqa: BLE001 - a child still exists: next pass
                    pass
            if not left:
                break
        remaining = self.own_images()
        self.images.intersection_update(remaining)
        if remaining and strict:
            held = [f"{i[7:19]} {self.client.images.get(i).tags or '(untagged)'}" for i in sorted(remaining)]
            raise RuntimeError(f"the engine still holds {len(remaining)} image(s) of this benchmark: not a cold "
                               f"run ({'; '.join(held)})")
        if remaining:
            print(f"bench: could not remove images {sorted(i[7:19] for i in remaining)}", file=sys.stderr)
        return len(ids)

    # -- environment for the two tools -------------------------------------------------------------------

    def tool_env(self) -> dict[str, str]:
        """The environment both CLIs run with: their own PREFECT_HOME and Docker config, the bench server."""
        home = self.workdir / "prefect-client"
        home.mkdir(exist_ok=True)
        docker_config = self.workdir / "docker-config"
        docker_config.mkdir(exist_ok=True)
        env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": self.api_url,
               "DOCKER_CONFIG": str(docker_config), "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "CI": "1",
               # Bytecode as an installed venv has it (pip compiles at install): with PYTHONDONTWRITEBYTECODE
               # set and no .pyc in the venv, every CLI process would compile prefect from source (~2.5 s
               # each, both tools alike). The cache lives in the bench's temp dir; the venv is not touched.
               "PYTHONPYCACHEPREFIX": str(self.workdir / "pycache")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PREFECT_API_KEY", None)
        env.pop("GITHUB_STEP_SUMMARY", None)
        return env

    # -- what the registry and the server saw ------------------------------------------------------------

    def registry_blobs(self) -> dict[str, int]:
        """Every blob the registry stores (layers, configs, manifests): digest -> bytes, read on its disk."""
        out = self.registry.container.get_wrapped_container().exec_run(
            ["find", "/var/lib/registry/docker/registry/v2/blobs", "-type", "f", "-name", "data",
             "-printf", "%s %h\\n"])
        blobs = {}
        for line in out.output.decode().splitlines():
            size, _, path = line.partition(" ")
            blobs["sha256:" + path.rsplit("/", 1)[-1]] = int(size)
        return blobs

    def manifest(self, repository: str, reference: str) -> dict:
        from slipway.registry import MANIFEST_TYPES

        resp = requests.get(f"{self.registry_url}/v2/{repository}/manifests/{reference}",
                            headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def server_log_offset(self) -> int:
        return len(self.server.logs())

    def api_writes_since(self, offset: int) -> dict[str, list[str]]:
        """What the server's access log shows from `offset`: successful requests that write ("METHOD /path").

        "deployments": writes to deployments and their schedules (POST that is not a query, PATCH, PUT,
        DELETE under /api/deployments); "all": every successful write (flows, work pools, automations...).
        Requests the server refused (e.g. 503 while SQLite is locked) changed nothing and are not counted."""
        time.sleep(0.3)  # the access line is written after the response
        text = self.server.logs()[offset:]
        writes: dict[str, list[str]] = {"all": [], "deployments": [], "refused": []}
        for method, path, status in re.findall(r'"(POST|PATCH|PUT|DELETE) (/api/\S+) HTTP/[\d.]+" (\d{3})', text):
            if method == "POST" and re.search(r"/(filter|count|paginate|schema|validate)/?(\?|$)", path):
                continue
            if not status.startswith("2"):
                writes["refused"].append(f"{method} {path} {status}")
                continue
            writes["all"].append(f"{method} {path}")
            if path.startswith("/api/deployments"):
                writes["deployments"].append(f"{method} {path}")
        return writes

    def registry_requests_since(self, since: float) -> list[dict]:
        """The registry's access log from the epoch time `since`: method, path, status, user agent."""
        import datetime

        out = []
        start = datetime.datetime.fromtimestamp(since, datetime.UTC)
        wrapped = self.registry.container.get_wrapped_container()
        for line in wrapped.logs(timestamps=True, since=int(since)).decode(errors="replace").splitlines():
            stamp, _, rest = line.partition(" ")
            when = datetime.datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00")
            match = re.search(r'"(GET|HEAD|PUT|PATCH|POST|DELETE) (\S+) HTTP/[\d.]+" (\d{3}) (\d+) "[^"]*" "([^"]*)"', rest)
            if when >= start and match:
                method, path, status, size, agent = match.groups()
                out.append({"method": method, "path": path, "status": int(status), "bytes": int(size),
                            "agent": agent})
        return out

    def deployments_state(self, pool: str) -> dict[str, dict]:
        """Every deployment in `pool` as the API holds it (in pages): "flow/name" -> {"updated", "image"}."""
        from prefect.client.orchestration import PrefectClient
        from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
        from prefect.client.schemas.sorting import DeploymentSort

        async def read() -> dict[str, dict]:
            deps: list = []
            async with PrefectClient(api=self.api_url) as client:
                while True:
                    page = await client.read_deployments(
                        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])), limit=PAGE_SIZE,
                        offset=len(deps), sort=DeploymentSort.NAME_ASC)
                    deps += page
                    if len(page) < PAGE_SIZE:
                        break
                flows = {f.id: f.name for f in await client.read_flows(limit=PAGE_SIZE)}
            return {f"{flows.get(d.flow_id, '?')}/{d.name}": {"updated": d.updated.isoformat(),
                                                                "image": (d.job_variables or {}).get("image")}
                    for d in deps}

        return anyio.run(read)

    def time_pool_read(self, pool: str, page: int = PAGE_SIZE) -> dict:
        """The server's own time to serve every deployment in `pool`: bare HTTP, one page after another, as
        much as the server does for any reader of those deployments (the floor of a plan's reads)."""
        pages, offset, start = [], 0, time.perf_counter()
        with requests.Session() as session:
            while True:
                sent = time.perf_counter()
                response = session.post(f"{self.api_url.rstrip('/')}/deployments/filter", timeout=120, json={
                    "work_pools": {"name": {"any_": [pool]}}, "sort": "NAME_ASC", "limit": page, "offset": offset})
                response.raise_for_status()
                count = len(response.json())
                pages.append({"deployments": count, "seconds": round(time.perf_counter() - sent, 3),
                              "bytes": len(response.content)})
                offset += count
                if count < page:
                    break
        return {"deployments": offset, "seconds": round(time.perf_counter() - start, 3), "pages": pages}

    def delete_deployments(self, pool: str) -> None:
        """Every deployment in `pool`, deleted eight at a time on PostgreSQL (one at a time on SQLite, which
        takes one write at a time)."""
        from prefect.client.orchestration import PrefectClient
        from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

        async def delete() -> None:
            async with PrefectClient(api=self.api_url) as client:
                limiter = anyio.CapacityLimiter(8 if self.database == "postgres" else 1)

                async def one(deployment_id) -> None:
                    async with limiter:
                        await client.delete_deployment(deployment_id)

                while True:
                    deps = await client.read_deployments(
                        work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])), limit=PAGE_SIZE)
                    if not deps:
                        return
                    async with anyio.create_task_group() as tg:
                        for d in deps:
                            tg.start_soon(one, d.id)

        anyio.run(delete)

    def create_pool(self, name: str, pool_type: str = "docker") -> None:
        subprocess.run([str(PREFECT_BIN), "work-pool", "create", name, "--type", pool_type],
                       env=self.tool_env(), check=True, capture_output=True)


def changed(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Deployments created or updated (their `updated` timestamp moved) between two `deployments_state` reads."""
    return sorted(name for name, state in after.items()
                  if name not in before or before[name]["updated"] != state["updated"])


@contextlib.contextmanager
def bench_stack(client, database: str = "sqlite"):
    services.prepare(client)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    stack = BenchStack(client, workdir, database)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)
