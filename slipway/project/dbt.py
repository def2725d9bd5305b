"""The repository's dbt projects, read as files (no dbt here: dbt is the image's, image/dbt.py parses there).

`env_var('NAME')` without a default makes `dbt parse` fail wherever NAME is unset: these are named with the
file and line that read them, so a parse failure says where to give a default.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

PROJECT_FILE = "dbt_project.yml"
# `env_var('NAME')` or `env_var("NAME")` closed right after the name: no default.
_NO_DEFAULT = re.compile(r"""env_var\(\s*(['"])([^'"]+)\1\s*\)""")
_SOURCES = ("*.yml", "*.yaml", "*.sql")


def dbt_projects(root: Path) -> list[str]:
    """The folders (relative to `root`, "." for the root) holding a dbt_project.yml that Git tracks or would
    track: what a clone has. A dbt package installed under dbt_packages/ is not the team's project."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                           PROJECT_FILE, f"*/{PROJECT_FILE}"], cwd=root, capture_output=True, text=True,
                          check=False)
    found = {str(Path(p).parent) for p in proc.stdout.split("\0") if p}
    return sorted(p for p in found if "dbt_packages" not in Path(p).parts)


def env_vars_without_default(project_dir: Path) -> dict[str, str]:
    """NAME -> `file:line` of the first `env_var('NAME')` without a default in the project's YAML and SQL
    (profiles.yml included), relative to `project_dir`."""
    found: dict[str, str] = {}
    for pattern in _SOURCES:
        for path in sorted(project_dir.rglob(pattern)):
            relative = path.relative_to(project_dir)
            if relative.parts[0] in ("target", "dbt_packages", "logs"):
                continue
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                for match in _NO_DEFAULT.finditer(line):
                    found.setdefault(match.group(2), f"{relative}:{number}")
    return found
