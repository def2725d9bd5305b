"""The build cache in the environment's registry (image/cache.py: the runtime base and the content image),
against the real htpasswd test registry and the real engine: built and pushed once, pulled by a machine that
lacks them (no build), read from the engine when present (no registry call), built locally with a warning
when the cache cannot be reached. The base is a one-line Dockerfile.base on the kit's OS base, unique to
each test (a marker file), and the content image a one-line Dockerfile on it, so removing them removes no
one else's image and a pull really fetches their layers.
"""
from __future__ import annotations

import contextlib
import io
import re
import uuid

import docker
import pytest
import yaml

from slipway.errors import SlipwayError
from slipway.image.base import INPUTS_LABEL, cache_key, ensure_base, ensure_os_base
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.target import open_target
from tests.kit.net import free_port
from tests.kit.repo import EXAMPLE_LAYOUT, REPO_ROOT, git
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
    (root / "images" / "flow").mkdir(parents=True)
    (root / "images" / "flow" / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY stable.txt /app/stable.txt\nRUN cp /app/stable.txt /app/copy.txt\n")
    (root / "stable.txt").write_text(f"the content of {name}\n")
    common = {"repository": name, "prefect": {"api_url": "http://127.0.0.1:9/api"},
              "work_pool": {"name": "p", "type": "docker"}}
    secured = {"kind": "generic", "address": registry.address, "insecure": True,
               "username_env": "PUSH_TEST_USER", "password_env": "PUSH_TEST_PASSWORD"}
    (root / "slipway.yaml").write_text(yaml.safe_dump({
        "image": {"name": name, **EXAMPLE_LAYOUT}, "base": {"dockerfile": "Dockerfile.base", "image": os_base},
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
    cache = open_target(project, "local").build_cache()
    name = project.config.image.name
    assert cache.registry.repository == f"{name}/slipway-cache"  # the default cache repository
    key = cache_key(project)
    first = io.StringIO()

    reference = ensure_base(docker_engine, project, Reporter(stream=first), cache)

    assert reference == f"{registry.address}/{name}/slipway-cache:base-{key}"
    assert "building base image" in first.getvalue()
    assert registry.tags(f"{name}/slipway-cache") == [f"base-{key}"]
    built = docker_engine.images.get(reference)
    assert built.labels[INPUTS_LABEL] == key

    # A fresh machine: the engine has no image of this base, and may not build one.
    _remove_images_of(docker_engine, key)
    monkeypatch.setattr(docker.api.client.APIClient, "build", _no_build)
    second = io.StringIO()
    assert ensure_base(docker_engine, project, Reporter(stream=second), open_target(project, "local").build_cache()) \
        == reference
    assert "pulled the base image" in second.getvalue()
    assert docker_engine.images.get(reference).id == built.id  # the very image the first machine built

    # Present in the engine: not even the registry is asked.
    reads = _cache_reads(registry, name)
    third = io.StringIO()
    assert ensure_base(docker_engine, project, Reporter(stream=third), open_target(project, "local").build_cache()) \
        == reference
    assert "is up to date" in third.getvalue()
    assert _cache_reads(registry, name) == reads


def test_a_fresh_machine_pulls_the_content_image_and_builds_nothing(base_repo, registry, docker_engine, monkeypatch):
    """The content image (built on the cached base) is cached too: a machine without it pulls it — its base
    layers come with it — so a code-only release on a fresh runner runs no build step at all."""
    from slipway.image.build import build_content
    from slipway.project.git import read_git_facts

    project = load_project(base_repo)
    facts = read_git_facts(base_repo)
    name = project.config.image.name
    first = build_content(docker_engine, project, facts, Reporter(stream=io.StringIO()),
                          cache=open_target(project, "local").build_cache())
    key = cache_key(project)
    assert sorted(registry.tags(f"{name}/slipway-cache")) == [f"base-{key}", f"content-{first.inputs[:16]}"]
    _remove_images_of(docker_engine, key)  # a fresh runner: neither the base nor the content image
    monkeypatch.setattr(docker.api.client.APIClient, "build", _no_build)
    out = io.StringIO()

    second = build_content(docker_engine, project, facts, Reporter(stream=out),
                           cache=open_target(project, "local").build_cache())

    assert second.tag == first.tag and second.image_id == first.image_id  # the image the first machine built
    assert "pulled the content image" in out.getvalue()
    assert "base image" not in out.getvalue()  # its layers came with the content image


def test_an_unreachable_cache_is_a_warning_and_the_images_are_built_here(base_repo, docker_engine):
    from slipway.image.build import build_content
    from slipway.project.git import read_git_facts

    project = load_project(base_repo)
    out = io.StringIO()

    content = build_content(docker_engine, project, read_git_facts(base_repo), Reporter(stream=out),
                            cache=open_target(project, "nowhere").build_cache())

    assert docker_engine.images.get(content.tag).id == content.image_id  # built here...
    assert re.search(r"base image slipway-base:[0-9a-f]{16} ", out.getvalue())  # ...on the engine-local base
    warnings = [ln for ln in out.getvalue().splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "cannot be read" in warnings[0] and "building here" in warnings[0]


def test_image_and_release_take_the_cache_of_their_environment_and_plain_image_none(base_repo, registry, monkeypatch,
                                                                                     capsys):
    from slipway.cli import main

    seen = []

    def stop(engine, project, facts, reporter, nocache=False, cache=None):
        seen.append(cache)
        raise SlipwayError("stopped at the content image", "test")

    monkeypatch.setattr("slipway.pipeline.build_content", stop)
    name = load_project(base_repo).config.image.name
    (base_repo / "flows").mkdir()
    (base_repo / "flows" / "hello.py").write_text("from prefect import flow\n\n\n@flow\ndef hello():\n    pass\n")
    (base_repo / "deployments.yaml").write_text("deployments:\n- name: hello\n  entrypoint: flows/hello.py:hello\n")
    git(base_repo, "add", "-A")
    git(base_repo, "commit", "-q", "-m", "one deployment")

    assert main(["image", "--env", "local", "--root", str(base_repo)]) == 1
    assert main(["release", "--env", "local", "--root", str(base_repo)]) == 1
    assert main(["image", "--root", str(base_repo)]) == 1

    assert [(c.registry.host, c.registry.repository) if c else None for c in seen] == \
        [(registry.address, f"{name}/slipway-cache")] * 2 + [None]
    assert capsys.readouterr().err.count("error: stopped at the content image; test") == 3


def _no_build(*args, **kwargs):
    raise AssertionError("an image was built although the cache holds it")


def _cache_reads(registry, name: str) -> int:
    return (registry.count("HEAD", f"/v2/{name}/slipway-cache/") + registry.count("GET", f"/v2/{name}/slipway-cache/"))


def _remove_images_of(docker_engine, key: str) -> None:
    """Every image built on this test's base (they all inherit its inputs label), children first."""
    for _ in range(5):
        found = docker_engine.api.images(all=True, filters={"label": f"{INPUTS_LABEL}={key}"})
        if not found:
            return
        for summary in found:
            with contextlib.suppress(docker.errors.APIError):
                docker_engine.images.remove(summary["Id"], force=True)
    raise AssertionError("images of this test's base are still in the engine")
