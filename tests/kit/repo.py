"""The repository under test, Git helpers, and committed snapshots of the working tree."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The example's image layout, as its slipway.yaml says it: for a test's own slipway.yaml on the example's files.
EXAMPLE_LAYOUT = {"dockerfile": "images/flow/Dockerfile", "code": ["flows", "data"]}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "slipway tests", "GIT_AUTHOR_EMAIL": "tests@slipway.invalid",
    "GIT_COMMITTER_NAME": "slipway tests", "GIT_COMMITTER_EMAIL": "tests@slipway.invalid",
    "GIT_AUTHOR_DATE": "2026-01-02T03:04:05+00:00", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05+00:00",
}


def git(cwd: Path, *args: str, date: str | None = None) -> str:
    env = {**os.environ, **GIT_ENV}
    if date:  # a later commit, for tests that order releases by commit time
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def snapshot_repo(dest: Path, source: Path = REPO_ROOT) -> Path:
    """Copy the working tree's files (tracked + untracked, not ignored) into a fresh repo with one commit.

    The tests and benchmarks release such a snapshot, so uncommitted edits are tested without dirtying the
    real tree, and the snapshot is clean by construction."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=source, check=True, capture_output=True).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = source / rel
        if not src.is_file():  # deleted in the working tree but still in the index
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    _without_verification(dest / "slipway.yaml")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "snapshot")
    return dest


def _without_verification(config: Path) -> None:
    """The example verifies each release with a run that needs a worker (`make demo` starts one); a snapshot is
    released by tests and benchmarks with no worker, so its `verify:` blocks are taken out, line by line (the
    comments stay). A test that verifies writes its own (tests/deploy/test_verify.py)."""
    if not config.is_file():
        return
    kept, block = [], None
    for line in config.read_text().splitlines(keepends=True):
        indent = len(line) - len(line.lstrip())
        if block is not None and (not line.strip() or indent > block):
            continue
        block = indent if line.strip() == "verify:" else None
        if block is None:
            kept.append(line)
    config.write_text("".join(kept))


def commit_all(root: Path, message: str = "change", date: str | None = None) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message, date=date)
    return git(root, "rev-parse", "HEAD")


def change_a_flow(root: Path, marker: str, date: str | None = None) -> str:
    """A one-line code change to a flow, committed: what a typical code-only release looks like."""
    flow = root / "flows" / "extract_load.py"
    flow.write_text(flow.read_text() + f"\n# change {marker}\n")
    return commit_all(root, f"change {marker}", date=date)
