"""slipway.yaml: what to build (the project) and where to release it (the environments).

Loaded strictly: an unknown key or a wrong type is an error naming the file, the field and the fix,
raised before anything is built, pushed or registered.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slipway.errors import SlipwayError

CONFIG_FILE = "slipway.yaml"
LOCAL_ENVIRONMENT = "local"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistryConfig(_Strict):
    kind: Literal["generic", "ecr", "acr"]
    # generic/acr: host[:port]. ecr: derived from account_id and region when omitted.
    address: str | None = None
    region: str | None = None  # ecr
    account_id: str | None = None  # ecr
    insecure: bool = False  # plain HTTP: only for registries on this machine (localhost:5000)
    # generic: the names of environment variables holding the credentials (never the values themselves);
    # without them the user's Docker config (~/.docker/config.json) is used, then anonymous access.
    username_env: str | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _address_known(self) -> RegistryConfig:
        if self.kind == "ecr":
            if not self.address and not (self.account_id and self.region):
                raise ValueError("an ecr registry needs account_id and region (or address)")
        elif not self.address:
            raise ValueError(f"a {self.kind} registry needs an address (host[:port])")
        return self

    @property
    def host(self) -> str:
        if self.address:
            return self.address
        return f"{self.account_id}.dkr.ecr.{self.region}.amazonaws.com"


class PrefectConfig(_Strict):
    api_url: str
    # Prefect Cloud or an authenticated server: the name of the environment variable holding the key.
    api_key_env: str | None = None


class WorkPoolConfig(_Strict):
    name: str
    type: Literal["docker", "kubernetes", "process"]
    # A JSON file in the repo with the pool's base job template; the worker type's default when omitted.
    base_job_template: str | None = None


class EnvironmentConfig(_Strict):
    registry: RegistryConfig
    repository: str  # path inside the registry: "jaffle-shop", "data-platform/jaffle-shop"
    prefect: PrefectConfig
    work_pool: WorkPoolConfig
    # Merged into every deployment's job_variables (a deployment's own values win).
    job_variables: dict[str, Any] = Field(default_factory=dict)
    # Per-deployment overrides, keyed "<flow>/<deployment>": parameters, schedules, job_variables, ...
    deployments: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Tags added to every deployment registered in this environment.
    tags: list[str] = Field(default_factory=list)

    def image_repository(self) -> str:
        return f"{self.registry.host}/{self.repository}"


class ImageConfig(_Strict):
    name: str  # the local image repository: `<name>:<sha>`
    dockerfile: str = "images/flow/Dockerfile"
    context: str = "."


class BaseConfig(_Strict):
    dockerfile: str = "Dockerfile.base"
    image: str = "python:3.11-slim-bookworm"  # BASE_IMAGE; SLIPWAY_BASE_IMAGE overrides it
    bootstrap_image: str = "slipway/base-os:bookworm"  # the air-gapped base `make base-os` builds


class ProjectConfig(_Strict):
    image: ImageConfig
    base: BaseConfig = BaseConfig()
    deployments: str = "deployments.yaml"
    kubernetes_version: str = "1.30.0"  # the Kubernetes schema Job manifests are validated against
    environments: dict[str, EnvironmentConfig]


class Project:
    """The loaded slipway.yaml plus where it lives."""

    def __init__(self, root: Path, config: ProjectConfig, path: Path):
        self.root = root
        self.config = config
        self.path = path

    @property
    def base_image(self) -> str:
        return os.environ.get("SLIPWAY_BASE_IMAGE") or self.config.base.image

    def environment(self, name: str) -> EnvironmentConfig:
        try:
            return self.config.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.config.environments))
            raise SlipwayError(
                f"{self.path.name}: unknown environment '{name}'",
                f"use one of: {known} (or add it under 'environments:')",
            ) from None

    def resolve(self, relative: str) -> Path:
        return (self.root / relative).resolve()


def format_validation_error(filename: str, exc: ValidationError, prefix: str = "") -> str:
    """The first pydantic error as `file: field.path: problem`."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key (check its spelling against README.md 'Configuration')"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return f"{filename}: {loc}: {msg}" if loc else f"{filename}: {msg}"


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SlipwayError(f"{path.name} not found in {path.parent}", "run slipway from the repository root") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SlipwayError(f"{path.name}:{where} is not valid YAML ({problem})", "fix the syntax") from None


def load_project(root: Path | str = ".") -> Project:
    root = Path(root).resolve()
    path = root / CONFIG_FILE
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise SlipwayError(f"{CONFIG_FILE}: expected a mapping with 'image' and 'environments'")
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise SlipwayError(format_validation_error(CONFIG_FILE, exc)) from None
    return Project(root, config, path)
