#!/usr/bin/env python3
"""This repository's entry point: `python build.py <verb> [--env ENV] [--json]`, the same CLI as the installed
`slipway` command (pyproject.toml's console script). Everything lives in slipway/.

Started by a Python without slipway's dependencies (`python3 build.py ...` outside the virtualenv), it
re-executes itself with the project's `.venv/bin/python` when there is one, and otherwise says in one line how
to get one: never a ModuleNotFoundError traceback. Only the standard library is used before that check.
"""
import importlib.util
import os
import sys
from pathlib import Path

# A few of the tool's dependencies, looked up without importing them (cheap): one missing means the
# interpreter is not the tool's virtualenv.
DEPENDENCIES = ("anyio", "pydantic", "yaml", "docker", "prefect")
REEXEC_MARK = "SLIPWAY_REEXECUTED"  # set for the re-executed process, so a broken .venv cannot loop


def missing_dependency() -> "str | None":
    for name in DEPENDENCIES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def use_the_project_venv() -> None:
    """Re-execute with `.venv/bin/python` beside this file (same argv), or exit 1 with one line."""
    venv_python = Path(__file__).resolve().parent / ".venv" / "bin" / "python"
    if venv_python.is_file() and os.access(venv_python, os.X_OK) and not os.environ.get(REEXEC_MARK):
        os.environ[REEXEC_MARK] = "1"
        os.execv(str(venv_python), [str(venv_python), *sys.argv])
    sys.stderr.write(f"error: slipway's dependencies are not installed for {sys.executable or 'this Python'}; "
                     "run make venv (or use .venv/bin/python build.py ...)\n")
    sys.exit(1)


if __name__ == "__main__":
    if missing_dependency() is not None:
        use_the_project_venv()
    from slipway.cli import entry_point

    entry_point()  # the same CLI as the installed `slipway` command
