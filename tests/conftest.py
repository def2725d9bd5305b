"""Shared fixtures: a scratch Git repository, the Docker engine, throwaway registries, and the release image of
the working tree.

The release image is built from a snapshot commit of the working tree (tracked and untracked, not ignored
files) in a temporary repository, so the tests exercise exactly the code under test and the tree is clean
by construction; its labels and tags name that snapshot's commit.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

GIT_ENV = {
    "GIT_AUTHOR_NAME": "slipway tests", "GIT_AUTHOR_EMAIL": "tests@slipway.invalid",
    "GIT_COMMITTER_NAME": "slipway tests", "GIT_COMMITTER_EMAIL": "tests@slipway.invalid",
    "GIT_AUTHOR_DATE": "2026-01-02T03:04:05+00:00", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05+00:00",
}


def git(cwd: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **GIT_ENV}
    if date:  # a later commit, for tests that order releases by commit time
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def snapshot_repo(dest: Path, source: Path = REPO_ROOT) -> Path:
    """Copy the working tree's files (tracked + untracked, not ignored) into a fresh repo with one commit."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=source, check=True, capture_output=True).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = source / rel
        if not src.is_file():  # deleted in the working tree but still in the index
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "snapshot")
    return dest


@pytest.fixture(scope="session")
def docker_engine():
    from slipway.engine import docker_client
    return docker_client()


@pytest.fixture(scope="session")
def start_registry(docker_engine):
    """Start a throwaway registry: `start_registry("push", environment=..., files=...)` -> ScratchRegistry.

    slipway.stack.start_scratch_registry does the work (the benchmark uses it too): the image `build.py up`
    runs, on a random 127.0.0.1 port, healthy when returned. A factory rather than one registry because the
    suites need different ones (push: htpasswd authentication; deploy: anonymous) and count requests in
    their own access logs. Containers are named `<suite>-registry-<random>` and all removed at session end.
    """
    from slipway.config import load_project
    from slipway.output import Reporter
    from slipway.stack import start_scratch_registry

    started = []

    def start(suite: str, environment: dict[str, str] | None = None, files: dict[str, bytes] | None = None):
        registry = start_scratch_registry(
            docker_engine, load_project(REPO_ROOT), Reporter(stream=io.StringIO()),
            name=f"{suite}-registry-{uuid.uuid4().hex[:8]}", labels={"io.slipway.test": suite},
            environment=environment, files=files)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.remove()


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory) -> Path:
    """A clean, committed copy of the working tree: the repository the release tests build and release."""
    return snapshot_repo(tmp_path_factory.mktemp("snapshot") / "repo")


@pytest.fixture(scope="session")
def release_image(docker_engine, snapshot) -> dict:
    """The snapshot's release image, built once per session with `build.py image`'s own code."""
    from slipway.config import load_project
    from slipway.git import read_git_facts
    from slipway.image import build_image
    from slipway.output import Reporter

    facts = read_git_facts(snapshot)
    result = build_image(docker_engine, load_project(snapshot), facts, Reporter(quiet=False))
    return {**result, "root": snapshot}


DOCKER_FIXTURES = {"docker_engine", "release_image"}


def pytest_collection_modifyitems(items):
    # Tests that touch the engine are marked so `make test-fast` can leave them out.
    for item in items:
        if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)
        if "release_image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.image)
