"""The downgrade guard: `deploy` must not replace a live release with an older commit.

A stale CI job that finishes late, or a person deploying an old checkout, would silently undo a newer
release. The guard compares HEAD with the revision of every release the environment runs (the digests its
active deployments pin) and fails closed: when the ancestry cannot be known (a shallow clone, a commit this
clone has never fetched), it refuses too, saying how to fetch the history or how to roll back on purpose.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slipway.errors import SlipwayError
from slipway.invocation import command

# (older, newer) -> True when older is a strict ancestor of newer, False when not, None when unknown.
Ancestry = Callable[[str, str], "bool | None"]


@dataclass(frozen=True)
class LiveRelease:
    digest: str
    revision: str | None  # its image's revision label; None when the image was not built by slipway


def check_downgrade(env_name: str, head_sha: str, live: list[LiveRelease], ancestry: Ancestry) -> None:
    """Refuse (one SlipwayError) when HEAD is older than, or cannot be ordered against, a live release."""
    rollback_hint = (f"to go back on purpose use `{command('rollback', '--env', env_name, '--to', '<sha or tag>')}` "
                     f"or `{command('deploy', '--env', env_name, '--rollback')}`")
    for release in live:
        if not release.revision or release.revision == head_sha:
            continue
        older = ancestry(head_sha, release.revision)
        if older is None:
            raise SlipwayError(
                f"'{env_name}' runs {release.revision[:12]}, a commit this clone does not know (a shallow clone "
                f"or unfetched history), so slipway cannot tell whether HEAD {head_sha[:12]} is newer",
                f"fetch the history (`git fetch --unshallow` or `git fetch origin`) and retry; {rollback_hint}")
        if older:
            raise SlipwayError(
                f"'{env_name}' runs {release.revision[:12]}, a newer commit than HEAD {head_sha[:12]}: deploying "
                "HEAD would downgrade it", rollback_hint)
