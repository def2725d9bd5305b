"""Release history and rollback against a real registry and a real Prefect server.

The releases are real release images of this repository (built by `build.py image`'s own code from a
snapshot), so they carry the release configuration label and the build-time probe layer a rollback reads.
"""
from __future__ import annotations

import pytest
import yaml

from slipway.errors import SlipwayError
from slipway.registry.releases import resolve_tag
from tests.deploy.conftest import Releases
from tests.kit.repo import git

pytestmark = pytest.mark.docker

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
    rows = listing.json()["releases"]
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
    manifest = rel.registry.manifest(rel.name, a["reference"].split("@")[1])
    assert set(new_gets) <= {manifest["config"]["digest"], manifest["layers"][-1]["digest"]}, new_gets

    after = cli("releases", "--env", "local", "--root", str(rel.root), "--json").json()["releases"]
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
    assert "downgrade" in outcome.error and "slipway rollback --env local --to" in outcome.error
    assert rel.state() == before


def test_rollback_to_an_unknown_release_changes_nothing(releases, cli):
    rel = releases
    rel.build_and_deploy()
    before = rel.state()
    for ref in ("v404", "deadbeef"):
        outcome = cli("rollback", "--env", "local", "--to", ref, "--root", str(rel.root))
        assert outcome.code == 1
        assert f"no release '{ref}'" in outcome.error and "slipway releases --env" in outcome.error
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
