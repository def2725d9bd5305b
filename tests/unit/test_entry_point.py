"""`python3 build.py ...` with a Python that lacks slipway's dependencies: build.py re-executes itself with the
project's `.venv/bin/python` (same arguments), or says in one line to run `make venv`; never a traceback.

The Python without the dependencies is this very interpreter started with `-I -S` (no site-packages), so the
test does not depend on what the machine's system Python has installed.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit.repo import REPO_ROOT


def copy_tool(root: Path) -> Path:
    """build.py and slipway/ in a directory of their own (no .venv yet)."""
    root.mkdir()
    shutil.copy2(REPO_ROOT / "build.py", root / "build.py")
    shutil.copytree(REPO_ROOT / "slipway", root / "slipway", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def bare_python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-I", "-S", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_without_a_venv_it_says_to_run_make_venv_in_one_line(tmp_path):
    root = copy_tool(tmp_path / "tool")
    done = bare_python(str(root / "build.py"), "releases", "--env", "local", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"error: slipway's dependencies are not installed for {sys.executable}; run make venv "
        "(or use .venv/bin/python build.py ...)"]


def test_with_the_project_venv_it_runs_there_with_the_same_arguments(tmp_path):
    root = copy_tool(tmp_path / "tool")
    (root / ".venv").symlink_to(Path(sys.prefix))  # this test run's virtualenv, which has the dependencies
    done = bare_python(str(root / "build.py"), "deploy", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python build.py deploy ")
    usage_error = bare_python(str(root / "build.py"), "deploy", "--no-such-option", cwd=tmp_path)
    assert usage_error.returncode == 2 and usage_error.stderr.startswith("error: unrecognized arguments")


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs /bin/sh")
def test_a_broken_venv_is_not_re_executed_forever(tmp_path):
    root = copy_tool(tmp_path / "tool")
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')  # a .venv whose Python lacks them too
    python.chmod(0o755)
    done = bare_python(str(root / "build.py"), "releases", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: slipway's dependencies are not installed for {sys.executable}; run make venv "
        "(or use .venv/bin/python build.py ...)"]
