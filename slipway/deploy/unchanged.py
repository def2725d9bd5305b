"""A redeploy that changes nothing, answered in about a second.

`deploy` of a release the environment already runs exactly writes nothing, but the full path that finds this
out imports Prefect (about 2.5 s on this project's machines), loads and validates every declaration, and
plans. So when a full run ends with the environment exactly as the release declares it — nothing to write,
or everything written — slipway remembers, in the clone's git directory (`.git/slipway/`, never in the tree):

- the *inputs* of that plan: the commit (a clean tree only: the commit then names every file slipway
  reads), the environment and its API, the image digest its tag resolves to, slipway's own code, the
  installed Prefect packages' versions, and the flags (`--rollback`, `--prune`);
- a *fingerprint* of what Prefect held: the work pool, every deployment in it and each one the release
  declares (deploy/live.py's values: exactly the fields the plan compares), slipway's automations, the last
  entry of the environment's history and the pull-credentials block's id;
- what a deploy, and a plan, print for a release that changes nothing.

A later deploy (or plan) with the same inputs reads the same things with plain HTTP (deploy/prefect_reads.py, no Prefect
import) and, when the fingerprint matches, nothing can differ from what the full run found: it says so and
prints the same result. Anything else — another commit, a dirty tree, a deployment edited by hand, a pause,
a new deployment in the pool, a read that fails — takes the full path, which decides as always.

A fingerprint is remembered only from a plan made of the very reads it hashes (after the full run, read again
and planned again, with no write expected): a change someone makes meanwhile shows up as a plan with writes,
and then nothing is remembered. Remembering never fails a release: it is skipped with a detail line.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio

from slipway.deploy.history import history_key
from slipway.deploy.live import LiveSnapshot
from slipway.deploy.plan import Plan
from slipway.deploy.prefect_reads import PlainReads
from slipway.deploy.pull import DOCKER_CREDENTIALS_BLOCK_TYPE
from slipway.output import Reporter

FORMAT = 1  # of the remembered file; another format is simply not recalled
STALE_TMP_SECONDS = 600  # a temporary file this old belongs to a run that was killed while remembering
# Why a told deploy or plan writes nothing: the end of its step line (the benchmark looks for it to say which
# path a run took).
TOLD_REASON = "Prefect holds what slipway last checked for this commit"
PACKAGES = ("prefect", "prefect-docker", "prefect-kubernetes")  # their models shape what is written and read
SLIPWAY_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Printed:
    json: dict[str, Any]
    human: str


@dataclass(frozen=True)
class Unchanged:
    """A deploy or plan that found the environment as a full run left it: what a full deploy and a full plan
    print for it (results.py wrote both)."""

    environment: str
    reference: str
    deploy: Printed
    plan: Printed


@dataclass(frozen=True)
class Inputs:
    """Everything a deploy's plan follows from, besides what Prefect holds."""

    root: Path
    environment: str
    api_url: str
    repository: str
    commit: str
    digest: str
    allow_downgrade: bool
    prune: bool

    def key(self) -> str:
        facts = {"format": FORMAT, "environment": self.environment, "api_url": self.api_url,
                 "repository": self.repository, "commit": self.commit, "digest": self.digest,
                 "allow_downgrade": self.allow_downgrade, "prune": self.prune, "slipway": _slipway_code(),
                 "packages": {name: _version(name) for name in PACKAGES}}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class WhatToRead:
    pool: str
    names: list[str]  # the release's deployments
    history: str  # the history's artifact key
    block: str | None  # the pull-credentials block, when the environment names one


async def recall(inputs: Inputs, target, reporter: Reporter) -> Unchanged | None:
    """What a full run printed for these inputs, when Prefect still holds what it found; else None."""
    remembered = _load(inputs)
    if remembered is None or remembered.get("key") != inputs.key():
        return None
    try:
        reads = WhatToRead(**remembered["read"])
        known = Unchanged(inputs.environment, remembered["reference"], Printed(**remembered["deploy"]),
                          Printed(**remembered["plan"]))
    except (KeyError, TypeError):  # a file this code did not write: not evidence of anything
        return None
    try:
        _, fingerprint = await _read(target, reads)
    except Exception as exc:  # any failure: the full path reads again, retries and explains
        reporter.detail(f"could not compare with the last check ({type(exc).__name__}: {exc}): checking fully")
        return None
    if fingerprint != remembered["fingerprint"]:
        reporter.detail("Prefect changed since slipway last checked this release: checking fully")
        return None
    return known


async def remember(inputs: Inputs, target, reads: WhatToRead, plan_of: Callable[[LiveSnapshot], Plan],
                   render: Callable[[Plan], tuple[Printed, Printed]], reporter: Reporter) -> None:
    """Read Prefect again and plan against those reads; with nothing to write, remember them (see the module
    doc). Skipped, with a detail line, when anything is off: it only ever makes a later run slower."""
    try:
        snapshot, fingerprint = await _read(target, reads)
        plan = plan_of(snapshot)
        if plan.writes:
            reporter.detail("Prefect changed while this run checked it: not remembered as unchanged")
            return
        deployed, planned = render(plan)
        _store(inputs, {"format": FORMAT, "key": inputs.key(), "fingerprint": fingerprint,
                        "read": dataclasses.asdict(reads), "reference": plan.reference,
                        "deploy": dataclasses.asdict(deployed), "plan": dataclasses.asdict(planned)})
    except Exception as exc:
        reporter.detail(f"not remembered as unchanged ({type(exc).__name__}: {exc})")


def what_to_read(target, plan: Plan) -> WhatToRead:
    env = target.env
    block = env.registry_credentials_block if not env.image_pull_secret else None
    return WhatToRead(plan.pool.name, [row.name for row in plan.rows], history_key(target.repository, target.name),
                      block)


async def _read(target, reads: WhatToRead) -> tuple[LiveSnapshot, str]:
    return await anyio.to_thread.run_sync(_read_now, target, reads)


def _read_now(target, reads: WhatToRead) -> tuple[LiveSnapshot, str]:
    with PlainReads(target.prefect) as api:
        history = api.pool.submit(api.last_artifact_data, reads.history)
        block = api.pool.submit(api.block_document_id, DOCKER_CREDENTIALS_BLOCK_TYPE, reads.block) \
            if reads.block else None
        snapshot = api.snapshot(reads.pool, reads.names)
        held = {"snapshot": dataclasses.asdict(snapshot), "history": history.result(),
                "block": block.result() if block else None}
    return snapshot, hashlib.sha256(json.dumps(held, sort_keys=True, default=str).encode()).hexdigest()


def _slipway_code() -> str:
    digest = hashlib.sha256()
    for path in sorted(SLIPWAY_ROOT.rglob("*.py")):
        digest.update(str(path.relative_to(SLIPWAY_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _state_file(inputs: Inputs) -> Path:
    git_dir = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], cwd=inputs.root, capture_output=True,
                             text=True, check=True).stdout.strip()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in inputs.environment)
    return Path(git_dir) / "slipway" / f"unchanged-{safe}.json"


def _load(inputs: Inputs) -> dict[str, Any] | None:
    try:
        data = json.loads(_state_file(inputs).read_text())
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None
    return data if isinstance(data, dict) and data.get("format") == FORMAT else None


def _sweep_stale(path: Path) -> None:
    """Remove the temporary files of runs killed between writing and renaming (SIGKILL skips every cleanup).
    Only old ones: a run writing now owns a file seconds old."""
    for stale in path.parent.glob(f"{path.name}*.tmp"):
        with contextlib.suppress(OSError):  # another run swept it first
            if time.time() - stale.stat().st_mtime > STALE_TMP_SECONDS:
                stale.unlink()


def _store(inputs: Inputs, data: dict[str, Any]) -> None:
    """Written whole or not at all (a rename): two runs at once leave one of their files, both true."""
    path = _state_file(inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
