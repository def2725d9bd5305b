"""`up` serves the `local` environment of any slipway.yaml, on its ports; hints name `up` only where it helps."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slipway.errors import SlipwayError
from slipway.project.config import Project, parse_config
from slipway.stack import local_stack
from tests.kit.repo import REPO_ROOT


def project_with(local: dict | None, **others: dict) -> Project:
    config = yaml.safe_load((REPO_ROOT / "slipway.yaml").read_text())
    environments = {**({"local": local} if local is not None else {}), **others}
    config["environments"] = environments
    return Project(Path("/nowhere"), parse_config(config), Path("/nowhere/slipway.yaml"))


def env(registry: str, api_url: str, kind: str = "generic") -> dict:
    return {"registry": {"kind": kind, "address": registry, "insecure": True}, "repository": "team",
            "prefect": {"api_url": api_url}, "work_pool": {"name": "pool", "type": "docker"}}


def test_up_publishes_the_ports_the_local_environment_names():
    stack = local_stack(project_with(env("localhost:5123", "http://127.0.0.1:4321/api")))
    assert (stack.registry.host_port, stack.prefect.host_port) == (5123, 4321)
    assert (stack.registry.container, stack.prefect.container) == ("slipway-registry", "slipway-prefect")


@pytest.mark.parametrize("local, message", [
    (None, "slipway.yaml has no 'local' environment"),
    (env("registry.example.com:5000", "http://127.0.0.1:4200/api"), "registry is registry.example.com:5000, not"),
    (env("localhost", "http://127.0.0.1:4200/api"), "registry is localhost, not a registry `up` can start"),
    (env("localhost:5000", "https://prefect.example.com/api"), "api_url is https://prefect.example.com/api"),
    (env("localhost:5000", "http://127.0.0.1/api"), "api_url is http://127.0.0.1/api"),
    (env("localhost:4200", "http://127.0.0.1:4200/api"), "both name port 4200"),
])
def test_a_local_environment_up_cannot_serve_is_one_error(local, message):
    with pytest.raises(SlipwayError, match=message.replace("(", r"\(")):
        local_stack(project_with(local, staging=env("localhost:5000", "http://127.0.0.1:4200/api")))


def test_hints_name_up_only_for_what_up_starts():
    project = project_with(env("localhost:5123", "http://127.0.0.1:4321/api"),
                           kind=env("localhost:5123", "http://127.0.0.1:4321/api/"),
                           other=env("localhost:5000", "http://127.0.0.1:4200/api"),
                           remote=env("registry.example.com", "https://prefect.example.com/api"))
    assert project.up_serves(project.environment("local")) == (True, True)
    assert project.up_serves(project.environment("kind")) == (True, True)  # the same addresses
    assert project.up_serves(project.environment("other")) == (False, False)  # other ports: up would not help
    assert project.up_serves(project.environment("remote")) == (False, False)
