"""Carry out a plan: the work pool first, then each deployment that is not unchanged.

Writes go as many at once as the environment allows (deploy/prefect_api.py). When one fails, nothing new is
started, the writes under way finish, and the failure is one `IncompleteRelease` error that says how many
deployments were written, which were not, and that running the same command again finishes the release
(the plan of a rerun holds only what is still missing or different).
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
    """Write what `plan` says, filling each created row's `id`. With `lease`, every write is sent only while
    the environment's release lease is certainly held (deploy/lease.py)."""
    held = lease.check if lease is not None else (lambda: None)
    if plan.pool.action != "unchanged":
        held()
        await api.apply_pool(plan.pool)
        reporter.step(f"work pool {plan.pool.name}: {plan.pool.action}")
    pending = [row for row in plan.rows if row.action != "unchanged"]
    written: list[PlanRow] = []
    failures: list[tuple[PlanRow, SlipwayError]] = []
    flow_ids: dict[str, Any] = {}

    # Rows start only when a write can go out, so that the checks below are made just before it is sent.
    turns = anyio.CapacityLimiter(api.write_concurrency)

    async def write(row: PlanRow) -> None:
        async with turns:
            if failures:  # stop starting new writes after the first failure
                return
            try:
                held()
                if row.action == "created":
                    row.id = await api.create_deployment(row.desired, flow_ids)
                else:
                    await api.update_deployment(row)
            except SlipwayError as exc:
                failures.append((row, exc))
                return
        written.append(row)
        reporter.step(f"{row.action} {row.name}")

    try:
        async with anyio.create_task_group() as tg:
            for row in pending:
                tg.start_soon(write, row)
    except anyio.get_cancelled_exc_class():  # Ctrl-C or SIGTERM: say where it stopped, then stop
        with anyio.CancelScope(shield=True):
            done = {row.name for row in written}
            reporter.step(f"interrupted after writing {len(written)} of {len(pending)} changed deployment(s); "
                          f"not written: {_names([row.name for row in pending if row.name not in done])}")
        raise
    if failures:
        raise incomplete(verb, plan, pending, written, failures[0])
    for live in plan.to_pause:
        held()
        await api.pause_deployment(live.id, live.full_name)
        reporter.step(f"paused {live.full_name}: the release does not declare it")


def incomplete(verb: str, plan: Plan, pending: list[PlanRow], written: list[PlanRow],
               failure: tuple[PlanRow, SlipwayError]) -> IncompleteRelease:
    done = {row.name for row in written}
    missing = [row.name for row in pending if row.name not in done]
    shown = _names(missing)
    row, exc = failure
    return IncompleteRelease(
        f"{verb} to '{plan.environment}' stopped after writing {len(written)} of {len(pending)} changed "
        f"deployment(s) ({exc.message}); not written: {shown}",
        "fix the cause, then run the same command again: it writes only what is still missing or different",
        written=sorted(done), not_written=missing)


def _names(names: list[str]) -> str:
    return ", ".join(names[:SHOWN_NAMES]) + (f" and {len(names) - SHOWN_NAMES} more"
                                             if len(names) > SHOWN_NAMES else "") or "(none)"
