"""Release history and rollback against a real registry and a real Prefect server.

The releases are real release images of this repository (built by `build.py image`'s own code from a
snapshot), so they carry the release configuration label and the build-time probe layer a rollback reads.
"""
from __future__ import annotations

import io
import re
import uuid

import pytest
import yaml

from slipway.config import load_project
from slipway.errors import SlipwayError
from slipway.git import read_git_facts
from slipway.image import build_image
from slipway.output import Reporter
from slipway.releases import resolve_tag
from tests.conftest import git, snapshot_repo
from tests.deploy.conftest import prefect_state

pytestmark = pytest.mark.docker

BLOB_GET = re.compile(r'http\.request\.method=GET .*http\.request\.uri="/v2/[^"]+/blobs/(sha256:[0-9a-f]+)"')


class Releases:
    """A snapshot of this repository whose `local` environment points at the test registry and server."""

    def __init__(self, root, name, registry, server, docker_engine, cli):
        self.root, self.name, self.registry, self.server = root, name, registry, server
        self.docker, self.cli = docker_engine, cli

    def build_and_deploy(self, *extra: str) -> dict:
        build_image(self.docker, load_project(self.root), read_git_facts(self.root), Reporter(stream=io.StringIO()))
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
        return BLOB_GET.findall(self.registry.container.logs().decode(errors="replace"))


@pytest.fixture
def releases(tmp_path, registry, prefect_server, docker_engine, cli, monkeypatch):
    name = f"deploy-rb{uuid.uuid4().hex[:8]}"
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
    for image in docker_engine.images.list():
        for tag in image.tags:
            if name in tag:
                docker_engine.images.remove(tag, force=True)


def make_release_b(rel: Releases) -> str:
    """B: the ELT flow's default child timeout changes, and a weekly deployment is added."""
    elt = rel.root / "flows" / "elt.py"
    text = elt.read_text()
    assert "child_timeout_seconds: float | None = None" in text
    elt.write_text(text.replace("child_timeout_seconds: float | None = None",
                                "child_timeout_seconds: float | None = 3600.0"))
    decls = yaml.safe_load((rel.root / "deployments.yaml").read_text())
    decls["deployments"].append({"name": "weekly", "entrypoint": "flows/elt.py:elt",
                                 "parameters": {"child_runs": "subflows"},
                                 "schedules": [{"cron": "0 7 * * 1", "timezone": "UTC"}]})
    (rel.root / "deployments.yaml").write_text(yaml.safe_dump(decls, sort_keys=False))
    return rel.commit("release B: longer child timeout, weekly ELT")


def schema_default(rel: Releases, deployment: str):
    import anyio
    from prefect.client.orchestration import PrefectClient

    async def read():
        async with PrefectClient(api=rel.server.api_url) as client:
            dep = await client.read_deployment_by_name(deployment)
            return dep.parameter_openapi_schema["properties"]["child_timeout_seconds"].get("default")

    return anyio.run(read)


def test_rollback_restores_digest_configuration_and_pauses_extra_deployments(releases, cli):
    rel = releases
    a_sha = git(rel.root, "rev-parse", "HEAD")
    a = rel.build_and_deploy()
    b_sha = make_release_b(rel)
    b = rel.build_and_deploy()
    assert a["reference"] != b["reference"]
    assert schema_default(rel, "elt/on-demand") == 3600.0

    listing = cli("releases", "--env", "local", "--root", str(rel.root), "--json")
    assert listing.code == 0, listing.stderr
    rows = listing.json()
    assert [r["revision"] for r in rows] == [b_sha, a_sha]  # newest first
    assert [r["live"] for r in rows] == [True, False]
    assert rows[1]["digest"] == a["reference"].split("@")[1]
    assert set(rows[1]["tags"]) == {a_sha, a_sha[:12]}

    gets_before = len(rel.blob_gets())
    outcome = cli("rollback", "--env", "local", "--to", a_sha[:9], "--root", str(rel.root), "--json")
    assert outcome.code == 0, outcome.stderr
    result = outcome.json()
    assert result["reference"] == a["reference"]
    assert result["revision"] == a_sha
    assert result["paused"] == ["elt/weekly"]

    state = rel.state()
    for name in rel.names()[:4]:
        assert state[name]["job_variables"]["image"] == a["reference"]
        assert state[name]["version"] == a_sha
    assert schema_default(rel, "elt/on-demand") is None  # A's flow signature, read from A's probe layer
    assert state["elt/weekly"]["job_variables"]["image"] == b["reference"]  # kept, not deleted ...

    import anyio
    from prefect.client.orchestration import PrefectClient

    async def paused(name):
        async with PrefectClient(api=rel.server.api_url) as client:
            return (await client.read_deployment_by_name(name)).paused

    assert anyio.run(paused, "elt/weekly") is True  # ... but paused
    assert anyio.run(paused, "elt/daily") is False

    # No image layer was pulled: at most the config blob and the small last layer of A were read.
    new_gets = rel.blob_gets()[gets_before:]
    manifest_layers = rel.registry.manifest_layers(rel.name, a["reference"].split("@")[1])
    assert set(new_gets) <= {manifest_layers["config"], manifest_layers["layers"][-1]}, new_gets

    after = cli("releases", "--env", "local", "--root", str(rel.root), "--json").json()
    assert [r["live"] for r in after] == [False, True]


def test_downgrade_is_refused_without_rollback_flag(releases, cli):
    rel = releases
    a_sha = git(rel.root, "rev-parse", "HEAD")
    rel.build_and_deploy()
    make_release_b(rel)
    rel.build_and_deploy()
    before = rel.state()

    git(rel.root, "checkout", "-q", a_sha)  # a stale CI job for commit A finishing late
    outcome = cli("deploy", "--env", "local", "--root", str(rel.root))
    assert outcome.code == 1
    assert "downgrade" in outcome.error and "make rollback" in outcome.error
    assert rel.state() == before


def test_rollback_to_an_unknown_release_changes_nothing(releases, cli):
    rel = releases
    rel.build_and_deploy()
    before = rel.state()
    for ref in ("v404", "deadbeef"):
        outcome = cli("rollback", "--env", "local", "--to", ref, "--root", str(rel.root))
        assert outcome.code == 1
        assert f"no release '{ref}'" in outcome.error and "make releases" in outcome.error
    assert rel.state() == before


def test_releases_with_the_registry_down_is_one_clear_line(releases, cli):
    rel = releases
    config = yaml.safe_load((rel.root / "slipway.yaml").read_text())
    config["environments"]["local"]["registry"]["address"] = "127.0.0.1:9"  # discard port: nothing listens
    (rel.root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for verb in (["releases"], ["rollback", "--to", "v1"]):
        outcome = cli(*verb, "--env", "local", "--root", str(rel.root))
        assert outcome.code == 1
        assert outcome.error.startswith("error: ") and "127.0.0.1:9" in outcome.error


@pytest.mark.parametrize("ref, expected", [
    ("v1.2", "v1.2"), ("release/1.0", "release-1.0"), ("abcdef", "abcdef" + "0" * 34),
])
def test_resolve_tag(ref, expected):
    tags = ["v1.2", "release-1.0", "abcdef" + "0" * 34, "abcdef000000", "123456" + "0" * 34]
    assert resolve_tag(tags, ref, "repo") == expected


def test_resolve_tag_ambiguous_short_sha():
    tags = ["abc123" + "0" * 34, "abc124" + "1" * 34]
    with pytest.raises(SlipwayError, match="matches 2 releases"):
        resolve_tag(tags, "abc12", "repo")
