"""slipway.yaml: what to build (the project) and where to release it (the environments).

Loaded strictly: an unknown key or a wrong type is an error naming the file, the field and the fix,
raised before anything is built, pushed or registered.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from slipway.errors import Finding, SlipwayError
from slipway.project.secrets import check_not_secret_paths

CONFIG_FILE = "slipway.yaml"
LOCAL_ENVIRONMENT = "local"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")  # where `up` publishes the embedded default
# libyaml's parser when PyYAML has it (the wheels do): a thousand declarations parse in ~0.1 s, not ~1 s.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A Kubernetes object name (DNS-1123 subdomain), and a Prefect block document name.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_BLOCK_NAME = re.compile(r"[a-z0-9-]+")
BUILD_CACHE_NAME = "slipway-cache"  # the default cache repository: <repository>/slipway-cache


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
    # The names of environment variables holding credentials (never the values): Prefect Cloud takes an API
    # key; a self-hosted server started with PREFECT_SERVER_API_AUTH_STRING takes that `user:password` string.
    api_key_env: str | None = None
    auth_string_env: str | None = None
    # Deployment writes sent at once: `auto` (the default) picks a number for the server it finds
    # (slipway/deploy/write_concurrency.py): 1 on SQLite, where a second concurrent write waits on the database
    # lock and may be refused, 8 on PostgreSQL, 4 on Prefect Cloud; or a whole number from 1 to 32.
    write_concurrency: int | Literal["auto"] = "auto"

    @field_validator("write_concurrency", mode="before")
    @classmethod
    def _writers(cls, v: Any) -> Any:
        if v == "auto":
            return v
        if not isinstance(v, int) or isinstance(v, bool):
            raise PydanticCustomError("literal_error", "Input should be auto or a whole number from 1 to 32")
        if v < 1:
            raise PydanticCustomError("greater_than_equal", "Input should be auto or at least 1")
        if v > 32:
            raise PydanticCustomError("less_than_equal", "Input should be auto or at most 32")
        return v

    @model_validator(mode="after")
    def _one_credential(self) -> PrefectConfig:
        if self.api_key_env and self.auth_string_env:
            raise ValueError("set api_key_env (Prefect Cloud) or auth_string_env (a self-hosted server), not both")
        return self


class WorkPoolConfig(_Strict):
    name: str
    # Only pools whose flow runs start a container: slipway pins every deployment to an image digest.
    type: Literal["docker", "kubernetes"]

    @field_validator("type", mode="before")
    @classmethod
    def _runs_an_image(cls, v: Any) -> Any:
        if v == "process":
            raise ValueError("a process pool runs flows without an image, so the release's digest would be "
                             "ignored: use a docker or kubernetes pool")
        return v
    # A JSON file in the repo with the pool's base job template; the worker type's default when omitted.
    base_job_template: str | None = None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h)?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, None: 1}


def parse_duration(v: Any) -> float:
    """Seconds from a number of seconds or `<number><s|m|h>` ("90s", "5m", "1.5h")."""
    if isinstance(v, bool):
        raise ValueError("use a duration such as 90s, 5m or 1h")
    if isinstance(v, int | float):
        seconds = float(v)
    else:
        match = _DURATION.fullmatch(str(v).strip())
        if match is None:
            raise ValueError(f"'{v}' is not a duration: use a number of seconds, or 90s, 5m, 1h")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ValueError("use a duration above zero, such as 90s, 5m or 1h")
    return seconds


class VerifyConfig(_Strict):
    """A smoke run of the new release after each deploy (deploy/verify.py): flow runs of `deployments`, in
    order, each of which must reach Completed; on a failure the release is rolled back (or, `keep`, left
    live), and the command exits non-zero."""

    deployments: list[str] = Field(min_length=1)  # "<flow>/<deployment>", declared by the release
    parameters: dict[str, dict[str, Any]] = Field(default_factory=dict)  # by deployment name
    start_timeout: float = 300.0  # seconds for a worker to start the run (Pending/Running)
    timeout: float = 1800.0  # seconds for the run to finish, from its creation
    on_failure: Literal["rollback", "keep"] = "rollback"

    _durations = field_validator("start_timeout", "timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v)))

    @field_validator("deployments")
    @classmethod
    def _full_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if name.count("/") != 1 or not all(name.split("/")):
                raise ValueError(f"'{name}' is not a deployment's full name: use <flow>/<deployment>, "
                                 "such as elt/on-demand")
        if len(set(v)) != len(v):
            raise ValueError("a deployment is named twice")
        return v

    @model_validator(mode="after")
    def _parameters_of_verified(self) -> VerifyConfig:
        extra = sorted(set(self.parameters) - set(self.deployments))
        if extra:
            raise ValueError(f"parameters for '{extra[0]}', which is not in verify.deployments")
        return self


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
    # Paths of this environment's job_variables that look like secrets but are not (project/secrets.py).
    not_secret: list[str] = Field(default_factory=list)
    # The repository, in this environment's registry, of the build cache: the runtime base and the content
    # image, built once, pushed there, pulled by every machine that lacks them (`release --env`, what
    # `make image deploy` runs). Default: `<repository>/slipway-cache` (a policy on `<repository>*` covers it).
    cache_repository: str | None = None
    # A smoke run after each release (`release`, `deploy`; `rollback --verify`): README 'Verified releases'.
    verify: VerifyConfig | None = None

    _not_secret_paths = field_validator("not_secret")(classmethod(lambda cls, v: check_not_secret_paths(v)))

    # --- pull credentials (issue 16): how the flow-run container's image pull authenticates, where the node
    # does not already trust the registry. Infrastructure, not part of a release: a rollback uses the working
    # tree's. Kubernetes pools: a Secret (kubernetes.io/dockerconfigjson) in the Job's namespace, by name.
    image_pull_secret: str | None = None
    # Docker pools: a prefect-docker DockerRegistryCredentials block in this environment's Prefect, by name.
    registry_credentials_block: str | None = None

    @field_validator("image_pull_secret")
    @classmethod
    def _kubernetes_name(cls, v: str | None) -> str | None:
        if v is not None and not (len(v) <= 253 and _DNS_SUBDOMAIN.fullmatch(v)):
            raise ValueError(f"'{v}' is not a valid Kubernetes Secret name (lowercase letters, digits, '-' and '.', "
                             "starting and ending with a letter or digit, at most 253 characters)")
        return v

    @field_validator("registry_credentials_block")
    @classmethod
    def _block_name(cls, v: str | None) -> str | None:
        if v is not None and not _BLOCK_NAME.fullmatch(v):
            raise ValueError(f"'{v}' is not a Prefect block name (lowercase letters, digits and dashes)")
        return v

    @model_validator(mode="after")
    def _credentials_fit_the_pool(self) -> EnvironmentConfig:
        if self.image_pull_secret and self.work_pool.type != "kubernetes":
            raise ValueError("image_pull_secret is for Kubernetes pools; a docker pool takes "
                             "registry_credentials_block")
        if self.registry_credentials_block and self.work_pool.type != "docker":
            raise ValueError("registry_credentials_block is for docker pools; a Kubernetes pool takes "
                             "image_pull_secret")
        return self
    # --- end pull credentials

    def image_repository(self) -> str:
        return f"{self.registry.host}/{self.repository}"

    def build_cache_repository(self) -> str:
        return self.cache_repository or f"{self.repository}/{BUILD_CACHE_NAME}"


class ImageConfig(_Strict):
    name: str  # the local image repository: `<name>:<sha>`
    # The content image's Dockerfile, the team's own; omitted, slipway writes one from `dbt` and `packages`
    # (image/content_dockerfile.py), so a repository needs no Dockerfile and no .dockerignore of its own.
    dockerfile: str | None = None
    context: str = "."
    # Only with slipway's Dockerfile (a team's own COPYs what it needs): the dbt project's folder ("." for the
    # repository root), parsed at build time; the folders of the repository's Python packages (each with a
    # pyproject.toml or setup.py), installed into the runtime venv.
    dbt: str | None = None
    packages: list[str] = Field(default_factory=list)
    # Where the repository's files live in the image: the flow runs' working directory, the root entry
    # points are relative to, and where slipway puts its layers (code paths, `<app_dir>/.slipway`).
    app_dir: str = "/opt/prefect"
    # The code paths (relative to the repository root): slipway writes each as its own layer from the commit,
    # under app_dir, on top of what the Dockerfile builds. A change to them rebuilds nothing.
    code: list[str] = Field(default_factory=list)

    @field_validator("code", "packages")
    @classmethod
    def _relative(cls, v: list[str]) -> list[str]:
        for path in v:
            _inside_repository(path)
        return [path.strip("/") for path in v]

    @field_validator("dbt")
    @classmethod
    def _dbt_inside(cls, v: str | None) -> str | None:
        if v is None or v.strip("/") in ("", "."):
            return None if v is None else "."
        _inside_repository(v)
        return v.strip("/")

    @model_validator(mode="after")
    def _layout_for_slipways_dockerfile(self) -> ImageConfig:
        if self.dockerfile is not None and (self.dbt is not None or self.packages):
            raise ValueError("dbt and packages describe slipway's own Dockerfile; with image.dockerfile, COPY "
                             "the dbt project and install the packages there (or remove image.dockerfile)")
        if self.dockerfile is None and self.context.strip("/") not in ("", "."):
            raise ValueError("context is the team's Dockerfile's; slipway's own builds from the repository root "
                             "(remove image.context, or name your Dockerfile in image.dockerfile)")
        return self

    @field_validator("app_dir")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or v.rstrip("/") == "":
            raise ValueError("must be an absolute directory other than / (for example /opt/prefect)")
        return v.rstrip("/")


def _inside_repository(path: str) -> None:
    if not path.strip("/") or path.startswith("/") or ".." in path.split("/"):
        raise ValueError(f"'{path}' must be a path inside the repository, such as pipelines")


class BaseConfig(_Strict):
    dockerfile: str = "Dockerfile.base"
    image: str = "python:3.11-slim-bookworm"  # BASE_IMAGE; SLIPWAY_BASE_IMAGE overrides it
    bootstrap_image: str = "slipway/base-os:bookworm"  # the air-gapped base `make base-os` builds


class ProjectConfig(_Strict):
    # The slipway versions this project needs (`slipway: ">=0.5,<0.6"`, PEP 440), checked against the running
    # slipway by load_project before anything else is read. A release's own copy, read back for a rollback,
    # is not checked: an upgraded slipway must still roll back to what an older one released.
    slipway: str | None = None
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
            ) from None  # the KeyError says nothing more

    def resolve(self, relative: str) -> Path:
        return (self.root / relative).resolve()

    def up_serves(self, env: EnvironmentConfig) -> tuple[bool, bool]:
        """Whether `up` (the embedded default, slipway/stack.py) starts `env`'s registry, and its Prefect
        server: it starts the `local` environment's, on this machine. A hint names `up` only then."""
        local = self.config.environments.get(LOCAL_ENVIRONMENT)
        if local is None:
            return False, False
        return (env.registry.host == local.registry.host and env.registry.host.split(":")[0] in LOOPBACK_HOSTS,
                env.prefect.api_url.rstrip("/") == local.prefect.api_url.rstrip("/"))


README_SECTION = "README.md 'Configuration'"


# The fix for a value of the wrong type or out of range, by pydantic's error type (declarations.py uses it too).
TYPE_FIXES = {
    "string_type": "write a string here (quote it if YAML reads it as something else)",
    "bool_type": "use true or false", "bool_parsing": "use true or false",
    "int_type": "use a whole number", "int_parsing": "use a whole number", "int_from_float": "use a whole number",
    "float_type": "use a number", "float_parsing": "use a number",
    "dict_type": "write a mapping here (key: value lines)", "model_type": "write a mapping here (key: value lines)",
    "model_attributes_type": "write a mapping here (key: value lines)",
    "list_type": "write a list here (`- item` lines, or [a, b])",
    "literal_error": "use one of the values it lists",
    "greater_than": "use a larger number", "greater_than_equal": "use a larger number",
    "less_than": "use a smaller number", "less_than_equal": "use a smaller number",
}


def validation_error(filename: str, exc: ValidationError, prefix: str = "") -> SlipwayError:
    """The first pydantic error as one line: `file: field.path: problem; fix`."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
    msg = " ".join(err["msg"].split())
    fix = TYPE_FIXES.get(err["type"]) or f"see {README_SECTION} for the accepted keys and values"
    if err["type"] == "extra_forbidden":
        msg, fix = "unknown key", f"remove it or fix its spelling (the keys are listed in {README_SECTION})"
    elif err["type"] == "missing":
        msg, fix = "required field is missing", f"add it (see {README_SECTION})"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return SlipwayError(f"{filename}: {loc}: {msg}" if loc else f"{filename}: {msg}", fix)


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise SlipwayError(f"{path.name} not found in {path.parent}",
                           "run slipway from the repository root (or pass --root)") from exc
    try:
        return yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SlipwayError(f"{path.name}:{where} is not valid YAML ({problem})", "fix the syntax") from exc


def load_project(root: Path | str = ".") -> Project:
    root = Path(root).resolve()
    path = root / CONFIG_FILE
    data = load_yaml(path)
    if isinstance(data, dict) and "slipway" in data:  # first: a newer slipway.yaml may have keys this one lacks
        require_slipway_version(data["slipway"])
    return Project(root, parse_config(data), path)


def check_project(root: Path | str = ".") -> tuple[Project | None, list[Finding]]:
    """load_project for `doctor`: the version range and the configuration, each a finding instead of an
    error (the range is checked, and the file still read, when this slipway is outside it). None when the
    file cannot be read as a configuration."""
    root = Path(root).resolve()
    path = root / CONFIG_FILE
    try:
        data = load_yaml(path)
    except SlipwayError as exc:
        return None, [Finding.of("config", exc)]
    findings = []
    if isinstance(data, dict) and "slipway" in data:
        try:
            require_slipway_version(data["slipway"])
        except SlipwayError as exc:
            findings.append(Finding.of("version", exc))
    try:
        return Project(root, parse_config(data), path), findings
    except SlipwayError as exc:
        return None, [*findings, Finding.of("config", exc)]


def require_slipway_version(wanted: Any) -> None:
    """One error unless the running slipway is in the range `wanted` (slipway.yaml's `slipway:` key)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    from slipway import __version__

    try:
        spec = SpecifierSet(str(wanted))
    except InvalidSpecifier as exc:
        raise SlipwayError(f"{CONFIG_FILE}: slipway: '{wanted}' is not a version range",
                           'write it as a PEP 440 range, e.g. slipway: ">=0.5,<0.6"') from exc
    if not spec.contains(__version__, prereleases=True):
        raise SlipwayError(f"{CONFIG_FILE} needs slipway {spec}, and this is slipway {__version__}",
                           f"install a slipway in that range (uv tool install 'slipway{spec}', or pip install) "
                           "and run it again; nothing was changed")


def parse_config(data: Any, where: str = CONFIG_FILE) -> ProjectConfig:
    """slipway.yaml's parsed YAML as the typed configuration (the working tree's, or a release's own)."""
    if not isinstance(data, dict):
        raise SlipwayError(f"{where}: expected a mapping with 'image' and 'environments'",
                           f"start from the example in {README_SECTION}")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error(where, exc) from exc
