"""slipway as users get it: the wheel built from this working tree, installed into a virtualenv of its own.

The venv has nothing else of this repository: no source tree on its path, no example, no tests — only the
wheel and what its metadata asks for, resolved from the package index as `uv tool install` or `pip install`
would (no lock of ours). Commands run in a subprocess from a directory outside this repository, so a
feature that only works inside it fails here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.kit.outcome import Outcome
from tests.kit.repo import REPO_ROOT

INSTALL_SECONDS = 600  # a cold package cache downloads Prefect and its closure


@dataclass(frozen=True)
class InstalledSlipway:
    wheel: Path
    venv: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "slipway"

    def run(self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> Outcome:
        """`slipway <args>` in `cwd`, with this process's environment (Docker, Git) plus `env`, but none of
        this repository's Python path."""
        environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SLIPWAY_ROOT")}
        environ.update(env or {})
        proc = subprocess.run([str(self.command), *args], cwd=cwd, env=environ, capture_output=True, text=True,
                              timeout=timeout)
        return Outcome(proc.returncode, proc.stdout, proc.stderr)

    def wheel_files(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as wheel:
            return wheel.namelist()


def build_wheel(out_dir: Path) -> Path:
    """The wheel of this working tree, with the standard tooling (uv build, the pyproject's backend from
    this venv's lock, so no download)."""
    subprocess.run([sys.executable, "-m", "uv", "build", "--wheel", "--no-build-isolation", "--python",
                    sys.executable, "--out-dir", str(out_dir), "--quiet", str(REPO_ROOT)],
                   check=True, capture_output=True, text=True)
    wheels = sorted(out_dir.glob("slipway-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install(wheel: Path, venv: Path) -> InstalledSlipway:
    """A fresh venv (no system site-packages) holding the wheel and its declared dependencies."""
    subprocess.run([sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(venv)],
                   check=True, capture_output=True, text=True)
    subprocess.run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                    str(wheel)], check=True, capture_output=True, text=True, timeout=INSTALL_SECONDS)
    return InstalledSlipway(wheel, venv)
