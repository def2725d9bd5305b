"""One release at a time per environment: an exclusive lease, held in Prefect itself, for the whole apply.

Two CI jobs, a person and a CI job, a re-run next to a stuck run: whoever writes an environment's deployments
holds its lease. It is a Prefect global concurrency limit of one slot (`slipway-release-<env>`), taken with
a lease that slipway renews while it works; a process that is killed stops renewing, and the server takes
the slot back when the lease runs out (Prefect's lease repossessor, about a minute later). Who holds it, and
since when, is written next to it in a Prefect variable, so a waiting deploy can say so.

The downgrade guard is checked again once the lease is held (pipeline.py): whoever got the lease first
released first, and a later, older release is refused instead of overwriting a newer one.
"""
from __future__ import annotations

import datetime
import getpass
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from slipway.errors import SlipwayError
from slipway.output import Reporter

LEASE_SECONDS = 60  # the shortest lease Prefect grants; renewed every RENEW_SECONDS while the release runs
RENEW_SECONDS = 15
POLL_SECONDS = 2
DEFAULT_WAIT_SECONDS = 600.0


def lease_name(env_name: str) -> str:
    """The concurrency limit's name: Prefect names allow lowercase letters, digits, dashes and underscores."""
    return "slipway-release-" + re.sub(r"[^a-z0-9-]", "-", env_name.lower())


def actor() -> str:
    """Who is releasing: the CI's actor and run URL when there is one, else user@host."""
    if os.environ.get("GITHUB_ACTIONS") and os.environ.get("GITHUB_RUN_ID"):
        run = (f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/"
               f"{os.environ.get('GITHUB_REPOSITORY', '')}/actions/runs/{os.environ['GITHUB_RUN_ID']}")
        return f"{os.environ.get('GITHUB_ACTOR', 'github-actions')} ({run})"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Holder:
    who: str
    since: str  # ISO 8601, UTC
    pid: int

    def describe(self) -> str:
        return f"{self.who} since {self.since}"


@asynccontextmanager
async def release_lease(api, env_name: str, reporter: Reporter,
                        wait_seconds: float = DEFAULT_WAIT_SECONDS) -> AsyncIterator[Holder]:
    """Hold the environment's release lease for the body: wait (up to `wait_seconds`) while another release
    holds it, saying who; renew it in the background; give it back at the end, whatever happens."""
    name = lease_name(env_name)
    await api.ensure_lock(name)
    deadline = time.monotonic() + wait_seconds
    waited_note = 0.0
    while True:
        lease_id = await api.take_lease(name, LEASE_SECONDS)
        if lease_id is not None:
            break
        holder = await read_holder(api, name)
        held_by = holder.describe() if holder else "a release that did not say who it is"
        if time.monotonic() >= deadline:
            raise SlipwayError(
                f"another release of '{env_name}' holds its lease ({held_by})",
                "wait for it to finish and run this again; a lease left by a killed process expires by itself "
                f"within {LEASE_SECONDS + 30} s")
        if time.monotonic() >= waited_note:
            reporter.step(f"waiting for another release of '{env_name}' to finish ({held_by})")
            waited_note = time.monotonic() + 15
        await anyio.sleep(POLL_SECONDS)
    holder = Holder(actor(), datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), os.getpid())
    try:
        await api.write_note(name, json.dumps(holder.__dict__))
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_renew, api, lease_id)
            try:
                yield holder
            except BaseException as exc:  # re-raised below as itself, not wrapped in the task group's group
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
    finally:
        with anyio.CancelScope(shield=True):  # give it back even when the body failed or was cancelled
            for give_back in (lambda: api.drop_note(name), lambda: api.give_back_lease(lease_id)):
                try:
                    await give_back()
                except Exception:  # noqa: BLE001 - the body's own error matters more; the lease expires anyway
                    pass


async def _renew(api, lease_id) -> None:
    while True:
        await anyio.sleep(RENEW_SECONDS)
        await api.renew_lease(lease_id, LEASE_SECONDS)


async def read_holder(api, name: str) -> Holder | None:
    text = await api.read_note(name)
    if not text:
        return None
    try:
        return Holder(**json.loads(text))
    except (ValueError, TypeError):
        return None
