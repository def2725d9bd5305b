"""What an existing repository already has, read as files (nothing imported, nothing run): where the flows and
their declarations are, the dbt project, the repository's own Python packages, the dependency files, and
what prefect.yaml asks the worker to install at run time (`pip_packages`). `slipway init` answers its
template from this; what it cannot decide alone is a question (init.decide).
"""
from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from slipway.errors import SlipwayError
from slipway.init.lock import LOCK_INPUT
from slipway.project.dbt import dbt_projects

DECLARATION_FILES = ("prefect.yaml", "deployments.yaml")
DEPENDENCY_FILES = ("requirements.txt", "requirements/requirements.txt", "requirements/base.txt",
                    "requirements/prod.txt")
IMAGE_PREFECT = ">=3.0,<4"  # the Prefect releases the image probe is tested with (README "Install slipway")
# `@flow` or `@flow(...)` (also `@prefect.flow`), then the decorated function's name.
_FLOW = re.compile(r"^@(?:prefect\.)?flow\b[^\n]*\n(?:@[^\n]*\n)*(?:async\s+)?def\s+([A-Za-z_]\w*)", re.M)
_DEFAULT_BUILD_BACKEND = ["setuptools", "wheel"]


@dataclass(frozen=True)
class Flow:
    entrypoint: str  # path/to/file.py:function
    name: str  # the deployment's name, when init declares it


@dataclass
class Discovery:
    root: Path
    name: str
    declarations: str | None = None  # prefect.yaml or deployments.yaml, when the team has one
    flows: list[Flow] = field(default_factory=list)  # the declared entry points, or the flows found
    dbt_projects: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    dependency_files: list[str] = field(default_factory=list)
    requirements: list[Requirement] = field(default_factory=list)  # what the dependency files ask for
    project_dependencies: list[str] = field(default_factory=list)  # the root pyproject.toml's [project]
    pip_packages: list[tuple[str, str]] = field(default_factory=list)  # (deployment, requirement)
    work_pool: str | None = None  # the first declared deployment's pool
    build_backends: list[str] = field(default_factory=list)  # the packages' build requirements

    @property
    def code(self) -> list[str]:
        """The top folders the entry points live in (a file at the root is its own code path)."""
        tops = [PurePosixPath(flow.entrypoint.rpartition(":")[0]).parts[0] for flow in self.flows]
        return list(dict.fromkeys(tops))

    def requires(self, distribution: str) -> Requirement | None:
        wanted = _normal(distribution)
        return next((req for req in self.requirements if _normal(req.name) == wanted), None)

    def has_dbt_adapter(self) -> bool:
        return any(_normal(req.name).startswith("dbt-") and _normal(req.name) != "dbt-core"
                   for req in self.requirements)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tracked_files(root: Path) -> list[str]:
    """What a clone has: files Git tracks or would track (.gitignore applied)."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SlipwayError(f"{root} is not a Git repository", "run slipway init in the repository's clone "
                           "(git init first for a new one): releases are made from commits")
    return sorted(p for p in proc.stdout.split("\0") if p)


def image_name(root: Path) -> str:
    """The folder's name as an image repository name: lowercase letters, digits and dashes."""
    name = re.sub(r"[^a-z0-9]+", "-", root.resolve().name.lower()).strip("-")
    return name or "pipelines"


def discover(root: Path) -> Discovery:
    files = tracked_files(root)
    found = Discovery(root=root, name=image_name(root))
    found.declarations = next((name for name in DECLARATION_FILES if name in files), None)
    if found.declarations is not None:
        _read_declarations(found)
    else:
        found.flows = _flows_in(root, [f for f in files if f.endswith(".py")])
    found.dbt_projects = dbt_projects(root)
    found.packages = sorted(str(PurePosixPath(f).parent) for f in files
                            if PurePosixPath(f).name in ("pyproject.toml", "setup.py") and "/" in f)
    found.packages = list(dict.fromkeys(found.packages))
    for package in found.packages:
        found.build_backends += _build_requirements(root / package)
    found.dependency_files = [f for f in DEPENDENCY_FILES if f in files]
    for path in found.dependency_files:
        found.requirements += _requirements_in(root / path)
    if LOCK_INPUT in files:  # a runtime lock input of the team's own (init keeps it): what the image will hold
        found.requirements += _requirements_in(root / LOCK_INPUT)
    if "pyproject.toml" in files:
        declared = _project_dependencies(root / "pyproject.toml")
        found.requirements += declared
        found.project_dependencies = [str(req) for req in declared]
    return found


def _read_declarations(found: Discovery) -> None:
    path = found.root / found.declarations
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SlipwayError(f"{found.declarations} cannot be read ({' '.join(str(exc).split())[:200]})",
                           "fix its YAML, then run slipway init again") from exc
    deployments = document.get("deployments") if isinstance(document, dict) else None
    for index, deployment in enumerate(deployments if isinstance(deployments, list) else []):
        if not isinstance(deployment, dict) or not isinstance(deployment.get("entrypoint"), str):
            continue
        name = str(deployment.get("name") or f"deployment-{index}")
        found.flows.append(Flow(deployment["entrypoint"], name))
        pool = deployment.get("work_pool") if isinstance(deployment.get("work_pool"), dict) else {}
        if found.work_pool is None and isinstance(pool.get("name"), str) and "{{" not in pool["name"]:
            found.work_pool = pool["name"]
        variables = pool.get("job_variables") if isinstance(pool.get("job_variables"), dict) else {}
        for requirement in variables.get("pip_packages") or []:
            found.pip_packages.append((name, str(requirement)))


def _flows_in(root: Path, python_files: list[str]) -> list[Flow]:
    """Every `@flow` function of the repository's Python files (read, not imported)."""
    flows = []
    for relative in python_files:
        if PurePosixPath(relative).parts[0] in ("tests", "test", "docs"):
            continue
        try:
            text = (root / relative).read_text(errors="replace")
        except OSError:
            continue
        if "flow" not in text:
            continue
        for match in _FLOW.finditer(text):
            flows.append(Flow(f"{relative}:{match.group(1)}", match.group(1).replace("_", "-")))
    return flows


def _parsed(lines) -> list[Requirement]:
    """The lines that are requirements (anything else — an option, an include, a URL — is not ours to read)."""
    found = []
    for line in lines:
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            continue
    return found


def _requirements_in(path: Path) -> list[Requirement]:
    """The requirements a requirements file names (options, includes and editable lines skipped)."""
    lines = (line.split(" #", 1)[0].strip() for line in path.read_text(errors="replace").splitlines())
    return _parsed(line for line in lines if line and not line.startswith(("#", "-")))


def _project_dependencies(path: Path) -> list[Requirement]:
    try:
        project = tomllib.loads(path.read_text()).get("project") or {}
    except (OSError, tomllib.TOMLDecodeError):
        return []
    return _parsed(project.get("dependencies") or [])


def _build_requirements(package: Path) -> list[str]:
    """A package's build-system requirements (setuptools and wheel without a pyproject.toml that names them):
    the image installs it without build isolation, from the lock."""
    try:
        system = tomllib.loads((package / "pyproject.toml").read_text()).get("build-system") or {}
    except (OSError, tomllib.TOMLDecodeError):
        return list(_DEFAULT_BUILD_BACKEND)
    return [str(r) for r in system.get("requires") or _DEFAULT_BUILD_BACKEND]
