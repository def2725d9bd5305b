"""Facts about the commit being released, read with the git CLI.

Everything downstream is keyed by these facts: the image tags, the OCI labels, the deployment version.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from slipway.errors import SlipwayError

DIRTY_SUFFIX = "-dirty"
# Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
_TAG_INVALID = re.compile(r"[^A-Za-z0-9_.-]")
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>(?!//).+)$")  # git@github.com:org/repo.git


def _git(root: Path, *args: str, check: bool = True) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise SlipwayError("git is not installed", "install git and retry") from exc
    if check and proc.returncode != 0:
        raise SlipwayError(f"git {' '.join(args)} failed in {root}: {proc.stderr.strip()}",
                           "check the clone with `git status` (or `git fsck`) and retry")
    return proc.stdout.strip()


@dataclass(frozen=True)
class GitFacts:
    root: Path
    sha: str  # 40 hex characters
    tag: str | None  # the tag HEAD is exactly at, if any
    dirty: bool  # uncommitted or untracked (not ignored) files: the build context is not the commit
    commit_time: str  # committer date, ISO 8601: the image's `created`, so a rebuild yields the same labels
    source: str | None  # the repository's web address (`repository_url` of the origin remote); None without one

    @property
    def short_sha(self) -> str:
        return self.sha[:12]

    def image_tags(self) -> list[str]:
        """Tags for this commit's image: full SHA, 12-char SHA, and the Git tag when HEAD is exactly at one."""
        tags = [self.sha, self.short_sha]
        if self.tag:
            tags.append(docker_tag_for(self.tag))
        if self.dirty:
            tags = [t + DIRTY_SUFFIX for t in tags]
        return tags

    @property
    def version(self) -> str:
        """The human version label: the Git tag if any, else the short SHA (suffixed when dirty)."""
        base = self.tag or self.short_sha
        return base + DIRTY_SUFFIX if self.dirty else base


def docker_tag_for(git_tag: str) -> str:
    """A Git tag as a valid Docker tag (`release/1.2` -> `release-1.2`)."""
    tag = _TAG_INVALID.sub("-", git_tag)
    if tag[0] in ".-":
        tag = "_" + tag[1:]
    return tag[:128 - len(DIRTY_SUFFIX)]


def read_git_facts(root: Path | str = ".") -> GitFacts:
    root = Path(root).resolve()
    inside = _git(root, "rev-parse", "--is-inside-work-tree", check=False)
    if inside != "true":
        raise SlipwayError(f"{root} is not a Git repository", "run slipway from a clone of your repository")
    top = Path(_git(root, "rev-parse", "--show-toplevel"))
    sha = _git(top, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise SlipwayError(f"{top} has no commit yet", "commit your work, then build")
    tag = _git(top, "describe", "--tags", "--exact-match", "HEAD", check=False) or None
    dirty = bool(_git(top, "status", "--porcelain", "--untracked-files=normal"))
    commit_time = _git(top, "show", "-s", "--format=%cI", "HEAD")
    source = repository_url(_git(top, "config", "--get", "remote.origin.url", check=False))
    return GitFacts(root=top, sha=sha, tag=tag, dirty=dirty, commit_time=commit_time, source=source)


def repository_url(remote: str | None) -> str | None:
    """The repository's web address, from the origin remote's URL (`git@host:org/repo.git`, `ssh://`, `git://`,
    `http(s)://`), as https (http stays http: a server that serves no https); None for a local path or no
    remote. It is an image label and a deployment label: never a path of the machine that built it, and never
    credentials (`https://user:token@host/...` drops them)."""
    remote = (remote or "").strip()
    match = _SCP_LIKE.match(remote)
    scheme = "https"
    if match and "://" not in remote:
        host, path = match["host"], match["path"]
    else:
        parts = urlsplit(remote)
        if parts.scheme not in ("http", "https", "ssh", "git") or not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
        if parts.scheme == "http":
            scheme = "http"
            host = f"{host}:{parts.port}" if parts.port else host
    path = path.strip("/").removesuffix(".git")
    if not path:
        return None
    if host == "ssh.dev.azure.com" and path.startswith("v3/"):  # git@ssh.dev.azure.com:v3/org/project/repo
        org, project, repo = (path.split("/") + ["", "", "", ""])[1:4]
        return f"https://dev.azure.com/{org}/{project}/_git/{repo}"
    return urlunsplit((scheme, host, "/" + path, "", ""))


def commit_exists(root: Path, rev: str) -> bool:
    proc = subprocess.run(["git", "cat-file", "-e", f"{rev}^{{commit}}"], cwd=root, capture_output=True)
    return proc.returncode == 0


def is_shallow(root: Path) -> bool:
    """A `--depth N` clone: commits older than its history are unknown, so ancestry cannot be decided."""
    return _git(root, "rev-parse", "--is-shallow-repository", check=False) == "true"


def is_ancestor(root: Path, older: str, newer: str) -> bool | None:
    """True when `older` is a strict ancestor of `newer`; None when either commit is unknown locally."""
    if older == newer:
        return False
    if not (commit_exists(root, older) and commit_exists(root, newer)):
        return None
    proc = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=root, capture_output=True)
    return proc.returncode == 0



def ignore_rules(root: Path, paths: list[str]) -> dict[str, str]:
    """The paths (relative to `root`) that Git ignores and does not track, each with the rule that hides it
    (`.gitignore:3:build/`), from `git check-ignore -v`. A tracked file is never reported: Git keeps it
    whatever the rules say. Such a file exists here but not in another clone of the commit."""
    if not paths:
        return {}
    try:
        proc = subprocess.run(["git", "check-ignore", "--verbose", "--stdin", "-z"], cwd=root,
                              input="\0".join(paths) + "\0", capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise SlipwayError("git is not installed", "install git and retry") from exc
    if proc.returncode not in (0, 1):  # 1: none is ignored
        raise SlipwayError(f"git check-ignore failed in {root}: {proc.stderr.strip()}",
                           "check the clone with `git status` and retry")
    fields = proc.stdout.split("\0")
    # -z --verbose: <source> NUL <line> NUL <pattern> NUL <path> NUL, per ignored path
    return {fields[i + 3]: f"{fields[i]}:{fields[i + 1]}:{fields[i + 2]}"
            for i in range(0, len(fields) - 3, 4) if fields[i]}


def ignored(root: Path, needed: dict[str, str]) -> dict[str, SlipwayError]:
    """Each file the release needs (`needed`: path -> what it is) that Git ignores, with its error naming the
    rule that hides it: a release built here from it could not be built from a clone."""
    hidden = ignore_rules(root, sorted(needed))
    return {path: SlipwayError(f"{path} ({needed[path]}) is ignored by Git ({hidden[path]}), so a clone of this "
                               "commit would not have it",
                               f"track it (`git add -f {path}`) or narrow that rule, and commit; `git check-ignore "
                               f"-v {path}` shows the rule")
            for path in sorted(hidden)}


def refuse_ignored(root: Path, needed: dict[str, str]) -> None:
    """The first of `ignored` as the error, saying how many more there are."""
    found = list(ignored(root, needed).values())
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise SlipwayError(first.message + more, first.fix)
