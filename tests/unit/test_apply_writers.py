"""apply_plan with several writers, fast, with the kit's in-memory Prefect (tests/kit/fakes.py): what it says
when a write fails or the run is stopped while other writes are under way. The same against real servers
(SQLite: one writer, PostgreSQL: `auto`'s eight) is in tests/deploy/test_release_faults.py and
tests/deploy/test_release_race.py."""
from __future__ import annotations

import io
from types import SimpleNamespace

import anyio
import pytest

from slipway.deploy.apply import apply_plan
from slipway.deploy.plan import Plan, PlanRow, PoolPlan
from slipway.deploy.write_concurrency import Writers
from slipway.errors import IncompleteRelease, SlipwayError
from slipway.output import Reporter
from tests.kit.fakes import FakePrefect


def plan_of(*names: str) -> Plan:
    rows = [PlanRow(desired=SimpleNamespace(full_name=name), live=None, action="updated", id=name)
            for name in names]
    return Plan("prod", None, PoolPlan("pool", "docker", "unchanged"), rows)


class SlowPrefect(FakePrefect):
    """Three writers; each write takes `seconds[name]` (default 0.05); "a/bad" is refused in 0.01 s."""

    def __init__(self, seconds: dict[str, float]):
        super().__init__()
        self.seconds = seconds
        self.landed: list[str] = []

    async def writers(self) -> Writers:
        return Writers(3, "write_concurrency: 3")

    async def update_deployment(self, row: PlanRow) -> None:
        if row.name == "a/bad":  # refused after a round trip, as a server does
            await anyio.sleep(0.01)
            raise SlipwayError(f"Prefect refused to update deployment {row.name}: HTTP 500", "check the server")
        await anyio.sleep(self.seconds.get(row.name, 0.05))
        self.landed.append(row.name)


def test_a_refused_write_lets_the_writes_under_way_finish_and_counts_them():
    prefect = SlowPrefect({"a/slow": 0.3})
    with pytest.raises(IncompleteRelease) as caught:
        anyio.run(apply_plan, prefect, plan_of("a/slow", "a/bad", "a/quick", "a/later"), Reporter(quiet=True))
    # Three at once: a/slow and a/quick were under way when a/bad was refused; they finish, a/later never starts.
    assert sorted(prefect.landed) == ["a/quick", "a/slow"]
    line = caught.value.line()
    assert "stopped after writing 2 of 4 changed deployment(s)" in line, line
    assert "not written: a/bad, a/later" in line, line
    assert caught.value.written == ["a/quick", "a/slow"]


def test_a_stopped_run_names_apart_the_writes_it_cut_off():
    prefect = SlowPrefect({"a/slow": 30, "a/stuck": 30, "a/later": 30})
    said = io.StringIO()

    async def main():
        with anyio.move_on_after(0.5):  # Ctrl-C, as apply_plan sees it: its task is cancelled
            await apply_plan(prefect, plan_of("a/slow", "a/quick", "a/stuck", "a/later", "a/last"),
                             Reporter(stream=said))

    anyio.run(main)
    # Three at once: a/slow, a/quick, a/stuck; a/later takes a/quick's turn; a/last never gets one.
    assert prefect.landed == ["a/quick"]
    line = [text for text in said.getvalue().splitlines() if "interrupted" in text][0]
    assert line.endswith("interrupted after writing 1 of 5 changed deployment(s); cut off while being written, "
                         "may have landed: a/slow, a/stuck, a/later; not written: a/last"), line
