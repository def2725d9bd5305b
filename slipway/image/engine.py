"""The Docker engine: find it, or start one on Debian, then hand out a docker-py client.

scripts/ensure-docker.sh holds the "find or start" policy so that Make, CI and this module share it.
"""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException

from slipway.errors import SlipwayError

ENSURE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-docker.sh"


def docker_client(start_if_needed: bool = True) -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except DockerException as exc:
        if not start_if_needed or not ENSURE_SCRIPT.exists():
            raise SlipwayError("no Docker engine answers",
                               "start Docker (Desktop, or dockerd: `systemctl start docker`)") from exc
    proc = subprocess.run(["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True)
    if proc.returncode != 0:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "unknown reason"
        raise SlipwayError(f"no Docker engine answers and none could be started ({reason})",
                           "start Docker (Desktop or dockerd) and retry")
    return docker_client(start_if_needed=False)


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def stream_build(stream: Iterable[dict[str, Any]], on_line) -> str:
    """Consume a docker-py low-level build stream; return the built image ID.

    On failure raise BuildFailed naming the Dockerfile step and the error lines of its output, so the user
    sees the failing command's own error (a compiler's message, say) rather than "returned a non-zero code: 2".
    """
    image_id = None
    step = "?"
    step_output: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise BuildFailed(step, _summarize(step_output) or detail.strip())
        for line in chunk.get("stream", "").splitlines():
            if not line.strip():
                continue
            if line.startswith("Step ") and " : " in line:
                step, step_output = _short(line.split(" : ", 1)[1].strip()), []
            else:
                step_output.append(line.rstrip())
            on_line(line.rstrip())
        aux = chunk.get("aux") or {}
        if "ID" in aux:
            image_id = aux["ID"]
    if not image_id:
        raise BuildFailed(step, "the engine reported no image ID")
    return image_id


def _summarize(lines: list[str]) -> str:
    """The failing step's error, folded to one line: from its first error line, at most five lines."""
    lines = [_clean(ln) for ln in lines]
    lines = [ln for ln in lines if ln and not ln.startswith(("Removing intermediate container", "---> "))]
    first = next((i for i, ln in enumerate(lines) if "error" in ln.lower()), max(len(lines) - 3, 0))
    text = " | ".join(lines[first:first + 5])
    return text if len(text) <= 500 else text[:497] + "..."


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CLOCK = re.compile(r"^\d\d:\d\d:\d\d(\.\d+)?\s+")


def _clean(line: str) -> str:
    """Tool output without colour codes and leading clock times (some build tools print both)."""
    return _CLOCK.sub("", _ANSI.sub("", line).strip()).strip()


def _short(step: str) -> str:
    return step if len(step) <= 70 else step[:67] + "..."


class BuildFailed(Exception):
    """A Dockerfile step failed: which step, and the error lines of its output."""

    def __init__(self, step: str, detail: str):
        self.step = step
        self.detail = detail
        super().__init__(f"step '{step}': {detail}")


PULL_FIX = "check that the Docker engine reaches the registry and that the credentials may pull from it"


def pull(client: docker.DockerClient, repository: str, tag: str, auth_config: dict | None, on_line) -> None:
    """Pull `repository:tag` into the engine (credentials as docker-py's auth_config: an API header, never
    argv); a failure is a SlipwayError with the engine's message."""
    try:
        for line in client.api.pull(repository, tag=tag, stream=True, decode=True, auth_config=auth_config):
            if "error" in line or "errorDetail" in line:
                message = (line.get("errorDetail") or {}).get("message") or line.get("error") or "unknown error"
                raise SlipwayError(f"pulling {repository}:{tag} failed: {message}", PULL_FIX)
            status = line.get("status")
            if status and status not in ("Downloading", "Extracting", "Waiting"):
                on_line(f"{line['id']}: {status}" if line.get("id") else status)
    except docker.errors.APIError as exc:
        raise SlipwayError(f"pulling {repository}:{tag} failed: {' '.join(str(exc.explanation or exc).split())}",
                           PULL_FIX) from exc

