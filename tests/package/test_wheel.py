"""slipway from its wheel: built with the standard tooling, installed into a venv of its own, run on a
repository that is not this one (a clone of a copy of the example, with GitHub's Python .gitignore), against
the kit's real registry and Prefect server: release pinned by digest, a code-only release, a rollback."""
from __future__ import annotations

import uuid

import pytest
import yaml

from slipway import __version__
from tests.deploy.conftest import prefect_state
from tests.kit.files import PYTHON_GITIGNORE
from tests.kit.repo import change_a_flow, git, snapshot_repo

FLOWS = ["extract-load", "dbt-build", "elt", "elt"]  # the example's deployments.yaml, in order


def test_the_wheel_is_the_tool_only_and_its_command_says_its_version(installed_slipway, tmp_path):
    files = installed_slipway.wheel_files()
    tops = {name.split("/")[0] for name in files}
    assert tops == {"slipway", f"slipway-{__version__}.dist-info"}, tops  # no example, tests or bench
    assert "slipway/image/bootstrap-base-os.sh" in files  # the air-gapped base needs no repository file
    assert installed_slipway.wheel.name == f"slipway-{__version__}-py3-none-any.whl"

    version = installed_slipway.run("--version", cwd=tmp_path)
    assert (version.code, version.stdout.strip()) == (0, f"slipway {__version__}")
    usage = installed_slipway.run("plan", "--bogus", cwd=tmp_path)
    assert usage.code == 2 and usage.stderr.strip() == ("error: unrecognized arguments: --bogus; "
                                                        "see `slipway plan --help`")
    # Outside any project: one line, no traceback.
    nowhere = installed_slipway.run("plan", "--env", "local", cwd=tmp_path)
    assert nowhere.code == 1 and nowhere.stderr.startswith("error: slipway.yaml not found"), nowhere.stderr
    assert "Traceback" not in nowhere.stderr


@pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)
def test_the_installed_command_releases_a_fresh_clone_and_rolls_back(
        installed_slipway, release_image, registry, prefect_server, docker_engine, tmp_path):
    # The team's repository: the example, its own .gitignore extended with GitHub's Python template, pushed
    # to an origin; the release runs in a fresh clone of it.
    name = f"wheel-{uuid.uuid4().hex[:8]}"
    origin = snapshot_repo(tmp_path / "origin")
    config = yaml.safe_load((origin / "slipway.yaml").read_text())
    config["image"]["name"] = name  # the engine's images of this test are this test's alone
    local = config["environments"]["local"]
    local["registry"]["address"], local["repository"] = registry.address, name
    local["prefect"]["api_url"] = prefect_server.api_url
    local["work_pool"]["name"] = f"{name}-docker"
    (origin / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # Deployment names of its own: the session's server may hold the example's from other suites.
    declarations = yaml.safe_load((origin / "deployments.yaml").read_text())
    for declared in declarations["deployments"]:
        declared["name"] = f"{declared['name']}-{name}"
    (origin / "deployments.yaml").write_text(yaml.safe_dump(declarations, sort_keys=False))
    names = [f"{flow}/{d['name']}" for flow, d in zip(FLOWS, declarations["deployments"], strict=True)]
    (origin / ".gitignore").write_text((origin / ".gitignore").read_text() + PYTHON_GITIGNORE.read_text())
    git(origin, "commit", "-q", "-am", "the team's release settings and .gitignore")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    env = {"DOCKER_CONFIG": str(tmp_path / "docker-config")}

    try:
        first = installed_slipway.run("release", "--env", "local", "--json", cwd=clone, env=env)
        assert first.code == 0, first.stderr
        pinned = first.json()["deploy"]["reference"]
        assert pinned.startswith(f"{registry.address}/{name}@sha256:")
        assert registry.digest(name, git(clone, "rev-parse", "HEAD")) == pinned.split("@")[1]
        assert {d["job_variables"]["image"] for d in prefect_state(prefect_server.api_url, names).values()} == {pinned}

        change_a_flow(clone, "from the wheel")
        second = installed_slipway.run("release", "--env", "local", "--json", cwd=clone, env=env)
        assert second.code == 0, second.stderr
        assert "is up to date (no build)" in second.stderr  # a code-only release: no docker build
        assert second.json()["deploy"]["reference"] != pinned

        back = installed_slipway.run("rollback", "--env", "local", "--json", cwd=clone, env=env)
        assert back.code == 0, back.stderr
        assert back.json()["reference"] == pinned
        assert {d["job_variables"]["image"] for d in prefect_state(prefect_server.api_url, names).values()} == {pinned}
    finally:
        from tests.conftest import remove_tags_containing
        from tests.deploy.conftest import delete_deployments_of

        remove_tags_containing(docker_engine, name)
        delete_deployments_of(prefect_server.api_url, f"{registry.address}/{name}")
