"""One release at a time per environment: an exclusive lease, held in Prefect itself, for the whole apply.

Two CI jobs, a person and a CI job, a re-run next to a stuck run: whoever writes an environment's deployments
holds its lease. It is a Prefect global concurrency limit of one slot (`slipway-release-<env>`), taken with
a lease that slipway renews while it works; a process that is killed stops renewing, and the server takes
the slot back when the lease runs out (Prefect's lease repossessor: measured 65 s after a SIGKILL here,
LEASE_SECONDS plus at most one 15 s repossessor loop). Who holds it, and since when, is written next to it in
a Prefect variable of the same name, rewritten at every renewal (a heartbeat), so a waiting deploy can say who
it waits for, and can tell a live holder from a dead one.

Two failures the slot alone does not survive, handled here:
- The server forgets leases when it restarts (its default lease storage is in memory) but keeps the slot
  counted in its database: the slot is then taken forever. A waiter that sees the holder's heartbeat stand
  still for STALE_SECONDS (long after the lease would have expired and been repossessed) frees the slot,
  under a second lock (`...-recovery`) so that two waiters cannot both do it.
- A holder that cannot renew (the server is down, the lease expired while the process was stopped) may no
  longer be the only writer: `HeldLease.check()` fails from then on, and apply stops writing (apply.py).

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
from dataclasses import asdict, dataclass, replace

import anyio

from slipway.errors import SlipwayError
from slipway.output import Reporter

LEASE_SECONDS = 60  # the shortest lease Prefect grants; renewed every RENEW_SECONDS while the release runs
RENEW_SECONDS = 15
POLL_SECONDS = 2
# A holder's note unchanged this long while the slot is taken: the holder last renewed at least this long
# ago, so its lease expired 30 s ago and the repossessor (a pass every 15 s) would have freed the slot; it did
# not, so the server lost the lease. A live holder beats every RENEW_SECONDS (plus ~13 s of retries at most).
STALE_SECONDS = LEASE_SECONDS + 2 * RENEW_SECONDS
# A write is only sent while the last renewal is younger than this: after it, the lease may have expired.
HELD_SECONDS = LEASE_SECONDS - RENEW_SECONDS
DEFAULT_WAIT_SECONDS = 600.0
WAITING_NOTE_SECONDS = 15


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


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Holder:
    who: str
    since: str  # ISO 8601, UTC
    pid: int
    beat: int = 0  # renewals so far: the note changes at each one, which is how waiters see it is alive

    def describe(self) -> str:
        return f"{self.who} since {self.since}"

    def text(self) -> str:
        return json.dumps(asdict(self))


class HeldLease:
    """The lease while the body runs: who holds it, and whether it is still certainly held."""

    def __init__(self, env_name: str, lease_id, holder: Holder):
        self.env_name = env_name
        self.lease_id = lease_id
        self.holder = holder
        self.renewed = time.time()  # wall clock: a suspended process must see the time it slept
        self.lost: str | None = None

    def check(self) -> None:
        """Raise when a write now might race another release: the lease could not be renewed, or its last
        renewal is too old (the process was stopped or starved)."""
        if self.lost is None and time.time() - self.renewed > HELD_SECONDS:
            self.lost = f"not renewed for {time.time() - self.renewed:.0f} s"
        if self.lost is not None:
            raise SlipwayError(
                f"the release lease of '{self.env_name}' was lost ({self.lost}), so nothing more was written",
                "run the same command again once the Prefect server answers")


@asynccontextmanager
async def release_lease(api, env_name: str, reporter: Reporter,
                        wait_seconds: float = DEFAULT_WAIT_SECONDS) -> AsyncIterator[HeldLease]:
    """Hold the environment's release lease for the body: wait (up to `wait_seconds`) while another release
    holds it, saying who; renew it in the background; give it back at the end, whatever happens (an error,
    Ctrl-C, SIGTERM: cli.py turns SIGTERM into the same cancellation)."""
    name = lease_name(env_name)
    await api.ensure_lock(name)
    lease_id = await _take(api, name, env_name, reporter, wait_seconds)
    held = HeldLease(env_name, lease_id, Holder(actor(), _now(), os.getpid()))
    try:
        await api.write_note(name, held.holder.text())
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_keep, api, name, held)
            try:
                yield held
            except BaseException as exc:  # re-raised below as itself, not wrapped in the task group's group
                failure = exc
            finally:
                tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
    finally:
        with anyio.CancelScope(shield=True):  # give it back even when the body failed or was cancelled
            # The note first: once the slot is free, the next holder's note must not be dropped by us.
            for give_back in (lambda: api.drop_note(name), lambda: api.give_back_lease(lease_id)):
                try:
                    await give_back()
                except Exception:  # noqa: BLE001 - the body's own error matters more; the lease expires anyway
                    pass


async def _take(api, name: str, env_name: str, reporter: Reporter, wait_seconds: float):
    """The lease id, once the slot is free (or freed from a holder the server forgot)."""
    deadline = time.monotonic() + wait_seconds
    next_note = 0.0
    seen: object = _UNSEEN
    seen_since = time.monotonic()
    while True:
        lease_id = await api.take_lease(name, LEASE_SECONDS)
        if lease_id is not None:
            return lease_id
        note = await api.read_note(name)
        now = time.monotonic()
        if note != seen:
            seen, seen_since = note, now
        elif now - seen_since >= STALE_SECONDS:
            lease_id = await _recover(api, name, note, env_name, now - seen_since, reporter)
            if lease_id is not None:
                return lease_id
            seen = _UNSEEN
        held_by = _describe(note)
        if now >= deadline:
            raise SlipwayError(
                f"another release of '{env_name}' holds its lease ({held_by}) after {wait_seconds:.0f} s of waiting",
                "wait for it to finish and run this again (a lease left by a killed process expires by itself "
                f"within {LEASE_SECONDS + RENEW_SECONDS} s); if no release is running, free it with "
                f"`prefect global-concurrency-limit update {name} --active-slots 0`")
        if now >= next_note:
            reporter.step(f"waiting for another release of '{env_name}' to finish ({held_by})")
            next_note = now + WAITING_NOTE_SECONDS
        await anyio.sleep(POLL_SECONDS)


_UNSEEN = object()


async def _recover(api, name: str, stale: str | None, env_name: str, still_for: float, reporter: Reporter):
    """Free a slot whose holder stopped renewing `still_for` seconds ago and that the server did not take
    back (module doc), then take it; None when another waiter is doing it or the holder turned out alive."""
    guard = f"{name}-recovery"
    await api.ensure_lock(guard)
    guard_id = await api.take_lease(guard, LEASE_SECONDS)
    if guard_id is None:
        return None
    try:
        if await api.read_note(name) != stale:  # it beat after all, or another waiter freed and took it
            return None
        # A new note first: a waiter that saw the old one and comes here next sees the change and backs off.
        await api.write_note(name, json.dumps({"recovering": actor(), "since": _now()}))
        await api.reset_lock(name)
        lease_id = await api.take_lease(name, LEASE_SECONDS)
        if lease_id is not None:
            reporter.step(f"freed the release lease of '{env_name}': {_describe(stale)} stopped renewing it "
                          f"{still_for:.0f} s ago and the Prefect server did not take it back (it restarted?)")
        return lease_id
    finally:
        with anyio.CancelScope(shield=True):
            try:
                await api.give_back_lease(guard_id)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass


async def _keep(api, name: str, held: HeldLease) -> None:
    """Renew the lease and beat the note every RENEW_SECONDS; on a failure, mark the lease lost and stop."""
    while True:
        await anyio.sleep(RENEW_SECONDS)
        try:
            await api.renew_lease(held.lease_id, LEASE_SECONDS)
            held.renewed = time.time()
            held.holder = replace(held.holder, beat=held.holder.beat + 1)
            await api.write_note(name, held.holder.text())
        except SlipwayError as exc:
            held.lost = exc.message
            return


def _describe(note: str | None) -> str:
    holder = parse_holder(note)
    return holder.describe() if holder else "a release that did not say who it is"


def parse_holder(text: str | None) -> Holder | None:
    if not text:
        return None
    try:
        return Holder(**json.loads(text))
    except (ValueError, TypeError):
        return None
