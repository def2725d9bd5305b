"""The files `slipway init` writes, rendered by copier from the template of this slipway's version, and
brought forward by `slipway init --upgrade` with copier's three-way merge (the team's edits kept, conflicts
marked inline), never a silent overwrite.

Copier updates from a Git repository of the template with one tag per version. slipway ships every version
of its template that ever changed (templates/<version>/) and writes that history as a Git repository at
`~/.cache/slipway/template` before rendering or upgrading (under a file lock: two runs never write it at
once): deterministic commits, so the same history is the same repository on every machine, and
`.slipway-answers.yml` names it by that home-relative path, never this machine's. Nothing of it enters the
team's repository.
"""
from __future__ import annotations

import contextlib
import difflib
import fcntl
import filecmp
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

from slipway.errors import SlipwayError

TEMPLATES = Path(__file__).with_name("templates")
ANSWERS_FILE = ".slipway-answers.yml"
TEMPLATE_REPOSITORY = "~/.cache/slipway/template"  # what the answers name (copier expands the ~)
_FIXED_COMMITS = {"GIT_AUTHOR_NAME": "slipway", "GIT_AUTHOR_EMAIL": "slipway@localhost",
                  "GIT_COMMITTER_NAME": "slipway", "GIT_COMMITTER_EMAIL": "slipway@localhost",
                  "GIT_AUTHOR_DATE": "1980-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "1980-01-01T00:00:00Z",
                  "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


@dataclass
class Placement:
    """What init did with each rendered file (paths relative to the repository root)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # already there, byte for byte
    kept: dict[str, str] = field(default_factory=dict)  # already there and different: path -> the diff


def latest_version(history: Path = TEMPLATES) -> str:
    return str(max((Version(p.name) for p in history.iterdir() if p.is_dir()), default=Version("0")))


def history_hash(history: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in history.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(history)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def template_history(history: Path = TEMPLATES):
    """The template's history as a Git repository at TEMPLATE_REPOSITORY, one commit and tag `v<version>` per
    folder of `history`, oldest first; held under a lock while the caller renders or upgrades from it."""
    repository = Path(TEMPLATE_REPOSITORY).expanduser()
    repository.parent.mkdir(parents=True, exist_ok=True)
    with open(repository.parent / "template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wanted = history_hash(history)
        marker = repository.parent / "template.hash"
        if not (marker.is_file() and marker.read_text() == wanted and (repository / ".git").is_dir()):
            _write_history(repository, history)
            marker.write_text(wanted)
        yield repository


def _write_history(repository: Path, history: Path) -> None:
    shutil.rmtree(repository, ignore_errors=True)
    repository.mkdir()
    env = {**os.environ, **_FIXED_COMMITS}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repository, env=env, check=True, capture_output=True, text=True)

    git("init", "-q", "-b", "main")
    for version in sorted((p for p in history.iterdir() if p.is_dir()), key=lambda p: Version(p.name)):
        for old in repository.iterdir():
            if old.name != ".git":
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        shutil.copytree(version, repository, dirs_exist_ok=True)
        git("add", "-A")
        git("commit", "-q", "--allow-empty", "-m", f"slipway template {version.name}")
        git("tag", f"v{version.name}")


def render(answers: dict, out: Path, version: str, history: Path = TEMPLATES) -> None:
    """The template at `version`, answered with `answers`, into the empty folder `out`."""
    import copier

    with template_history(history):
        copier.run_copy(TEMPLATE_REPOSITORY, str(out), data=answers, vcs_ref=f"v{version}", defaults=True,
                        overwrite=True, quiet=True, unsafe=False)


def rendered_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and ".git" not in p.parts)


def compare(root: Path, out: Path) -> Placement:
    """Which rendered files init would write, which are there already, and which differ (never overwritten)."""
    placement = Placement()
    for relative in rendered_files(out):
        ours, theirs = out / relative, root / relative
        if not theirs.exists():
            placement.written.append(relative)
        elif theirs.is_file() and filecmp.cmp(ours, theirs, shallow=False):
            placement.unchanged.append(relative)
        else:
            placement.kept[relative] = _diff(theirs, ours, relative)
    return placement


def place(root: Path, out: Path, relatives: list[str]) -> None:
    for relative in relatives:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out / relative, target)


def _diff(theirs: Path, ours: Path, relative: str) -> str:
    try:
        old = theirs.read_text(errors="replace").splitlines(keepends=True)
    except (OSError, IsADirectoryError):
        old = []
    new = ours.read_text(errors="replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, f"{relative} (yours)", f"{relative} (slipway init)"))


@dataclass(frozen=True)
class Upgrade:
    before: str  # the template version the files were made from
    after: str
    changed: list[str]  # files the upgrade changed
    conflicts: list[str]  # files with inline conflict markers to resolve


def upgrade(root: Path, moved: dict, history: Path = TEMPLATES) -> Upgrade:
    """copier's update of the files init wrote: old template + the team's copy + the new template, merged.
    `moved`: the answers a newer slipway changes (the `slipway:` range it is released with), merged the same
    way; every other answer stays the team's."""
    import copier
    import yaml

    answers_path = root / ANSWERS_FILE
    if not answers_path.is_file():
        raise SlipwayError(f"{ANSWERS_FILE} not found in {root}: these files were not written by slipway init",
                           "nothing to upgrade (compare your files with slipway's README 'Configuration')")
    answers = yaml.safe_load(answers_path.read_text()) or {}
    before = str(answers.get("_commit", "")).lstrip("v")
    after = latest_version(history)
    if before and Version(before) > Version(after):
        raise SlipwayError(f"{ANSWERS_FILE} was written by slipway's template {before}, newer than this "
                           f"slipway's ({after})", "install the slipway version slipway.yaml names")
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    if status.stdout.strip():
        raise SlipwayError("the repository has uncommitted changes",
                           "commit or stash them first: the upgrade's changes are then its own diff to review")
    moved = {key: value for key, value in moved.items() if answers.get(key) != value}
    if before == after and not moved:
        return Upgrade(before, after, [], [])
    with template_history(history), contextlib.chdir(root):
        copier.run_update(".", data=moved, answers_file=ANSWERS_FILE, vcs_ref=f"v{after}", defaults=True,
                          overwrite=True, quiet=True, conflict="inline", skip_answered=True)
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root,
                             capture_output=True, text=True).stdout.splitlines()
    paths = sorted(line[3:] for line in changed)
    conflicts = [p for p in paths if (root / p).is_file() and "<<<<<<< " in (root / p).read_text(errors="replace")]
    return Upgrade(before, after, paths, conflicts)


def with_scratch():
    """A scratch folder for a render, removed after."""
    return tempfile.TemporaryDirectory(prefix="slipway-init-")
