"""The release lease's rules, fast, with the kit's in-memory Prefect (tests/kit/fakes.py): who waits, what it
says, when a slot the server forgot is freed (and when it is not), and that a lost lease stops the writes.
The real server's behaviour (its lease repossessor, a killed holder, a restarted server) is tested in
tests/deploy/test_release_race.py and tests/deploy/test_release_faults.py."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace

import anyio
import pytest

from slipway.deploy import lease
from slipway.deploy.apply import apply_plan
from slipway.deploy.lease import HeldLease, Holder, lease_name, release_lease
from slipway.deploy.plan import Plan, PlanRow, PoolPlan
from slipway.errors import IncompleteRelease, SlipwayError
from slipway.output import Reporter
from tests.kit.fakes import FakePrefect

NAME = lease_name("prod")


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(lease, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(lease, "RENEW_SECONDS", 0.05)
    monkeypatch.setattr(lease, "STALE_SECONDS", 0.3)
    monkeypatch.setattr(lease, "WAITING_NOTE_SECONDS", 100)


def held_by_another(prefect: FakePrefect, who: str = "ci-bot (run 7)") -> str:
    lease_id = anyio.run(prefect.take_lease, NAME, 60)
    prefect.notes[NAME] = Holder(who, "2026-01-01T00:00:00+00:00", 4242).text()
    return lease_id


def test_a_second_release_waits_for_the_first_saying_who_holds_it():
    prefect, out = FakePrefect(), io.StringIO()
    first = held_by_another(prefect)

    async def main():
        async def finish_first():
            await anyio.sleep(0.1)
            await prefect.give_back_lease(first)

        async with anyio.create_task_group() as tg:
            tg.start_soon(finish_first)
            async with release_lease(prefect, "prod", Reporter(stream=out)) as held:
                assert json.loads(prefect.notes[NAME])["who"] == held.holder.who
        assert NAME not in prefect.leases and NAME not in prefect.notes  # given back, note dropped

    anyio.run(main)
    assert "waiting for another release of 'prod' to finish (ci-bot (run 7) since 2026-01-01" in out.getvalue()
    assert ("reset", NAME) not in prefect.writes


def test_waiting_too_long_is_one_line_naming_the_holder_and_how_to_free_it():
    prefect = FakePrefect()
    held_by_another(prefect)

    async def main():
        async def beat():  # a live holder: its note changes at every renewal, so it is never freed
            for n in range(1, 1000):
                prefect.notes[NAME] = Holder("ci-bot (run 7)", "2026-01-01T00:00:00+00:00", 4242, n).text()
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(beat)
            try:
                with pytest.raises(SlipwayError) as caught:
                    async with release_lease(prefect, "prod", Reporter(quiet=True), wait_seconds=0.5):
                        pass
            finally:
                tg.cancel_scope.cancel()
        return caught.value.line()

    line = anyio.run(main)
    assert "another release of 'prod' holds its lease (ci-bot (run 7) since 2026-01-01T00:00:00+00:00)" in line
    assert f"prefect global-concurrency-limit update {NAME} --active-slots 0" in line
    assert ("reset", NAME) not in prefect.writes


def test_a_slot_the_server_forgot_is_freed_once_its_holders_note_stands_still():
    prefect, out = FakePrefect(), io.StringIO()
    held_by_another(prefect)
    prefect.restart()  # the holder's lease is gone, its slot still counted, its note left behind

    async def main():
        async with release_lease(prefect, "prod", Reporter(stream=out), wait_seconds=5) as held:
            assert prefect.leases[NAME] == held.lease_id

    anyio.run(main)
    assert prefect.writes.count(("reset", NAME)) == 1
    assert "freed the release lease of 'prod': ci-bot (run 7) since 2026-01-01T00:00:00+00:00 stopped renewing" \
        in out.getvalue()
    assert f"{NAME}-recovery" not in prefect.leases  # the recovery lock is given back


def test_only_one_of_two_waiters_frees_a_forgotten_slot():
    prefect = FakePrefect()
    held_by_another(prefect)
    prefect.restart()
    order: list[str] = []

    async def release(who: str):
        async with release_lease(prefect, "prod", Reporter(quiet=True), wait_seconds=5):
            order.append(f"{who} in")
            await anyio.sleep(0.1)
            order.append(f"{who} out")

    async def main():
        async with anyio.create_task_group() as tg:
            tg.start_soon(release, "a")
            tg.start_soon(release, "b")

    anyio.run(main)
    assert prefect.writes.count(("reset", NAME)) == 1
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])  # never both in


def row(name: str) -> PlanRow:
    return PlanRow(desired=SimpleNamespace(full_name=name), live=None, action="updated", id=name)


def test_a_lost_lease_stops_the_writes_and_says_what_was_written():
    prefect = FakePrefect()
    written: list[str] = []

    async def update(plan_row):
        written.append(plan_row.name)
        if len(written) == 1:
            prefect.restart()  # the server restarts during the apply: the next renewal is refused
            await anyio.sleep(0.2)

    prefect.update_deployment = update
    plan = Plan("prod", None, PoolPlan("pool", "docker", "unchanged"), [row("a/one"), row("a/two")])

    async def main():
        async with release_lease(prefect, "prod", Reporter(quiet=True)) as held:
            await apply_plan(prefect, plan, Reporter(quiet=True), lease=held)

    with pytest.raises(IncompleteRelease) as caught:
        anyio.run(main)
    assert written == ["a/one"]
    line = caught.value.line()
    assert "stopped after writing 1 of 2 changed deployment(s)" in line and "not written: a/two" in line
    assert "the release lease of 'prod' was lost" in line and "HTTP 410" in line


def test_a_lease_not_renewed_for_most_of_its_life_is_not_trusted(monkeypatch):
    held = HeldLease("prod", "id", Holder("me", "now", 1))
    held.check()
    held.renewed -= lease.HELD_SECONDS + 1  # e.g. the laptop slept
    with pytest.raises(SlipwayError, match="the release lease of 'prod' was lost \\(not renewed for"):
        held.check()
