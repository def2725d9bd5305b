"""Fixtures for the deployment tests, all real: a Prefect server container (tests/conftest.py's
`prefect_server`: SQLite, then PostgreSQL), a registry container (Debian's docker-registry, the image
`build.py up` runs), and a release image with three tiny flows built once per session FROM the runtime base.

Each test gets its own Git repository whose slipway.yaml names its own work pools and registry repository
and whose deployments have unique names, so tests share the server and the registry without interfering.
Every Docker object created here is named `deploy-...` and removed afterwards.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import Outcome, remove_tags_containing  # noqa: F401  (re-exported for the suites)
from tests.kit.net import free_port  # noqa: F401  (the bad-input tests use it)
from tests.kit.repo import EXAMPLE_LAYOUT, REPO_ROOT, git, snapshot_repo

# The test process's own Prefect client must not read or write the user's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="deploy-prefect-home-"))

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEMPLATE = REPO_ROOT / "deploy" / "work-pools" / "kubernetes-job-template.json"


# --- the flows image -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def flows_image(docker_engine) -> str:
    """FROM the runtime base (prefect in /opt/venv), the test flows in /opt/prefect/flows. Built once."""
    from slipway.image.base import ensure_base
    from slipway.output import Reporter
    from slipway.project.config import load_project

    base = ensure_base(docker_engine, load_project(REPO_ROOT), Reporter(stream=io.StringIO()))
    tag = f"deploy-test-flows:{uuid.uuid4().hex[:10]}"
    docker_engine.images.build(path=str(FIXTURES), tag=tag, buildargs={"BASE_IMAGE": base}, rm=True,
                               pull=False)
    yield tag
    with contextlib.suppress(Exception):
        docker_engine.images.remove(tag, force=True)


# --- per-test project ----------------------------------------------------------------------------------------

class Project:
    """A throwaway repository configured for the test server and registry, and helpers around it."""

    def __init__(self, root: Path, name: str, server, registry):
        self.root = root
        self.name = name  # image name, registry repository, pool and deployment name prefix
        self.server = server
        self.registry = registry

    @property
    def docker_pool(self) -> str:
        return f"{self.name}-docker"

    @property
    def kube_pool(self) -> str:
        return f"{self.name}-kube"

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str = "change") -> str:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.root, "rev-parse", "HEAD")

    def sha(self) -> str:
        return git(self.root, "rev-parse", "HEAD")


def slipway_config(name: str, registry_address: str, api_url: str, **env_overrides) -> dict:
    registry = {"kind": "generic", "address": registry_address, "insecure": True}
    local = {"registry": registry, "repository": name, "prefect": {"api_url": api_url},
             "work_pool": {"name": f"{name}-docker", "type": "docker"},
             "job_variables": {"network_mode": "host", "image_pull_policy": "IfNotPresent"},
             "tags": ["test"]}
    kind = {"registry": registry, "repository": name, "prefect": {"api_url": api_url},
            "work_pool": {"name": f"{name}-kube", "type": "kubernetes",
                          "base_job_template": "deploy/work-pools/kubernetes-job-template.json"},
            "job_variables": {"namespace": "prefect"}}
    envs = {"local": local, "kind": kind}
    for env_name, extra in env_overrides.items():
        envs[env_name] = {**envs.get(env_name, local), **extra}
    return {"image": {"name": name, **EXAMPLE_LAYOUT}, "deployments": "deployments.yaml", "kubernetes_version": "1.30.0",
            "environments": envs}


def default_deployments(name: str) -> dict:
    return {"deployments": [
        {"name": f"{name}-hourly", "entrypoint": "flows/hello.py:hello",
         "description": "Say hello every hour.", "parameters": {"name": "slipway", "count": 2},
         "schedules": [{"cron": "0 * * * *", "timezone": "Europe/Amsterdam", "active": True},
                       {"interval": 7200, "active": False}],
         "tags": ["hello"]},
        {"name": f"{name}-manual", "entrypoint": "flows/numbers.py:numbers",
         "parameters": {"scale": 2.5}, "concurrency_limit": 1},
        {"name": f"{name}-rrule", "entrypoint": "flows/hello.py:hello",
         "schedules": [{"rrule": "FREQ=DAILY;BYHOUR=5;BYMINUTE=30", "timezone": "UTC"}]},
    ]}


@pytest.fixture
def project(tmp_path, prefect_server, registry, flows_image, docker_engine, monkeypatch):
    """A committed repository with slipway.yaml + deployments.yaml, and HEAD's image built and labelled."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # not the user's registry logins
    proj = make_project(tmp_path / "repo", prefect_server, registry, flows_image, docker_engine)
    yield proj
    remove_tags_containing(docker_engine, proj.name)


def make_project(root: Path, server, registry, flows_image: str, docker_engine, api_url: str | None = None,
                 name: str | None = None) -> Project:
    """The `project` fixture's repository for any server (`api_url`: how slipway reaches it, when not
    directly, e.g. through the kit's fault proxy). The caller removes the image tags (`remove_tags_containing`)."""
    name = name or f"deploy-t{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    proj = Project(root, name, server, registry)
    proj.write("slipway.yaml", yaml.safe_dump(slipway_config(name, registry.address, api_url or server.api_url),
                                              sort_keys=False))
    proj.write("deployments.yaml", yaml.safe_dump(default_deployments(name), sort_keys=False))
    proj.write("deploy/work-pools/kubernetes-job-template.json", TEMPLATE.read_text())
    git(root, "init", "-q", "-b", "main")
    proj.commit("release")
    proj.tag_head_image = lambda: tag_head_image(docker_engine, flows_image, proj)  # type: ignore[attr-defined]
    proj.tag_head_image()
    return proj


def tag_head_image(docker_engine, flows_image: str, proj: Project) -> str:
    """HEAD's image as `make image` leaves it: `<name>:<sha>` (and -dirty), slipway's release layer on top of
    the session's flows image — the entry points of this test's deployments.yaml probed inside it by
    slipway's own build steps. A deployments.yaml that does not even parse gets the bare flows image with
    the revision label: deploy and plan must refuse it before they look at the image."""
    from slipway.errors import SlipwayError
    from slipway.image import release_layer
    from slipway.image.build import ContentImage, finish_image, probe_code
    from slipway.output import Reporter
    from slipway.project.config import load_project
    from slipway.project.declarations import load_declarations
    from slipway.project.git import read_git_facts

    try:
        project = load_project(proj.root)
        declarations = load_declarations(project)
        files = release_layer.collect(project)
    except SlipwayError:
        return tag_bare_image(docker_engine, flows_image, proj)
    facts = read_git_facts(proj.root)
    quiet = Reporter(quiet=True)
    # The session's flows image stands for the content image; the test repositories have no code paths.
    content = ContentImage(flows_image, "", docker_engine.api.inspect_image(flows_image))
    probe = probe_code(docker_engine, project, content, [], declarations, quiet)
    finish_image(docker_engine, project, content, [], release_layer.ReleaseLayer(files, probe), facts, quiet)
    return f"{proj.name}:{facts.image_tags()[0]}"


def tag_bare_image(docker_engine, flows_image: str, proj: Project) -> str:
    """HEAD's tags on the flows image with only the revision label: an image without slipway's release layer."""
    from slipway.image.build import REVISION_LABEL
    from slipway.project.git import read_git_facts

    facts = read_git_facts(proj.root)
    tag = f"{proj.name}:{facts.image_tags()[0]}"
    context = Path(tempfile.mkdtemp(prefix="deploy-ctx-"))
    try:
        (context / "Dockerfile").write_text(f"FROM {flows_image}\nLABEL {REVISION_LABEL}={facts.sha}\n")
        image, _ = docker_engine.images.build(path=str(context), tag=tag, rm=True, pull=False)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    for extra in facts.image_tags()[1:]:
        image.tag(proj.name, extra)
    return tag


# --- running the CLI and reading Prefect ---------------------------------------------------------------------

def prefect_state(api_url: str, names: list[str]) -> dict:
    """Each deployment as Prefect holds it (None when absent): the fields the tests compare."""
    import anyio
    from prefect.client.orchestration import PrefectClient
    from prefect.exceptions import ObjectNotFound

    async def read() -> dict:
        out = {}
        async with PrefectClient(api=api_url) as client:
            for name in names:
                try:
                    d = await client.read_deployment_by_name(name)
                except ObjectNotFound:
                    out[name] = None
                    continue
                out[name] = {
                    "id": str(d.id), "updated": d.updated.isoformat(), "version": d.version,
                    "job_variables": d.job_variables, "tags": d.tags, "description": d.description,
                    "parameters": d.parameters, "pull_steps": d.pull_steps, "work_pool_name": d.work_pool_name,
                    "paused": d.paused, "labels": {k: v for k, v in (d.labels or {}).items() if k.startswith("slipway.")},
                    "schedules": sorted(
                        [{"id": str(s.id), "slug": s.slug, "active": s.active,
                          "updated": s.updated.isoformat() if getattr(s, "updated", None) else None,
                          "schedule": s.schedule.model_dump(mode="json")} for s in d.schedules],
                        key=lambda s: s["slug"] or ""),
                }
        return out

    return anyio.run(read)


def work_pool_state(api_url: str, name: str) -> dict | None:
    import anyio
    from prefect.client.orchestration import PrefectClient
    from prefect.exceptions import ObjectNotFound

    async def read():
        async with PrefectClient(api=api_url) as client:
            try:
                pool = await client.read_work_pool(name)
            except ObjectNotFound:
                return None
            return {"type": pool.type, "base_job_template": pool.base_job_template,
                    "updated": pool.updated.isoformat() if getattr(pool, "updated", None) else None}

    return anyio.run(read)


# --- real release images of this repository ------------------------------------------------------------------

BLOB_GET = re.compile(r'http\.request\.method=GET .*http\.request\.uri="/v2/[^"]+/blobs/(sha256:[0-9a-f]+)"')


class Releases:
    """A snapshot of this repository whose `local` environment points at the test registry and server."""

    def __init__(self, root, name, registry, server, docker_engine, cli):
        self.root, self.name, self.registry, self.server = root, name, registry, server
        self.docker, self.cli = docker_engine, cli

    def build_and_deploy(self, *extra: str) -> dict:
        from slipway import pipeline
        from slipway.output import Reporter
        from slipway.project.config import load_project

        pipeline.build(pipeline.Workspace(load_project(self.root), Reporter(stream=io.StringIO())))
        outcome = self.cli("deploy", "--env", "local", "--root", str(self.root), "--json", *extra)
        assert outcome.code == 0, outcome.stderr
        return outcome.json()

    def commit(self, message: str) -> str:
        git(self.root, "commit", "-q", "-am", message, date="2026-02-03T04:05:06+00:00")
        return git(self.root, "rev-parse", "HEAD")

    def names(self) -> list[str]:
        return ["extract-load/jaffle-shop", "dbt-build/jaffle-shop", "elt/daily", "elt/on-demand", "elt/weekly"]

    def state(self) -> dict:
        return prefect_state(self.server.api_url, self.names())

    def blob_gets(self) -> list[str]:
        return BLOB_GET.findall(self.registry.access_log())


@pytest.fixture
def releases(tmp_path, registry, prefect_server, docker_engine, cli, monkeypatch):
    """A snapshot of this repository releasing to the test registry and server (real release images)."""
    yield from release_repo(tmp_path, registry, prefect_server, docker_engine, cli, monkeypatch)


def release_repo(tmp_path, registry, prefect_server, docker_engine, cli, monkeypatch, name_prefix="deploy-rb"):
    """A snapshot of this repository whose `local` environment points at `registry` and `prefect_server`."""
    name = f"{name_prefix}{uuid.uuid4().hex[:8]}"
    root = snapshot_repo(tmp_path / "repo")
    config = yaml.safe_load((root / "slipway.yaml").read_text())
    config["image"]["name"] = name
    local = config["environments"]["local"]
    local["registry"]["address"] = registry.address
    local["repository"] = name
    local["prefect"]["api_url"] = prefect_server.api_url
    local["work_pool"]["name"] = f"{name}-docker"
    (root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    git(root, "commit", "-q", "-am", "point local at the test registry and server")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    yield Releases(root, name, registry, prefect_server, docker_engine, cli)
    remove_tags_containing(docker_engine, name)
    # Every snapshot declares the same deployment names (elt/daily...): the next test's project may only
    # register them once this one's are gone (slipway refuses another project's deployments).
    delete_deployments_of(prefect_server.api_url, f"{registry.address}/{name}")


def by_hand(api_url: str, method: str, path: str, body: dict) -> None:
    """A change a person makes in Prefect (the UI, the CLI), sent as Prefect's own client sends it: retried on
    the 503 a SQLite-backed server answers while one of its own services holds the write lock (a bare httpx
    write failed a CI run that way)."""
    from prefect.client.base import PrefectHttpxSyncClient

    with PrefectHttpxSyncClient(base_url=api_url) as http:
        http.request(method, path, json=body)  # raises on an error status, as Prefect's client does


def delete_deployments_of(api_url: str, project: str) -> None:
    """Delete the deployments slipway registered for `project` (its ownership label), in every environment."""
    import anyio
    from prefect.client.orchestration import PrefectClient

    async def delete():
        async with PrefectClient(api=api_url) as client:
            found, offset = [], 0
            while page := await client.read_deployments(limit=200, offset=offset):
                found += [d.id for d in page if (d.labels or {}).get("slipway.project") == project]
                offset += len(page)
            for deployment_id in found:
                await client.delete_deployment(deployment_id)

    anyio.run(delete)
