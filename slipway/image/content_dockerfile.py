"""slipway's own content Dockerfile, written from slipway.yaml when `image.dockerfile` is omitted: the
repository's packages installed into the runtime venv, then its dbt project copied and parsed, on the base.

A team with this layout needs no Dockerfile and no .dockerignore: the build context is the allowlist below
(the packages' folders, the dbt project's own files and folders as its dbt_project.yml names them), so an
unrelated edit never rebuilds the content image and nothing local reaches the engine. What it writes is
part of the content image's address (build.content_inputs), like a team's own Dockerfile.
"""
from __future__ import annotations

import posixpath
from pathlib import Path

import yaml

from slipway.project.config import ImageConfig
from slipway.project.dbt import PROJECT_FILE

NAME = ".slipway.Dockerfile"  # its name in the build context (and in build messages)
# The files of a dbt project beside dbt_project.yml, and the folders it reads unless it names others.
_DBT_FILES = (PROJECT_FILE, "profiles.yml", "packages.yml", "dependencies.yml", "package-lock.yml", "selectors.yml")
_DBT_PATH_KEYS = {"model-paths": ["models"], "seed-paths": ["seeds"], "test-paths": ["tests"],
                  "analysis-paths": ["analyses"], "macro-paths": ["macros"], "snapshot-paths": ["snapshots"],
                  "docs-paths": [], "asset-paths": []}
# Never part of the context: dbt's and Python's build output.
_EXCLUDED = ["**/__pycache__", "**/*.pyc", "**/*.egg-info", "**/target", "**/logs", "**/dbt_packages",
             "**/*.duckdb"]


def dbt_entries(root: Path, dbt_dir: str) -> list[str]:
    """The dbt project's files and folders that exist, relative to the project: what dbt reads."""
    project = root / dbt_dir
    try:
        declared = yaml.safe_load((project / PROJECT_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError):
        declared = {}  # the build's dbt parse says what is wrong with it
    folders = []
    for key, default in _DBT_PATH_KEYS.items():
        value = declared.get(key, default) if isinstance(declared, dict) else default
        folders += [str(v).strip("/") for v in (value if isinstance(value, list) else [value])]
    entries = [name for name in _DBT_FILES if (project / name).is_file()]
    entries += [name for name in dict.fromkeys(folders) if name and (project / name).is_dir()]
    return entries


def context_patterns(root: Path, config: ImageConfig) -> list[str]:
    """The build context as .dockerignore patterns: nothing but the packages and the dbt project."""
    allowed = [f"!{package}/" for package in config.packages]
    if config.dbt is not None:
        allowed += [f"!{posixpath.normpath(posixpath.join(config.dbt, entry))}"
                    for entry in dbt_entries(root, config.dbt)]
    return ["*", *allowed, *_EXCLUDED]


def render(root: Path, config: ImageConfig) -> str:
    """The Dockerfile: one layer per package, then the dbt project, parsed (a broken project fails the
    build, and target/manifest.json is in the image for the flows)."""
    app = config.app_dir
    lines = ["# Written by slipway from slipway.yaml (image.packages, image.dbt): the content image.",
             "ARG BASE_IMAGE", "FROM ${BASE_IMAGE}", "USER root", f"WORKDIR {app}"]
    for number, package in enumerate(config.packages):
        staged = f"/tmp/slipway-packages/{number}"
        # --no-deps: the dependencies are the runtime lock's, in the base; --no-build-isolation: the build
        # backend too, so this step needs no network.
        lines += [f"COPY {package}/ {staged}/",
                  f"RUN pip install --no-deps --no-build-isolation --no-compile {staged} && rm -rf {staged}"]
    if config.dbt is not None:
        target = app if config.dbt == "." else f"{app}/{config.dbt}"
        profiles = (root / config.dbt / "profiles.yml").is_file()
        lines.append(f"ENV DBT_SEND_ANONYMOUS_USAGE_STATS=false DBT_PROJECT_DIR={target}"
                     + (f" DBT_PROFILES_DIR={target}" if profiles else ""))
        for entry in dbt_entries(root, config.dbt):
            source = posixpath.normpath(posixpath.join(config.dbt, entry))
            is_dir = (root / source).is_dir()
            lines.append(f"COPY {source}{'/' if is_dir else ''} {target}/{entry}{'/' if is_dir else ''}")
        lines.append(f"RUN cd {target} && if [ -f packages.yml ] || [ -f dependencies.yml ]; then dbt deps --quiet; fi"
                     " && dbt parse --quiet --no-partial-parse --target-path target --log-path /tmp/dbt-logs"
                     " && rm -rf /tmp/dbt-logs && test -s target/manifest.json")
    lines.append("USER 10001:10001")
    return "\n".join(lines) + "\n"
