"""What slipway writes on every deployment to know it again: whose it is, which release it runs, who paused it.

Labels (Prefect deployment `labels`, key-value, kept by the self-hosted server and by Prefect Cloud):
- `slipway.project`: the image repository (`<registry>/<repository>`) of the environment that registered it;
- `slipway.environment`: that environment's name in slipway.yaml;
- `slipway.commit`, `slipway.commit-url`, `slipway.git-tag`: the release it runs (the URL and tag when known).

Which deployments are this project's in this environment is read from the first two, never guessed from names or
images: a deployment registered by other means (the UI, `prefect deploy`, another repository, another
environment sharing the server) is never paused or deleted by slipway, and one that another slipway environment
registered is not taken over (`check_takeover`).

Prefect 3.8's server accepts `labels` only when a deployment is created or upserted (`POST /deployments/`); its
`PATCH` refuses them (422 extra_forbidden). So slipway's own pause is marked with a *tag* instead, set and cleared
in the same `PATCH` that pauses or resumes: `slipway:paused`. A paused deployment without it was paused by a
person (in the UI), and slipway keeps that pause.

`version_info` (Prefect Cloud shows it and links the version to its commit; the self-hosted server drops it) is
sent too, carrying the same facts as the commit labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from slipway.errors import SlipwayError
from slipway.project.git import DIRTY_SUFFIX, GitFacts, repository_url

LABEL_PREFIX = "slipway."
PROJECT_LABEL = "slipway.project"
ENVIRONMENT_LABEL = "slipway.environment"
COMMIT_LABEL = "slipway.commit"
COMMIT_URL_LABEL = "slipway.commit-url"
GIT_TAG_LABEL = "slipway.git-tag"
PAUSE_TAG = "slipway:paused"

PAUSED_BY_SLIPWAY = "slipway"
PAUSED_BY_HAND = "hand"

DEFAULT_VERSION_TYPE = "vcs:git"
SIMPLE_VERSION_TYPE = "prefect:simple"  # Prefect sends no version_info for it; neither does slipway



@dataclass(frozen=True)
class Owner:
    """One environment of one project: what its deployments' ownership labels say."""

    project: str  # the environment's image repository, `<registry host>/<repository>`
    environment: str

    def labels(self) -> dict[str, str]:
        return {PROJECT_LABEL: self.project, ENVIRONMENT_LABEL: self.environment}

    def owns(self, labels: dict[str, Any]) -> bool:
        return labels.get(PROJECT_LABEL) == self.project and labels.get(ENVIRONMENT_LABEL) == self.environment


def slipway_labels(labels: dict[str, Any] | None) -> dict[str, str]:
    """The labels slipway set (Prefect adds its own, `prefect.flow.id`, which slipway neither sets nor compares)."""
    return {k: str(v) for k, v in (labels or {}).items() if k.startswith(LABEL_PREFIX)}


def commit_url(source: str, sha: str) -> str | None:
    """A link to the commit on its forge (GitHub, GitLab, Bitbucket, Azure DevOps, or `<repo>/commit/<sha>`)."""
    base = repository_url(source)
    if base is None or not sha:
        return None
    host = urlsplit(base).hostname or ""
    if "gitlab" in host:
        return f"{base}/-/commit/{sha}"
    if host == "bitbucket.org":
        return f"{base}/commits/{sha}"
    return f"{base}/commit/{sha}"


def release_labels(owner: Owner, commit: GitFacts) -> dict[str, str]:
    """Every label slipway sets on a deployment of this release in this environment."""
    labels = {**owner.labels(), COMMIT_LABEL: commit.sha + (DIRTY_SUFFIX if commit.dirty else "")}
    url = commit_url(commit.source, commit.sha)
    if url:
        labels[COMMIT_URL_LABEL] = url
    if commit.tag:
        labels[GIT_TAG_LABEL] = commit.tag
    return labels


def version_info(commit: GitFacts, version_type: str | None) -> dict[str, Any] | None:
    """Prefect's `version_info` for this release (`version_type` from the declaration, `vcs:git` by default)."""
    kind = version_type or DEFAULT_VERSION_TYPE
    if kind == SIMPLE_VERSION_TYPE:
        return None
    info: dict[str, Any] = {"type": kind, "version": commit.version, "commit_sha": commit.sha}
    url, repository = commit_url(commit.source, commit.sha), repository_url(commit.source)
    if url:
        info["url"] = url
    if repository:
        info["repository"] = repository
    if commit.tag:
        info["tag"] = commit.tag
    return info


def paused_by(paused: bool, tags: list[str] | None) -> str | None:
    """Who holds a deployment's pause: slipway (its tag is there), a person (no tag), or nobody."""
    if not paused:
        return None
    return PAUSED_BY_SLIPWAY if PAUSE_TAG in (tags or []) else PAUSED_BY_HAND


def check_takeover(owner: Owner, full_name: str, labels: dict[str, Any], api_url: str) -> None:
    """Refuse to write a deployment that slipway registered for another environment or project.

    A deployment without slipway's labels (registered by `prefect deploy`, the UI, or a slipway before labels) is
    taken over: that is how a team moves an existing deployment to slipway, and `plan` shows it (`labels`)."""
    project, environment = labels.get(PROJECT_LABEL), labels.get(ENVIRONMENT_LABEL)
    if project is None and environment is None:
        return
    if project == owner.project and environment == owner.environment:
        return
    if environment != owner.environment:
        raise SlipwayError(
            f"{full_name} on {api_url} was registered by environment '{environment}' ({project}); deploying "
            f"'{owner.environment}' would take it over",
            f"environments sharing a Prefect API must not declare the same deployment: point "
            f"environments.{owner.environment}.prefect.api_url at another server or workspace, or delete "
            f"{full_name} from '{environment}' first")
    raise SlipwayError(
        f"{full_name} on {api_url} was registered for environment '{environment}' of another project ({project}, "
        f"this one is {owner.project}); deploying would take it over",
        "rename the deployment, or delete the other project's deployment first")
