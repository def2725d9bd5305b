"""A repository that is not this one, as a data team writes it: flows under pipelines/, a dbt project at the
root, no custom-modules package, a prefect.yaml with prefect-docker build/push steps and `pip_packages`, a
flow that reads a block at import time, GitHub's Python .gitignore, its own requirements.txt.

The runtime base is this repository's Dockerfile.base and lock, byte for byte, so the engine's base image is
reused (no PyPI download); the content image adds the dbt project only (seconds).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tests.kit.files import PYTHON_GITIGNORE
from tests.kit.repo import REPO_ROOT, git

INGEST_AT_IMPORT = '''from prefect import flow
from prefect.blocks.system import Secret

PASSWORD = Secret.load("warehouse-password").get()  # at import time: needs the Prefect API


@flow(log_prints=True)
def ingest(rows: int = 10):
    print(f"ingesting {rows} rows")
'''
INGEST_IN_FLOW = '''from prefect import flow
from prefect.blocks.system import Secret


@flow(log_prints=True)
def ingest(rows: int = 10):
    password = Secret.load("warehouse-password").get()  # at run time, with the API
    print(f"ingesting {rows} rows with a password of {len(password)} characters")
'''
NIGHTLY = '''from prefect import flow


@flow
def nightly():
    return "done"
'''
PROFILES_NO_DEFAULT = '''team:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('WAREHOUSE_PATH') }}"
'''
PROFILES_WITH_DEFAULT = PROFILES_NO_DEFAULT.replace("env_var('WAREHOUSE_PATH')",
                                                    "env_var('WAREHOUSE_PATH', '/tmp/team.duckdb')")
CONTENT_DOCKERFILE = '''ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /opt/prefect
COPY dbt_project.yml profiles.yml /opt/prefect/
COPY models/ /opt/prefect/models/
'''


def prefect_yaml(nightly_dir: str, pip_packages: bool) -> dict:
    variables = {"pip_packages": ["pandas==2.2.3"]} if pip_packages else {}
    return {
        "name": "team-pipelines", "prefect-version": "3.8.8",
        "build": [{"prefect_docker.deployments.steps.build_docker_image": {
            "id": "build-image", "requires": "prefect-docker>=0.3.1", "image_name": "team/pipelines",
            "tag": "latest", "dockerfile": "auto"}}],
        "push": [{"prefect_docker.deployments.steps.push_docker_image": {
            "requires": "prefect-docker>=0.3.1", "image_name": "{{ build-image.image_name }}",
            "tag": "{{ build-image.tag }}"}}],
        "deployments": [
            {"name": "hourly", "entrypoint": "pipelines/ingest.py:ingest", "parameters": {"rows": 5},
             "work_pool": {"name": "team-docker", "job_variables": {"image": "{{ build-image.image }}", **variables}}},
            {"name": "nightly", "entrypoint": f"{nightly_dir}/nightly.py:nightly",
             "work_pool": {"name": "team-docker"}},
        ],
    }


def write_foreign_repo(root: Path, image_name: str) -> Path:
    """The team's repository as it is before slipway's fixes, with one commit (and a slipway.yaml)."""
    root.mkdir(parents=True)
    (root / ".gitignore").write_text(PYTHON_GITIGNORE.read_text())
    (root / "requirements").mkdir()
    shutil.copy2(REPO_ROOT / "requirements" / "runtime.txt", root / "requirements" / "runtime.txt")
    shutil.copy2(REPO_ROOT / "Dockerfile.base", root / "Dockerfile.base")
    (root / "requirements.txt").write_text("prefect==3.8.8\nprefect-docker\ndbt-duckdb\n")
    (root / "Dockerfile").write_text(CONTENT_DOCKERFILE)
    (root / ".dockerignore").write_text("*\n!dbt_project.yml\n!profiles.yml\n!models/\n")
    (root / "dbt_project.yml").write_text("name: team\nversion: '1.0'\nprofile: team\nmodel-paths: [models]\n")
    (root / "profiles.yml").write_text(PROFILES_NO_DEFAULT)
    (root / "models").mkdir()
    (root / "models" / "orders.sql").write_text("select 1 as id\n")
    (root / "pipelines" / "build").mkdir(parents=True)  # `build/`: GitHub's template ignores it
    (root / "pipelines" / "ingest.py").write_text(INGEST_AT_IMPORT)
    (root / "pipelines" / "build" / "nightly.py").write_text(NIGHTLY)
    (root / "prefect.yaml").write_text(yaml.safe_dump(prefect_yaml("pipelines/build", True), sort_keys=False))
    (root / "slipway.yaml").write_text(yaml.safe_dump({
        "image": {"name": image_name, "dockerfile": "Dockerfile", "code": ["pipelines"]},
        "deployments": "prefect.yaml",
        "environments": {"local": {
            "registry": {"kind": "generic", "address": "localhost:5000", "insecure": True},
            "repository": image_name, "prefect": {"api_url": "http://127.0.0.1:4200/api"},
            "work_pool": {"name": "team-docker", "type": "docker"},
            "job_variables": {"network_mode": "host"}}},
    }, sort_keys=False))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the team's pipelines")
    return root


def apply_doctors_fixes(root: Path) -> None:
    """What `slipway doctor` tells the team to do, committed: the block loaded in the flow, pip_packages gone
    (into the lock), the flow out of the ignored build/ folder, a default for the dbt variable."""
    (root / "pipelines" / "ingest.py").write_text(INGEST_IN_FLOW)
    (root / "pipelines" / "jobs").mkdir()
    (root / "pipelines" / "build" / "nightly.py").rename(root / "pipelines" / "jobs" / "nightly.py")
    (root / "prefect.yaml").write_text(yaml.safe_dump(prefect_yaml("pipelines/jobs", False), sort_keys=False))
    (root / "profiles.yml").write_text(PROFILES_WITH_DEFAULT)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "doctor's fixes")


# --- the same team before slipway: nothing of slipway's, for `slipway init` -----------------------------------

TEAM_REQUIREMENTS = (
    "prefect==3.8.8\n"
    "prefect-docker\n"
    # dbt-core is pinned as this repository's lock pins it: newer releases on this machine's index need a
    # download from GitHub at install time (README "Dependency locks").
    "dbt-core~=1.11.0\n"
    "dbt-duckdb\n"
)
# What uv resolves the team's lock as of: the index this machine reaches serves newer releases that Prefect
# 3.8.8 does not run with (the same date as this repository's own locks).
LOCK_DATE = {"UV_EXCLUDE_NEWER": "2026-10-07"}


def team_prefect_yaml(suffix: str, nightly_dir: str, pip_packages: bool) -> dict:
    """The team's prefect.yaml with deployment names of this test's own (the session's server is shared)."""
    document = prefect_yaml(nightly_dir, pip_packages)
    for deployment in document["deployments"]:
        deployment["name"] = f"{deployment['name']}-{suffix}"
    return document


def write_team_repo(root: Path, suffix: str) -> Path:
    """The team's repository with none of slipway's files: flows under pipelines/ (one in a `build/` folder
    GitHub's .gitignore hides, one loading a block at import time), a prefect.yaml with prefect-docker
    build/push steps and `pip_packages`, a dbt project at the root, its own requirements.txt. One commit."""
    root.mkdir(parents=True)
    (root / ".gitignore").write_text(PYTHON_GITIGNORE.read_text())
    (root / "requirements.txt").write_text(TEAM_REQUIREMENTS)
    (root / "dbt_project.yml").write_text("name: team\nversion: '1.0'\nprofile: team\nmodel-paths: [models]\n")
    (root / "profiles.yml").write_text(PROFILES_WITH_DEFAULT)
    (root / "models").mkdir()
    (root / "models" / "orders.sql").write_text("select 1 as id\n")
    (root / "pipelines" / "build").mkdir(parents=True)
    (root / "pipelines" / "ingest.py").write_text(INGEST_AT_IMPORT)
    (root / "pipelines" / "build" / "nightly.py").write_text(NIGHTLY)
    (root / "prefect.yaml").write_text(yaml.safe_dump(team_prefect_yaml(suffix, "pipelines/build", True),
                                                      sort_keys=False))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "the team's pipelines")
    return root


def apply_doctors_fixes_to_team(root: Path, suffix: str) -> None:
    """What `slipway doctor` tells the team, committed: the block loaded in the flow, pip_packages gone (init
    put them in the lock), the flow out of the ignored build/ folder."""
    (root / "pipelines" / "ingest.py").write_text(INGEST_IN_FLOW)
    (root / "pipelines" / "jobs").mkdir()
    (root / "pipelines" / "build" / "nightly.py").rename(root / "pipelines" / "jobs" / "nightly.py")
    (root / "prefect.yaml").write_text(yaml.safe_dump(team_prefect_yaml(suffix, "pipelines/jobs", False),
                                                      sort_keys=False))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "doctor's fixes")
