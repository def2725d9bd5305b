"""Carry out a plan: the work pool first, then each deployment that is not unchanged, then the deployments the
release no longer declares (paused, or deleted with --prune).

Writes go as many at once as the environment allows (deploy/prefect_api.py), each sent only while the
environment's release lease is certainly held (deploy/lease.py). When one fails, nothing new is started, the
writes under way finish, and the failure is one `IncompleteRelease` error that says how many deployments were
written, which were not, and that running the same command again finishes the release (the plan of a rerun
holds only what is still missing or different). Ctrl-C or SIGTERM stops it the same way, saying where; the
writes it cuts off were sent and may or may not have landed, so they are counted apart, never as written or
as not written.
"""
from __future__ import annotations

from typing import Any

import anyio

from slipway.deploy.lease import HeldLease
from slipway.deploy.plan import Plan, PlanRow
from slipway.deploy.prefect_api import PrefectApi
from slipway.errors import IncompleteRelease, SlipwayError
from slipway.output import Reporter

SHOWN_NAMES = 5  # names listed in an IncompleteRelease message before "and N more"


async def apply_plan(api: PrefectApi, plan: Plan, reporter: Reporter, verb: str = "deploy",
                     lease: HeldLease | None = None) -> None:
    """Write what `plan` says, filling each created row's `id`: the pool, the declared deployments, then the
    removed ones. With `lease`, every write is sent only while the release lease is certainly held."""
    held = lease.check if lease is not None else (lambda: None)
    if plan.pool.action != "unchanged":
        held()
        await api.apply_pool(plan.pool)
        reporter.step(f"work pool {plan.pool.name}: {plan.pool.action}")
    pending = [row for row in plan.rows if row.action != "unchanged"]
    removed = [r for r in plan.removed if r.action != "unchanged"]
    names = [row.name for row in pending] + [r.name for r in removed]
    written: list[str] = []
    sent: set[str] = set()  # under way: sent, no answer yet (a write cut off by Ctrl-C stays here)
    failures: list[tuple[str, SlipwayError]] = []
    flow_ids: dict[str, Any] = {}

    # Rows start only when a write can go out, so that the lease check is made just before it is sent.
    # The number at once is chosen for the server (deploy/write_concurrency.py) only when there is a write.
    writers = await api.writers() if names else None
    if writers is not None:
        reporter.step(f"writing {len(names)} deployment(s), up to {writers.count} at once ({writers.reason})")
    turns = anyio.CapacityLimiter(writers.count if writers is not None else 1)

    async def write(row: PlanRow) -> None:
        async with turns:
            if failures:  # stop starting new writes after the first failure
                return
            try:
                held()
                sent.add(row.name)
                if row.action == "created":
                    row.id = await api.create_deployment(row, flow_ids)
                elif row.upsert:
                    await api.upsert_deployment(row, flow_ids)
                else:
                    await api.update_deployment(row)
                if row.desired.triggers if row.action == "created" else "triggers" in row.fields:
                    await api.replace_automations(row.id, row.name, row.desired.triggers)
            except SlipwayError as exc:
                sent.discard(row.name)
                failures.append((row.name, exc))
                return
            sent.discard(row.name)
        written.append(row.name)
        reporter.step(f"{row.action} {row.name}" + (f" ({row.note})" if row.note else ""))

    try:
        async with anyio.create_task_group() as tg:
            for row in pending:
                tg.start_soon(write, row)
        for gone in removed:  # after the release's own deployments: never pause one before its successor is live
            if failures:
                break
            try:
                held()
                sent.add(gone.name)
                if gone.drop_automations:
                    await api.replace_automations(gone.live.id, gone.name, [])
                if gone.action == "deleted":
                    await api.delete_deployment(gone.live)
                    reporter.step(f"deleted {gone.name}: the release does not declare it (--prune)")
                elif not gone.live.paused:
                    await api.pause_deployment(gone.live)
                    reporter.step(f"paused {gone.name}: the release does not declare it")
            except SlipwayError as exc:
                sent.discard(gone.name)
                failures.append((gone.name, exc))
                break
            sent.discard(gone.name)
            written.append(gone.name)
    except anyio.get_cancelled_exc_class():  # Ctrl-C or SIGTERM: say where it stopped, then stop
        with anyio.CancelScope(shield=True):
            done = set(written) | sent
            cut_off = [name for name in names if name in sent]
            reporter.step(f"interrupted after writing {len(written)} of {len(names)} changed deployment(s)"
                          + (f"; cut off while being written, may have landed: {_names(cut_off)}" if cut_off
                             else "")
                          + f"; not written: {_names([name for name in names if name not in done])}")
        raise
    if failures:
        raise incomplete(verb, plan, names, written, failures[0])


def incomplete(verb: str, plan: Plan, pending: list[str], written: list[str],
               failure: tuple[str, SlipwayError]) -> IncompleteRelease:
    done = set(written)
    missing = [name for name in pending if name not in done]
    _, exc = failure
    return IncompleteRelease(
        f"{verb} to '{plan.environment}' stopped after writing {len(done)} of {len(pending)} changed "
        f"deployment(s) ({exc.message}); not written: {_names(missing)}",
        "fix the cause, then run the same command again: it writes only what is still missing or different",
        written=sorted(done), not_written=missing)


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOWN_NAMES]) + (f" and {len(names) - SHOWN_NAMES} more"
                                             if len(names) > SHOWN_NAMES else "") or "(none)"
