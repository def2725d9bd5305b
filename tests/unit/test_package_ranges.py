"""The tool's declared ranges (pyproject.toml) hold the versions this repository's lock pins
(requirements/dev.txt): the venv the suite runs in is a venv the package allows, so what is tested is what
`uv tool install slipway` may resolve to. Pure logic over the two files."""
from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.kit.repo import REPO_ROOT


def locked() -> dict[str, str]:
    text = (REPO_ROOT / "requirements" / "dev.txt").read_text()
    return {canonicalize_name(name): version for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


def test_every_dependency_of_the_package_is_locked_inside_its_range():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    outside = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is a dependency of slipway but not in requirements/dev.txt"
        if not requirement.specifier.contains(pins[name], prereleases=True):
            outside[requirement.name] = (pins[name], str(requirement.specifier))
    assert not outside, f"locked versions outside the package's ranges: {outside}"
