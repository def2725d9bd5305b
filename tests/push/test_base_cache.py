"""The runtime base image cached in the environment's registry (build/base.py), against the real htpasswd test
registry and the real engine: built and pushed once, pulled by a machine that lacks it (no build), read
from the engine when present (no registry call), and built locally with a warning when the cache cannot be
reached. The base here is a one-line Dockerfile.base on the kit's OS base, unique to each test (a marker
file), so removing it removes no one else's image and the pull really fetches its layer.
"""
from __future__ import annotations

import contextlib
import io
import uuid

import docker
import pytest
import yaml

from slipway.build.base import INPUTS_LABEL, cache_key, ensure_base, ensure_os_base
from slipway.errors import SlipwayError
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.target import open_target
from tests.kit.net import free_port
from tests.kit.repo import REPO_ROOT, git
from tests.push.conftest import PASSWORD, USER

pytestmark = pytest.mark.docker


@pytest.fixture
def base_repo(tmp_path, registry, docker_engine, monkeypatch):
    """A repository whose base is FROM the kit's OS base plus one unique file; `local` is the htpasswd registry."""
    monkeypatch.delenv("SLIPWAY_BASE_IMAGE", raising=False)
    os_base = ensure_os_base(docker_engine, load_project(REPO_ROOT), Reporter(stream=io.StringIO()))
    name = f"push-base-{uuid.uuid4().hex[:10]}"
    root = tmp_path / "repo"
    (root / "requirements").mkdir(parents=True)
    (root / "requirements" / "runtime.txt").write_text(f"# the lock of {name}\n")
    (root / "Dockerfile.base").write_text(f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {name} > /base-marker\n")
    common = {"repository": name, "prefect": {"api_url": "http://127.0.0.1:9/api"},
              "work_pool": {"name": "p", "type": "docker"}}
    secured = {"kind": "generic", "address": registry.address, "insecure": True,
               "username_env": "PUSH_TEST_USER", "password_env": "PUSH_TEST_PASSWORD"}
    (root / "slipway.yaml").write_text(yaml.safe_dump({
        "image": {"name": name}, "base": {"dockerfile": "Dockerfile.base", "image": os_base},
        "environments": {"local": {"registry": secured, **common},
                         "nowhere": {"registry": {**secured, "address": f"localhost:{free_port()}"}, **common}}},
        sort_keys=False))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    monkeypatch.setenv("PUSH_TEST_USER", USER)
    monkeypatch.setenv("PUSH_TEST_PASSWORD", PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    yield root
    for summary in docker_engine.api.images(filters={"label": f"{INPUTS_LABEL}"}):
        if any(name in tag for tag in summary.get("RepoTags") or []) or \
                (summary.get("Labels") or {}).get(INPUTS_LABEL) == cache_key(load_project(root)):
            with contextlib.suppress(docker.errors.APIError):
                docker_engine.images.remove(summary["Id"], force=True)
    for summary in docker_engine.api.images():
        if any(name in tag for tag in summary.get("RepoTags") or []):
            with contextlib.suppress(docker.errors.APIError):
                docker_engine.images.remove(summary["Id"], force=True)


def test_the_base_is_built_once_pushed_and_then_pulled_by_a_machine_without_it(base_repo, registry, docker_engine,
                                                                              monkeypatch):
    project = load_project(base_repo)
    cache = open_target(project, "local").base_cache()
    name = project.config.image.name
    assert cache.repository == f"{name}/slipway-base"  # the default cache repository
    key = cache_key(project)
    first = io.StringIO()

    reference = ensure_base(docker_engine, project, Reporter(stream=first), cache)

    assert reference == f"{registry.address}/{name}/slipway-base:{key}"
    assert "building base image" in first.getvalue()
    assert registry.tags(f"{name}/slipway-base") == [key]
    built = docker_engine.images.get(reference)
    assert built.labels[INPUTS_LABEL] == key

    # A fresh machine: the engine has no image of this base, and may not build one.
    docker_engine.images.remove(built.id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_engine.images.get(built.id)

    def no_build(*args, **kwargs):
        raise AssertionError("the base was built although the cache holds it")

    monkeypatch.setattr(docker.api.client.APIClient, "build", no_build)
    second = io.StringIO()
    assert ensure_base(docker_engine, project, Reporter(stream=second), open_target(project, "local").base_cache()) \
        == reference
    assert "pulled base image" in second.getvalue()
    assert docker_engine.images.get(reference).id == built.id  # the very image the first machine built

    # Present in the engine: not even the registry is asked.
    reads = registry.count("HEAD", f"/v2/{name}/slipway-base/") + registry.count("GET", f"/v2/{name}/slipway-base/")
    third = io.StringIO()
    assert ensure_base(docker_engine, project, Reporter(stream=third), open_target(project, "local").base_cache()) \
        == reference
    assert "is up to date" in third.getvalue()
    assert registry.count("HEAD", f"/v2/{name}/slipway-base/") + \
        registry.count("GET", f"/v2/{name}/slipway-base/") == reads


def test_an_unreachable_cache_is_a_warning_and_the_base_is_built_here(base_repo, docker_engine):
    project = load_project(base_repo)
    out = io.StringIO()

    reference = ensure_base(docker_engine, project, Reporter(stream=out), open_target(project, "nowhere").base_cache())

    assert reference.startswith("slipway-base:")  # the engine-local base
    assert docker_engine.images.get(reference).labels[INPUTS_LABEL] == cache_key(project)
    warnings = [ln for ln in out.getvalue().splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "cannot be read" in warnings[0] and "building the base here" in warnings[0]


def test_image_and_release_take_the_cache_of_their_environment_and_plain_image_none(base_repo, registry, monkeypatch,
                                                                                     capsys):
    from slipway.cli import main

    seen = []

    def stop(engine, project, reporter, cache=None):
        seen.append(cache)
        raise SlipwayError("stopped after the base lookup", "test")

    monkeypatch.setattr("slipway.build.image.resolve_base", stop)
    name = load_project(base_repo).config.image.name
    (base_repo / "flows").mkdir()
    (base_repo / "flows" / "hello.py").write_text("from prefect import flow\n\n\n@flow\ndef hello():\n    pass\n")
    (base_repo / "deployments.yaml").write_text("deployments:\n- name: hello\n  entrypoint: flows/hello.py:hello\n")
    git(base_repo, "add", "-A")
    git(base_repo, "commit", "-q", "-m", "no deployments")

    assert main(["image", "--env", "local", "--root", str(base_repo)]) == 1
    assert main(["release", "--env", "local", "--root", str(base_repo)]) == 1
    assert main(["image", "--root", str(base_repo)]) == 1

    assert [(c.host, c.repository) if c else None for c in seen] == \
        [(registry.address, f"{name}/slipway-base")] * 2 + [None]
    assert capsys.readouterr().err.count("error: stopped after the base lookup; test") == 3

