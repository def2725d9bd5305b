"""The runtime lock (requirements/runtime.txt): requirements/runtime.in resolved with hashes by uv, for the
image's Python (3.11, Linux). The team's own dependency files are included by runtime.in (`-r`), so their
pins — their Prefect version among them — are what the image gets.

The index's view can be frozen with uv's own UV_EXCLUDE_NEWER (an ISO date): the same inputs then resolve to
the same lock on any day.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from slipway.errors import SlipwayError

LOCK_INPUT = "requirements/runtime.in"
LOCK_FLAGS = ["--python-version", "3.11", "--python-platform", "linux", "--generate-hashes", "--quiet",
              "--custom-compile-command", "slipway init --lock"]
COMPILE_SECONDS = 600


def uv_command() -> str:
    try:
        from uv import find_uv_bin
        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise SlipwayError("uv is not installed beside slipway", "reinstall slipway (it depends on uv), "
                               "or install uv: https://docs.astral.sh/uv/") from None
        return found


def compile_lock(workdir: Path, lock: Path) -> None:
    """`uv pip compile` of `workdir`/requirements/runtime.in into `lock` (written only once resolved: the
    header names `slipway init --lock`, never the scratch path)."""
    try:
        proc = subprocess.run([uv_command(), "pip", "compile", *LOCK_FLAGS, "-o", str(lock), LOCK_INPUT], cwd=workdir,
                              capture_output=True, text=True, timeout=COMPILE_SECONDS)
    except subprocess.TimeoutExpired as exc:
        raise SlipwayError(f"resolving {LOCK_INPUT} took longer than {COMPILE_SECONDS}s",
                           "check the package index is reachable (uv's UV_INDEX_URL, a proxy)") from exc
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        cause = " ".join(lines[-3:])[:400] or "uv failed"
        raise SlipwayError(f"the runtime lock cannot be resolved from {LOCK_INPUT}: {cause}",
                           "fix the requirement it names in your dependency files (or in runtime.in), then run "
                           "slipway init again")
