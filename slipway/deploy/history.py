"""Each environment's release history: which release went live, which one it replaced, when, who did it (the CI
actor and run, else user@host) and why (`--message`).

Stored in the environment's Prefect itself, as one artifact key per environment (`slipway-releases-<project>-<env>`):
every record is one more version of that artifact, so
- every writer already has the access it needs (deploy, rollback and promote all write deployments there; a
  rollback needs no registry write access, and an ECR repository with immutable tags could not take an
  updated history tag anyway);
- a record is appended, never read-modified-written: two writers cannot lose each other's entry;
- people see it in the Prefect UI (Artifacts), next to the deployments it describes, and it outlives the images
  a registry's lifecycle rules expire.

`record_release` is the one call a verb makes after it changed an environment (promote included); the entries
come back newest first from `read_history`, and `releases --env ENV` shows them.
"""
from __future__ import annotations

import datetime
import getpass
import json
import os
import re
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

KEY_PREFIX = "slipway-releases-"
ARTIFACT_TYPE = "table"  # the UI renders each version as a one-row table
ENTRY_KEY = "slipway.entry"  # the artifact metadata key holding the entry as JSON
READ_PAGE = 200


@dataclass(frozen=True)
class ReleaseRef:
    """One release image, as the history names it."""

    digest: str
    revision: str | None = None
    version: str | None = None  # its Git tag, else its short SHA
    tags: list[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return f"{self.version or (self.revision or '?')[:12]} ({self.digest[:19]})"


@dataclass(frozen=True)
class HistoryEntry:
    verb: str  # deploy | rollback | promote
    environment: str
    time: str  # ISO 8601, UTC
    actor: str
    release: ReleaseRef
    previous: ReleaseRef | None = None
    run_url: str | None = None
    message: str | None = None
    details: dict[str, str] = field(default_factory=dict)  # e.g. {"promoted_from": "staging"}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistoryEntry:
        previous = data.get("previous")
        return cls(verb=str(data["verb"]), environment=str(data["environment"]), time=str(data["time"]),
                   actor=str(data.get("actor") or "?"), release=ReleaseRef(**data["release"]),
                   previous=ReleaseRef(**previous) if previous else None, run_url=data.get("run_url"),
                   message=data.get("message"), details=dict(data.get("details") or {}))

    def describe(self) -> str:
        """One line for the UI and for people."""
        what = {"deploy": "deployed", "rollback": "rolled back to", "promote": "promoted"}.get(self.verb, self.verb)
        line = f"{self.actor} {what} {self.release.short} in {self.environment}"
        if self.previous and self.previous.digest != self.release.digest:
            line += f", replacing {self.previous.short}"
        return line + (f": {self.message}" if self.message else "")


def history_key(project: str, environment: str) -> str:
    """The artifact key of one environment's history (Prefect keys: lowercase letters, digits and dashes)."""
    return KEY_PREFIX + re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", f"{project}-{environment}".lower())).strip("-")


def current_actor() -> tuple[str, str | None]:
    """(who, the CI run's URL): GitHub Actions' actor and run when set, else user@host."""
    if os.environ.get("GITHUB_ACTIONS") and os.environ.get("GITHUB_RUN_ID"):
        run = (f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/"
               f"{os.environ.get('GITHUB_REPOSITORY', '')}/actions/runs/{os.environ['GITHUB_RUN_ID']}")
        attempt = os.environ.get("GITHUB_RUN_ATTEMPT")
        if attempt and attempt != "1":
            run += f"/attempts/{attempt}"
        return os.environ.get("GITHUB_ACTOR") or "github-actions", run
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}", None


def new_entry(verb: str, environment: str, release: ReleaseRef, previous: ReleaseRef | None,
              message: str | None, details: dict[str, str] | None = None) -> HistoryEntry:
    who, run = current_actor()
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return HistoryEntry(verb, environment, now, who, release, previous, run, (message or "").strip() or None,
                        dict(details or {}))


async def read_history(api, key: str, limit: int | None = None) -> list[HistoryEntry]:
    """The environment's entries, newest first (versions that are not slipway's records are skipped)."""
    out: list[HistoryEntry] = []
    for metadata in await api.read_artifact_metadata(key, limit):
        try:
            out.append(HistoryEntry.from_json(json.loads(metadata[ENTRY_KEY])))
        except (ValueError, TypeError, KeyError):
            continue
    return out


async def write_entry(api, key: str, entry: HistoryEntry) -> None:
    """One more version of the environment's artifact: a one-row table people read in the UI, and the whole
    entry as JSON in its metadata for `releases --json` and `rollback` without `--to`."""
    row = {"time": entry.time, "verb": entry.verb, "release": entry.release.short,
           "previous": entry.previous.short if entry.previous else "", "actor": entry.actor,
           "run": entry.run_url or "", "message": entry.message or ""}
    await api.create_artifact(key, ARTIFACT_TYPE, entry.describe(), json.dumps([row]),
                              {ENTRY_KEY: json.dumps(entry.to_json(), sort_keys=True)})
