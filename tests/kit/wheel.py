"""slipway as users get it: the wheel built from this working tree, installed into a virtualenv of its own.

The venv has nothing else of this repository: no source tree on its path, no example, no tests — only the
wheel and what its metadata asks for, resolved from the package index as `uv tool install` or `pip install`
would (no lock of ours). Commands run in a subprocess from a directory outside this repository, so a
feature that only works inside it fails here.
"""
from __future__ import annotations

import os
import shutil
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


# --- the next slipway: what an upgrade installs -------------------------------------------------------------

# A change the next version's template makes to slipway.yaml: one line more in the `local` environment.
TEMPLATE_ANCHOR = "      image_pull_policy: IfNotPresent  # the image is pinned by digest: a present layer is the right one\n"
TEMPLATE_ADDITION = "      auto_remove: false\n"


def next_version(version: str) -> str:
    major, minor = (int(part) for part in version.split(".")[:2])
    return f"{major}.{minor + 1}.0"


def add_next_template(templates: Path, current: str, nxt: str) -> None:
    """templates/<nxt>: the current template with TEMPLATE_ADDITION in slipway.yaml's `local` environment."""
    shutil.copytree(templates / current, templates / nxt)
    template = templates / nxt / "slipway.yaml.jinja"
    text = template.read_text()
    assert TEMPLATE_ANCHOR in text, "the anchor line left slipway's template: change TEMPLATE_ANCHOR"
    template.write_text(text.replace(TEMPLATE_ANCHOR, TEMPLATE_ANCHOR + TEMPLATE_ADDITION))


def build_next_wheel(workdir: Path) -> tuple[Path, str]:
    """The wheel of a next minor version of this working tree, whose template changed (add_next_template):
    built from a copy of what the sdist holds (slipway/, pyproject.toml, README.md)."""
    from slipway import __version__
    from slipway.init.scaffold import latest_version

    source = workdir / "source"
    source.mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "slipway", source / "slipway", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    nxt = next_version(__version__)
    init = source / "slipway" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', f'__version__ = "{nxt}"'))
    add_next_template(source / "slipway" / "init" / "templates", latest_version(), nxt)
    subprocess.run([sys.executable, "-m", "uv", "build", "--wheel", "--no-build-isolation", "--python",
                    sys.executable, "--out-dir", str(workdir / "dist"), "--quiet", str(source)],
                   check=True, capture_output=True, text=True)
    (wheel,) = (workdir / "dist").glob("slipway-*.whl")
    return wheel, nxt
