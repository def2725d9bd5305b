"""Fixtures for the push tests: a real registry (Debian's docker-registry, started by the test kit through
tests/conftest.py's `start_registry`) with htpasswd authentication on a random loopback port, tiny images
built locally, throwaway Git repos.

Every Docker object created here is named `push-...` and removed afterwards.
"""
from __future__ import annotations

import contextlib
import io
import uuid
import warnings
from pathlib import Path

import docker
import pytest
import requests
import yaml

from slipway.image.build import REVISION_LABEL
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.project.git import read_git_facts
from tests.kit.net import free_port
from tests.kit.repo import EXAMPLE_LAYOUT, git

with warnings.catch_warnings():
    # stdlib on 3.11 (deprecated, gone in 3.13): bcrypt through libxcrypt, the only hash docker-registry's
    # htpasswd auth accepts; it saves a dependency on the bcrypt package for one test fixture.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

USER, PASSWORD = "push-user", "push-secret-4f1c9e"
# moto's ECR token for this account is base64("AWS:<account>-auth-token"): the test registry accepts it,
# so an ECR push only succeeds with the password slipway obtained from (moto's) GetAuthorizationToken.
ECR_ACCOUNT = "123456789012"
ECR_USER, ECR_PASSWORD = "AWS", f"{ECR_ACCOUNT}-auth-token"


def bcrypt_line(user: str, password: str) -> str:
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))}"


def quiet_reporter() -> Reporter:
    return Reporter(stream=io.StringIO())


@pytest.fixture(scope="session")
def registry(start_registry):
    """One htpasswd registry for the session (a push user and the ECR token's user), loopback only."""
    htpasswd = f"{bcrypt_line(USER, PASSWORD)}\n{bcrypt_line(ECR_USER, ECR_PASSWORD)}\n".encode()
    started = start_registry("push", htpasswd=htpasswd, auth=(USER, PASSWORD))
    # The kit takes 200 or 401 as healthy; only 401 shows the authentication is really on, and the push tests
    # prove nothing about credentials against an anonymous registry.
    status = requests.get(f"{started.url}/v2/", timeout=10).status_code
    assert status == 401, f"the push test registry must require authentication, /v2/ answered {status}"
    return started


def push_head(project, env_name: str, reporter, facts=None) -> dict:
    """`build.py push --env <env_name>` through the pipeline's own push step: its --json result."""
    from slipway import pipeline, results
    from slipway.target import open_target

    ws = pipeline.Workspace(project, reporter)
    return results.push_json(pipeline.push(ws, open_target(project, env_name)))


def write_project(root: Path, registry_address: str, name: str) -> None:
    """A minimal slipway.yaml: `local` and `shared` (generic, htpasswd), `nowhere`, `aws` (ECR)."""
    generic = {"kind": "generic", "address": registry_address, "insecure": True,
               "username_env": "PUSH_TEST_USER", "password_env": "PUSH_TEST_PASSWORD"}
    common = {"repository": name, "prefect": {"api_url": "http://127.0.0.1:9/api"},
              "work_pool": {"name": "push-pool", "type": "docker"}}
    config = {
        "image": {"name": name, **EXAMPLE_LAYOUT},
        "environments": {
            "local": {"registry": generic, **common},
            "shared": {"registry": generic, **common},
            "nowhere": {"registry": {**generic, "address": f"localhost:{free_port()}"}, **common},
            "aws": {"registry": {"kind": "ecr", "address": registry_address, "account_id": ECR_ACCOUNT,
                                 "region": "eu-west-1", "insecure": True}, **common},
        },
    }
    (root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def project_repo(tmp_path, registry, monkeypatch):
    """A throwaway Git repo with one commit and a slipway.yaml pointing at the test registry."""
    name = f"push-test-{uuid.uuid4().hex[:10]}"
    root = tmp_path / "repo"
    root.mkdir()
    write_project(root, registry.address, name)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "release")
    monkeypatch.setenv("PUSH_TEST_USER", USER)
    monkeypatch.setenv("PUSH_TEST_PASSWORD", PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # not the user's docker logins
    return root


@pytest.fixture
def build_head_image(docker_engine, tmp_path):
    """Build a tiny image (FROM scratch, one unique file) tagged and labelled like `make image` for HEAD."""
    built: list[str] = []

    def build(root: Path, content: str | None = None):
        project = load_project(root)
        facts = read_git_facts(root)
        context = tmp_path / f"context-{uuid.uuid4().hex[:6]}"
        context.mkdir()
        (context / "payload.txt").write_text(content or f"{facts.sha} {uuid.uuid4()}\n")
        (context / "Dockerfile").write_text("FROM scratch\nCOPY payload.txt /payload.txt\n")
        name = project.config.image.name
        tags = facts.image_tags()
        image, _ = docker_engine.images.build(path=str(context), tag=f"{name}:{tags[0]}",
                                              labels={REVISION_LABEL: facts.sha}, rm=True)
        for tag in tags[1:]:
            image.tag(name, tag)
        built.append(image.id)
        return project, facts, image

    yield build
    for image_id in built:  # every tag of these images (local and registry-qualified) is ours
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_engine.images.remove(image_id, force=True)
