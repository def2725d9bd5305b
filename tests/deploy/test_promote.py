"""Build once, deploy everywhere, against real Prefect servers and real registries:

- a release deployed to `local` is promoted (by default: the one live there) into a second environment with
  its own registry and its own Prefect server, then `deploy --env prod` pins that very digest there without
  an engine; `releases --env prod` says where each release came from; `rollback` works on promoted releases;
- a release job re-run on a clean machine (no image of the release in the engine) for a commit whose image
  the registry already holds deploys the held digest without building and without a single engine call.
"""
from __future__ import annotations

import contextlib
import io

import docker
import pytest
import yaml

from tests.deploy.conftest import prefect_state, remove_tags_containing, slipway_config
from tests.kit.repo import git

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def prod_registry(start_registry):
    return start_registry("deploy-prod")


@pytest.fixture(scope="module")
def prod_server(docker_engine):
    """prod's own Prefect server: deployment names are global in a server, so prod cannot share local's."""
    from tests.kit.services import start_prefect

    server = start_prefect(docker_engine, "deploy-prod", database="sqlite")
    yield server
    server.remove()


@pytest.fixture
def no_engine(monkeypatch):
    """`with no_engine(): ...`: inside, any attempt to reach a Docker engine fails the test."""
    @contextlib.contextmanager
    def blocked():
        def refuse(*args, **kwargs):
            raise AssertionError("a Docker engine call was made")

        with monkeypatch.context() as patch:
            patch.setattr(docker.api.client.APIClient, "__init__", refuse)
            patch.setattr("slipway.pipeline.docker_client", refuse)
            yield

    return blocked


def add_prod(project, prod_registry, prod_server) -> None:
    """slipway.yaml gains `prod`: its own registry, Prefect server and work pool. Committed, image rebuilt."""
    config = slipway_config(project.name, project.registry.address, project.server.api_url)
    config["environments"]["prod"] = {
        **config["environments"]["local"],
        "registry": {"kind": "generic", "address": prod_registry.address, "insecure": True},
        "prefect": {"api_url": prod_server.api_url},
        "work_pool": {"name": f"{project.name}-prod", "type": "docker"},
        "tags": ["prod"],
    }
    project.write("slipway.yaml", yaml.safe_dump(config, sort_keys=False))
    project.commit("add prod")
    project.tag_head_image()


def names(project) -> list[str]:
    return [f"deploy-test-hello/{project.name}-hourly", f"deploy-test-numbers/{project.name}-manual",
            f"deploy-test-hello/{project.name}-rrule"]


def test_a_promoted_release_is_deployed_and_rolled_back_in_the_destination_without_an_engine(
        project, cli, prod_registry, prod_server, no_engine):
    add_prod(project, prod_registry, prod_server)
    root = str(project.root)
    first_sha = project.sha()
    first = cli("deploy", "--env", "local", "--json", "--root", root)
    assert first.code == 0, first.stderr
    digest = first.json()["reference"].split("@")[1]

    with no_engine():
        promoted = cli("promote", "--from", "local", "--to", "prod", "--json", "--root", root)
        assert promoted.code == 0, promoted.stderr
        deployed = cli("deploy", "--env", "prod", "--json", "--root", root)
        assert deployed.code == 0, deployed.stderr

    assert promoted.json()["digest"] == digest  # the release live in local, by default
    assert promoted.json()["tags"] == [first_sha, first_sha[:12]]
    reference = f"{prod_registry.address}/{project.name}@{digest}"
    assert promoted.json()["reference"] == deployed.json()["reference"] == reference
    assert "is in the registry: nothing to push" in deployed.stderr
    state = prefect_state(prod_server.api_url, names(project))
    assert {dep["job_variables"]["image"] for dep in state.values()} == {reference}
    assert all("prod" in dep["tags"] and dep["version"] == first_sha for dep in state.values())

    # A second release goes the same way; then prod rolls back to the first, promoted, release.
    project.write("deployments.yaml", project.root.joinpath("deployments.yaml").read_text().replace(
        "Say hello every hour.", "Say hello every hour, again."))
    git(project.root, "add", "-A")
    git(project.root, "commit", "-q", "-m", "second release", date="2026-02-03T04:05:06+00:00")  # newer
    second_sha = project.sha()
    project.tag_head_image()
    second = cli("deploy", "--env", "local", "--json", "--root", root)
    assert second.code == 0, second.stderr
    with no_engine():
        again = cli("promote", "--from", "local", "--to", "prod", "--json", "--root", root)
        assert again.code == 0, again.stderr
        assert cli("deploy", "--env", "prod", "--root", root).code == 0
        listing = cli("releases", "--env", "prod", "--json", "--root", root)
        rolled = cli("rollback", "--env", "prod", "--to", first_sha[:12], "--json", "--root", root)

    assert listing.code == 0, listing.stderr
    rows = listing.json()["releases"]
    assert [r["revision"] for r in rows] == [second_sha, first_sha]
    assert [r["live"] for r in rows] == [True, False]
    local_repository = f"{project.registry.address}/{project.name}"
    assert [(r["promoted_from"]["environment"], r["promoted_from"]["repository"]) for r in rows] == \
        [("local", local_repository)] * 2
    human = cli("releases", "--env", "prod", "--root", root)
    assert human.stdout.splitlines()[0].split()[:5] == ["revision", "created", "digest", "origin", "tags"]
    assert "from local" in human.stdout.splitlines()[1]
    assert rolled.code == 0, rolled.stderr
    assert rolled.json()["reference"] == reference
    after = prefect_state(prod_server.api_url, names(project))
    assert {dep["job_variables"]["image"] for dep in after.values()} == {reference}


def test_promote_refuses_a_release_that_is_not_live_in_the_source(project, cli, prod_registry, prod_server):
    add_prod(project, prod_registry, prod_server)
    root = str(project.root)
    live = cli("deploy", "--env", "local", "--json", "--root", root)
    assert live.code == 0, live.stderr
    live_sha = project.sha()
    project.commit("a release pushed but never deployed")
    project.tag_head_image()
    assert cli("push", "--env", "local", "--root", root).code == 0
    before = prod_registry.tags(project.name)

    refused = cli("promote", "--from", "local", "--to", "prod", "--ref", project.sha()[:12], "--root", root)

    assert refused.code == 1
    digest = live.json()["reference"].split("@")[1]
    assert refused.error.startswith(f"error: release {project.sha()[:12]} (sha256:") and \
        f"is not live in 'local' (it runs {digest[:19]}); promote what 'local' runs (no TAG), deploy it there " \
        "first, or pass --any (ANY=1)" in refused.error
    assert prod_registry.tags(project.name) == before == []
    # --any takes it anyway; by default the live one goes.
    assert cli("promote", "--from", "local", "--to", "prod", "--ref", project.sha(), "--any", "--root", root).code == 0
    default = cli("promote", "--from", "local", "--to", "prod", "--json", "--root", root)
    assert default.code == 0 and default.json()["tags"] == [live_sha, live_sha[:12]]


def test_a_release_rerun_on_a_clean_machine_deploys_the_held_digest_without_the_engine(
        project, cli, docker_engine, no_engine):
    from slipway import pipeline
    from slipway.output import Reporter
    from slipway.project.config import load_project
    from slipway.target import open_target

    root = str(project.root)
    project_config = load_project(project.root)
    # The first attempt pushed HEAD's image, then its runner died before registering anything.
    pushed = pipeline.push(pipeline.Workspace(project_config, Reporter(stream=io.StringIO())),
                           open_target(project_config, "local"))
    remove_tags_containing(docker_engine, project.name)  # the re-run's runner: no image of the release
    assert not [t for s in docker_engine.api.images() for t in s.get("RepoTags") or [] if project.name in t]
    uploads = project.registry.count("POST", f"/v2/{project.name}/blobs/uploads/")
    manifest_puts = project.registry.count("PUT", f"/v2/{project.name}/manifests/")

    with no_engine():
        rerun = cli("release", "--env", "local", "--json", "--root", root)

    assert rerun.code == 0, rerun.stderr
    assert rerun.json()["image"] is None  # nothing built
    assert rerun.json()["deploy"]["reference"] == pushed.reference
    assert [d["action"] for d in rerun.json()["deploy"]["deployments"]] == ["created"] * 3
    assert "already holds HEAD's release" in rerun.stderr
    state = prefect_state(project.server.api_url, names(project))
    assert {dep["job_variables"]["image"] for dep in state.values()} == {pushed.reference}
    assert project.registry.count("POST", f"/v2/{project.name}/blobs/uploads/") == uploads  # nothing pushed
    assert project.registry.count("PUT", f"/v2/{project.name}/manifests/") == manifest_puts
