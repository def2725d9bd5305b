"""An upgrade keeps old releases rollback-able: a real release in release format 1 (what slipway 0.3 wrote),
pushed to the real registry and deployed to the real Prefect server, then a format-2 release on top; this
slipway lists both, rolls back to the format-1 one, plans the next deploy against it and promotes it.

Format 1 is written here by this slipway's own writer with format=1; tests/unit/test_release_format.py shows
that it holds, entry for entry (names, modes, bytes), what slipway 0.3 wrote (a fixture made by that code).
"""
from __future__ import annotations

import functools

import pytest
import requests
import yaml

from slipway.image import release_layer
from tests.deploy.conftest import Releases
from tests.kit.repo import git

pytestmark = pytest.mark.docker


def config_labels(rel: Releases, repository: str, reference: str) -> dict:
    manifest = rel.registry.manifest(repository, reference)
    blob = requests.get(f"{rel.registry.url}/v2/{repository}/blobs/{manifest['config']['digest']}", timeout=10)
    blob.raise_for_status()
    return blob.json()["config"].get("Labels") or {}


@pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)  # the format is the registry's side
def test_a_release_an_older_slipway_made_is_listed_rolled_back_planned_and_promoted(releases, cli, monkeypatch):
    rel = releases
    with monkeypatch.context() as older:
        older.setattr("slipway.pipeline.ReleaseLayer",
                      functools.partial(release_layer.ReleaseLayer, format=1, made_by=None))
        a = rel.build_and_deploy()
    a_sha, a_digest = git(rel.root, "rev-parse", "HEAD"), a["reference"].split("@")[1]
    assert release_layer.FORMAT_LABEL not in config_labels(rel, rel.name, a_digest)  # format 1 had no label

    flow = rel.root / "flows" / "elt.py"
    flow.write_text(flow.read_text() + "\n# release B, by this slipway\n")
    b_sha = rel.commit("release B")
    b = rel.build_and_deploy()
    b_labels = config_labels(rel, rel.name, b["reference"].split("@")[1])
    assert b_labels[release_layer.FORMAT_LABEL] == str(release_layer.FORMAT)

    root = ("--root", str(rel.root))
    listing = cli("releases", "--env", "local", *root, "--json")
    assert listing.code == 0, listing.stderr
    assert [r["revision"] for r in listing.json()["releases"]] == [b_sha, a_sha]

    back = cli("rollback", "--env", "local", "--to", a_sha[:12], *root, "--json")
    assert back.code == 0, back.stderr
    assert back.json()["reference"] == a["reference"]
    assert {d["job_variables"]["image"] for d in rel.state().values() if d} == {a["reference"]}

    plan = cli("plan", "--env", "local", *root, "--json")  # HEAD (B) against the live format-1 release
    assert plan.code == 0, plan.stderr
    assert b["reference"] in plan.stdout

    # promote: the format-1 release, live in local, copied by digest into another repository.
    config = yaml.safe_load((rel.root / "slipway.yaml").read_text())
    config["environments"]["copy"] = {**config["environments"]["local"], "repository": f"{rel.name}-copy"}
    (rel.root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    rel.commit("a second environment")
    promoted = cli("promote", "--from", "local", "--to", "copy", *root, "--json")
    assert promoted.code == 0, promoted.stderr
    assert rel.registry.digest(f"{rel.name}-copy", a_sha) == a_digest
