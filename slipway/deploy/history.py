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
    verb: str  # deploy | rollback | promote | verify (the smoke run of the live release: details)
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

    def describe(self) -> str:
        """One line for the UI and for people."""
        if self.verb == "verify":  # deploy/verify.py: the smoke run of the release already recorded as live
            outcome = self.details.get("verification", "?")
            run = self.details.get("run", "")
            line = f"{self.actor}: {self.release.short} in {self.environment} {outcome}" + (f" ({run})" if run else "")
            return line + (f": {self.message}" if self.message else "")
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


_REF_FIELDS = ("digest", "revision", "version", "tags")


def to_row(entry: HistoryEntry) -> dict[str, str]:
    """The entry as one row of strings: what the Prefect UI shows as a table, and what read_history parses back
    (an artifact's metadata would be simpler, but Prefect cuts each metadata value at 500 characters)."""
    row = {"time": entry.time, "verb": entry.verb, "environment": entry.environment, "actor": entry.actor,
           "run_url": entry.run_url or "", "message": entry.message or ""}
    for prefix, ref in (("release", entry.release), ("previous", entry.previous)):
        for name in _REF_FIELDS:
            value = getattr(ref, name) if ref is not None else None
            row[f"{prefix}_{name}"] = ", ".join(value or []) if name == "tags" else (value or "")
    row["details"] = json.dumps(entry.details, sort_keys=True) if entry.details else ""
    return row


def from_row(row: dict[str, Any]) -> HistoryEntry:
    def ref(prefix: str) -> ReleaseRef | None:
        if not row.get(f"{prefix}_digest"):
            return None
        tags = [t.strip() for t in str(row.get(f"{prefix}_tags") or "").split(",") if t.strip()]
        return ReleaseRef(str(row[f"{prefix}_digest"]), row.get(f"{prefix}_revision") or None,
                          row.get(f"{prefix}_version") or None, tags)

    release = ref("release")
    if release is None:
        raise ValueError("no release in the row")
    return HistoryEntry(verb=str(row["verb"]), environment=str(row["environment"]), time=str(row["time"]),
                        actor=str(row.get("actor") or "?"), release=release, previous=ref("previous"),
                        run_url=row.get("run_url") or None, message=row.get("message") or None,
                        details=json.loads(row["details"]) if row.get("details") else {})


async def read_history(api, key: str, limit: int | None = None) -> list[HistoryEntry]:
    """The environment's entries, newest first (versions that are not slipway's records are skipped)."""
    out: list[HistoryEntry] = []
    for data in await api.read_artifact_data(key, limit):
        try:
            rows = json.loads(data) if isinstance(data, str) else data
            out.append(from_row(rows[0]))
        except (ValueError, TypeError, KeyError, IndexError):
            continue
    return out


async def write_entry(api, key: str, entry: HistoryEntry) -> None:
    """One more version of the environment's artifact: a one-row table (Prefect stores a table's data as a JSON
    string), with a one-line description."""
    await api.create_artifact(key, ARTIFACT_TYPE, entry.describe(), json.dumps([to_row(entry)]))
