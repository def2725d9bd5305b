"""A repository that is not this one, as small as slipway allows: its own runtime lock (any Prefect 3.x), its
own Dockerfile.base and content Dockerfile, one flow under `pipelines/`, no dbt project, no custom modules.
The probe tests build it to run the entry-point probe inside an image holding another Prefect than ours."""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.kit.repo import commit_all, git

DOCKERFILE_BASE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements/runtime.txt /tmp/runtime.txt
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --quiet --require-hashes --no-deps -r /tmp/runtime.txt
ENV PATH=/opt/venv/bin:${PATH}
USER 10001:10001
"""

DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /opt/app
"""

FLOW = '''\
from prefect import flow


@flow(name="hello")
def hello(count: int, greeting: str = "hi") -> str:
    return greeting * count
'''


def write_minimal_project(root: Path, name: str, runtime_lock: Path, base_os: str, parameters: dict) -> Path:
    """The repository at `root`, committed; its one deployment `hello/<name>` passes `parameters`."""
    root.mkdir(parents=True)
    (root / "requirements").mkdir()
    (root / "requirements" / "runtime.txt").write_text(runtime_lock.read_text())
    (root / "pipelines").mkdir()
    (root / "pipelines" / "hello.py").write_text(FLOW)
    (root / "Dockerfile.base").write_text(DOCKERFILE_BASE)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / ".dockerignore").write_text("*\n!requirements/runtime.txt\n")
    (root / "deployments.yaml").write_text(yaml.safe_dump({"deployments": [
        {"name": name, "entrypoint": "pipelines/hello.py:hello", "parameters": parameters}]}))
    (root / "slipway.yaml").write_text(yaml.safe_dump({
        "image": {"name": name, "dockerfile": "Dockerfile", "app_dir": "/opt/app", "code": ["pipelines"]},
        "base": {"dockerfile": "Dockerfile.base", "image": base_os, "bootstrap_image": base_os},
        "environments": {"local": {
            "registry": {"kind": "generic", "address": "localhost:5000", "insecure": True},
            "repository": name, "prefect": {"api_url": "http://127.0.0.1:4200/api"},
            "work_pool": {"name": f"{name}-docker", "type": "docker"}}},
    }, sort_keys=False))
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "a small Prefect project")
    return root
