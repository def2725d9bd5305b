"""Shared fixtures: the Docker engine, the kit's service containers (tests/kit/services.py), and the release
image of the working tree.

The release image is built from a snapshot commit of the working tree (tracked and untracked, not ignored
files) in a temporary repository, so the tests exercise exactly the code under test and the tree is clean
by construction; its labels and tags name that snapshot's commit.
"""
from __future__ import annotations

import contextlib
import io
import signal
from pathlib import Path

import pytest

from tests.kit.outcome import Outcome  # noqa: F401  (re-exported for the suites)
from tests.kit.repo import REPO_ROOT, git, snapshot_repo  # noqa: F401  (re-exported for the suites)


def pytest_configure(config):
    """A suite started where SIGINT is ignored (a background job of a non-interactive shell, `nohup`) would
    pass that on to every process it starts, and a Prefect worker, which turns SIGTERM into SIGINT, would then
    never stop: SIGINT gets Python's handler here, so the processes the tests start get the default. (slipway
    itself copes with an ignored SIGINT: tests/deploy/test_release_race.py starts it that way.)"""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def docker_engine():
    """The engine, with the kit prepared (Ryuk on or off, leftovers of killed runs removed); everything the
    kit started in this run is removed at the end of it."""
    from slipway.image.engine import docker_client
    from tests.kit import services

    engine = docker_client()
    services.prepare(engine)
    yield engine
    services.remove_own(engine)


@pytest.fixture(scope="session")
def start_registry(docker_engine):
    """Start a throwaway registry: `start_registry("push", htpasswd=..., auth=...)` -> kit Registry.

    A factory rather than one registry because the suites need different ones (push: htpasswd; deploy:
    anonymous) and count requests in their own access logs. All are removed at session end."""
    from tests.kit.services import start_registry as start

    started = []

    def factory(suite: str, **options):
        registry = start(docker_engine, suite, **options)
        started.append(registry)
        return registry

    yield factory
    for registry in started:
        registry.remove()


@pytest.fixture(scope="session")
def registry(start_registry):
    """An anonymous registry on a random loopback port (the image `build.py up` runs), removed at session end."""
    return start_registry("deploy")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def prefect_server(request, docker_engine):
    """A Prefect server container (API only, no scheduler) on SQLite, then on PostgreSQL: the tests that use
    it run against both."""
    from tests.kit.services import start_prefect

    server = start_prefect(docker_engine, f"tests-{request.param}", database=request.param)
    yield server
    server.remove()


@pytest.fixture(scope="session")
def installed_slipway(tmp_path_factory):
    """slipway as users get it: this working tree's wheel in a venv of its own (tests/kit/wheel.py)."""
    from tests.kit.wheel import build_wheel, install

    where = tmp_path_factory.mktemp("wheel")
    return install(build_wheel(where / "dist"), where / "venv")


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory) -> Path:
    """A clean, committed copy of the working tree: the repository the release tests build and release."""
    return snapshot_repo(tmp_path_factory.mktemp("snapshot") / "repo")


@pytest.fixture(scope="session")
def release_image(docker_engine, snapshot) -> dict:
    """The snapshot's release image, built once per session with `build.py image`'s own code."""
    from slipway import pipeline, results
    from slipway.output import Reporter
    from slipway.project.config import load_project

    built = pipeline.build(pipeline.Workspace(load_project(snapshot), Reporter(stream=io.StringIO())))
    return {**results.image_json(built), "root": snapshot}


@pytest.fixture
def cli(capsys):
    """Run `build.py <args>` in-process (the same `main` build.py calls) and capture its outcome."""
    from slipway.cli import main

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run


def remove_tags_containing(docker_engine, name: str) -> None:
    """Remove this test's image tags and digest references (an image pulled or pushed by digest). The raw
    listing (one API call) cannot trip over an image another process removes meanwhile, as `images.list()`
    (one lookup per image) can."""
    for summary in docker_engine.api.images():
        for tag in [*(summary.get("RepoTags") or []), *(summary.get("RepoDigests") or [])]:
            if name in tag:
                with contextlib.suppress(Exception):
                    docker_engine.images.remove(tag, force=True)


DOCKER_FIXTURES = {"docker_engine", "release_image"}


def pytest_collection_modifyitems(items):
    # Tests that touch the engine are marked so `make test-fast` can leave them out.
    for item in items:
        if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)
        if "release_image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.image)
