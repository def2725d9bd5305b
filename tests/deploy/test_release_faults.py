"""A write that fails in the middle of an apply: one `error:` line saying what was written and what was not,
a non-zero exit, no traceback, and a rerun that finishes the release.

Both against a real Prefect server, reached through the kit's proxy (tests/kit/proxy.py), which forwards
every request unchanged except one:
- the server answers 500 to one deployment write: the proxy gives that answer instead of the server (a real
  server does not fail on cue);
- the server stops in the middle of the apply: when the second deployment write arrives, the proxy stops
  the real server's container (`docker stop`) before forwarding it; from then on nothing answers. Started
  again, the server has forgotten the release lease the stopped run held (Prefect keeps leases in memory)
  while its database still counts the slot: the rerun frees it (deploy/lease.py) and finishes.
"""
from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.conftest import make_project, prefect_state, remove_tags_containing, slipway_config
from tests.kit.proxy import FaultProxy, Rule

CREATE_DEPLOYMENT = r"/api/deployments/"


def names(project) -> list[str]:
    return [f"deploy-test-hello/{project.name}-hourly", f"deploy-test-numbers/{project.name}-manual",
            f"deploy-test-hello/{project.name}-rrule"]


def through(project, proxy: FaultProxy) -> None:
    """Point the project's `local` environment at the proxy (a committed change, HEAD's image rebuilt)."""
    config = slipway_config(project.name, project.registry.address, f"{proxy.url}/api")
    project.write("slipway.yaml", yaml.safe_dump(config, sort_keys=False))
    project.commit("through the test proxy")
    project.tag_head_image()


def assert_one_line_saying_what_was_written(outcome, cause: str, written: int) -> str:
    assert outcome.code == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr and "Exception Group" not in outcome.stderr, outcome.stderr
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, outcome.stderr
    line = errors[0]
    assert f"deploy to 'local' stopped after writing {written} of 3 changed deployment(s)" in line, line
    assert re.search(cause, line), line
    assert "not written: " in line and "run the same command again" in line, line
    return line


def test_a_write_the_server_refuses_is_one_line_and_a_rerun_finishes(project, cli):
    proxy = FaultProxy(project.server.api_url.removesuffix("/api"))
    try:
        through(project, proxy)
        proxy.rules = [Rule("POST", CREATE_DEPLOYMENT, nth=2, status=500)]
        failed = cli("deploy", "--env", "local", "--root", str(project.root))
        assert proxy.fired()
        # One writer (SQLite) stops at the refusal: 1 written. Several (PostgreSQL, `auto`) let the writes under
        # way finish: 2. Either way the line counts what the server holds and names what it lacks.
        state = prefect_state(project.server.api_url, names(project))
        missing = [name for name, dep in state.items() if dep is None]
        assert len(missing) == {"sqlite": 2, "postgres": 1}[project.server.database], state
        line = assert_one_line_saying_what_was_written(
            failed, r"Prefect refused to create deployment [\w/-]+: HTTP 500: .*injected by the test proxy",
            written=3 - len(missing))
        assert all(name in line for name in missing)

        rerun = cli("deploy", "--env", "local", "--json", "--root", str(project.root))
        assert rerun.code == 0, rerun.stderr
        assert sorted(d["name"] for d in rerun.json()["deployments"] if d["action"] == "created") == sorted(missing)
        assert {d["version"] for d in prefect_state(project.server.api_url, names(project)).values()} \
            == {project.sha()}
        again = cli("plan", "--env", "local", "--json", "--root", str(project.root))
        assert {d["action"] for d in again.json()["deployments"]} == {"unchanged"}
    finally:
        proxy.close()


@pytest.fixture
def own_server(docker_engine):
    """A Prefect server for this test alone (it is stopped and started again)."""
    from tests.kit.services import start_prefect

    server = start_prefect(docker_engine, "deploy-stop", database="sqlite")
    yield server
    server.remove()


def test_a_server_stopped_mid_apply_is_one_line_and_a_rerun_finishes(own_server, registry, flows_image,
                                                                     docker_engine, tmp_path, monkeypatch, cli):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    proxy = FaultProxy(own_server.api_url.removesuffix("/api"))
    project = make_project(tmp_path / "repo", own_server, registry, flows_image, docker_engine,
                           api_url=f"{proxy.url}/api")
    try:
        proxy.rules = [Rule("POST", CREATE_DEPLOYMENT, nth=2, before=own_server.stop)]
        failed = cli("deploy", "--env", "local", "--root", str(project.root))
        assert proxy.fired()
        assert_one_line_saying_what_was_written(
            failed, r"Prefect did not answer the request to create deployment [\w/-]+ \(RemoteProtocolError",
            written=1)  # a SQLite-backed server: one write at a time

        own_server.start_again()
        proxy.upstream = own_server.api_url.removesuffix("/api")
        state = prefect_state(own_server.api_url, names(project))
        assert sum(dep is not None for dep in state.values()) == 1

        rerun = cli("deploy", "--env", "local", "--root", str(project.root))
        assert rerun.code == 0, rerun.stderr
        assert "freed the release lease of 'local'" in rerun.stderr  # the slot the restart orphaned
        assert rerun.stdout.splitlines()[-1] == "2 created, 1 unchanged"
        assert {d["version"] for d in prefect_state(own_server.api_url, names(project)).values()} \
            == {project.sha()}
    finally:
        proxy.close()
        remove_tags_containing(docker_engine, project.name)
