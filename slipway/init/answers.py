"""From what a repository has (discover.Discovery) to the template's answers, and what init tells the team:
each package it moved into the runtime lock, and why. What cannot be decided from the files is a question
(`ask`: interactive on a terminal, its default with `--yes`, else an error naming the flag).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from slipway import __version__
from slipway.errors import SlipwayError
from slipway.init.discover import IMAGE_PREFECT, Discovery

# (question, choices, default) -> the answer
Ask = Callable[[str, list[str], str], str]
NO_DBT = "none"


@dataclass
class Answers:
    values: dict
    notes: list[str] = field(default_factory=list)  # one line each, said after the files


def slipway_range(version: str = __version__) -> str:
    """The slipway versions a repository's files are for: this minor release line."""
    release = Version(version).release
    return f">={release[0]}.{release[1]},<{release[0]}.{release[1] + 1}"


def moved_answers() -> dict:
    """What this slipway answers differently from an older one, whatever the repository: the range of
    slipway versions the files are for (`init --upgrade` moves `slipway:` in slipway.yaml with it)."""
    return {"slipway_range": slipway_range()}


def _prefect_3_allowed(specifier: SpecifierSet) -> bool:
    """A pin must be a 3.x; a range must leave some 3.x in (an upper bound at or below 3.0 does not)."""
    supported = SpecifierSet(IMAGE_PREFECT)
    for spec in specifier:
        version = spec.version.removesuffix(".*")
        if spec.operator in ("==", "===") and not supported.contains(version, prereleases=True):
            return False
        if spec.operator in ("<", "<=") and Version(version) <= Version("3.0"):
            return False
    return True


def answer(found: Discovery, ask: Ask, name: str | None = None, dbt: str | None = None,
           install_from: str | None = None) -> Answers:
    if not found.flows:
        raise SlipwayError("no flows found: no prefect.yaml or deployments.yaml with entry points, and no "
                           "@flow function in the repository's tracked .py files",
                           "add your flows (or your prefect.yaml) and commit them, then run slipway init")
    notes: list[str] = []
    moved: list[str] = []
    for deployment, requirement in found.pip_packages:
        if requirement not in moved:
            moved.append(requirement)
        notes.append(f"{requirement} (pip_packages of '{deployment}' in {found.declarations}) is in the runtime "
                     f"lock now: remove pip_packages from {found.declarations} (the image installs nothing at run "
                     "time)")
    prefect = found.requires("prefect")
    if prefect is None:
        moved.append(f"prefect{IMAGE_PREFECT}")
        notes.append(f"prefect{IMAGE_PREFECT} added to the runtime lock: no dependency file names Prefect")
    elif not _prefect_3_allowed(prefect.specifier):
        raise SlipwayError(f"your dependency files ask for {prefect}, outside the Prefect releases slipway "
                           f"supports in the image ({IMAGE_PREFECT})",
                           "move the flows to Prefect 3 first (Prefect's 2-to-3 upgrade guide)")
    for requirement in [*found.build_backends, *found.project_dependencies]:
        if requirement not in moved:
            moved.append(requirement)
    # Only the build backends no dependency file names already are news to the team.
    added = [req for req in dict.fromkeys(found.build_backends) if found.requires(Requirement(req).name) is None]
    if added:
        notes.append(f"{', '.join(added)} added to the runtime lock: the packages "
                     f"{', '.join(found.packages)} are built in the image without network")
    if dbt is None:
        dbt = found.dbt_projects[0] if len(found.dbt_projects) == 1 else NO_DBT
        if len(found.dbt_projects) > 1:
            dbt = ask("Which dbt project goes into the image?", [*found.dbt_projects, NO_DBT],
                      found.dbt_projects[0])
    elif dbt != NO_DBT and dbt not in found.dbt_projects:
        raise SlipwayError(f"--dbt {dbt}: no dbt_project.yml there that Git tracks",
                           f"use one of: {', '.join([*found.dbt_projects, NO_DBT])}")
    if dbt != NO_DBT and not found.has_dbt_adapter():
        notes.append(f"no dbt adapter (dbt-duckdb, dbt-snowflake, ...) in your dependency files: add yours, or "
                     f"the image cannot parse {dbt}/dbt_project.yml")
    values = {
        "name": name or found.name,
        "code": found.code,
        "dbt": "" if dbt == NO_DBT else dbt,
        "packages": found.packages,
        "deployments": found.declarations or "deployments.yaml",
        "flows": [] if found.declarations else [{"name": f.name, "entrypoint": f.entrypoint} for f in found.flows],
        "work_pool": found.work_pool or f"{name or found.name}-docker",
        "dependency_files": found.dependency_files,
        "packages_moved": moved,
        "slipway_range": slipway_range(),
        "slipway_install": install_from or f"slipway=={__version__}",
    }
    return Answers(values, notes)
