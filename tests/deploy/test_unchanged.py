"""A redeploy of what a full run left unchanged is told without Prefect's client (slipway/deploy/unchanged.py),
and anything that changed meanwhile — by hand, in the pool, in the flags, in the tree — takes the full path.
Against a real Prefect server (SQLite and PostgreSQL) and a real registry."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import httpx

from tests.deploy.conftest import by_hand, prefect_state
from tests.kit.repo import REPO_ROOT

TOLD = "nothing to write (Prefect holds what slipway last checked for this commit)"
TOLD_PLAN = "nothing to change (Prefect holds what slipway last checked for this commit)"


def names(project) -> list[str]:
    return [f"deploy-test-hello/{project.name}-hourly", f"deploy-test-numbers/{project.name}-manual",
            f"deploy-test-hello/{project.name}-rrule"]


def deploy(cli, project, *extra: str):
    outcome = cli("deploy", "--env", "local", "--json", "--root", str(project.root), *extra)
    assert outcome.code == 0, outcome.stderr
    return outcome


def test_a_redeploy_is_told_from_plain_reads_without_importing_prefect(project, cli):
    deploy(cli, project)  # the full path: creates, then remembers
    state = prefect_state(project.server.api_url, names(project))

    # As a user runs it, in its own process: Prefect is never imported, nothing is written.
    told = subprocess.run([sys.executable, "-X", "importtime", str(REPO_ROOT / "build.py"), "deploy", "--env",
                           "local", "--json", "--root", str(project.root)], capture_output=True, text=True)
    assert told.returncode == 0, told.stderr
    assert TOLD in told.stderr, told.stderr
    imported = {line.split("|")[-1].strip() for line in told.stderr.splitlines() if line.startswith("import time:")}
    assert "slipway.deploy.unchanged" in imported
    assert not {m for m in imported if m == "prefect" or m.startswith("prefect.")}
    assert prefect_state(project.server.api_url, names(project)) == state

    planned = cli("plan", "--env", "local", "--json", "--exit-code", "--root", str(project.root))
    assert planned.code == 0 and TOLD_PLAN in planned.stderr, planned.stderr

    # Each prints what the full path prints for the same release, in JSON and for people.
    forget(project)
    full_plan = cli("plan", "--env", "local", "--json", "--exit-code", "--root", str(project.root))
    assert full_plan.code == 0 and TOLD_PLAN not in full_plan.stderr, full_plan.stderr
    assert full_plan.json() == planned.json()
    full = deploy(cli, project)
    assert TOLD not in full.stderr and "nothing to write" in full.stderr
    assert [d["action"] for d in full.json()["deployments"]] == ["unchanged"] * 3
    assert full.json() == json.loads(told.stdout.strip().splitlines()[-1])
    forget(project)
    full_text = cli("deploy", "--env", "local", "--root", str(project.root))
    told_text = cli("deploy", "--env", "local", "--root", str(project.root))  # remembered by that full run
    assert TOLD not in full_text.stderr and TOLD in told_text.stderr
    assert told_text.stdout == full_text.stdout


def forget(project) -> None:
    for remembered in (project.root / ".git" / "slipway").glob("unchanged-*.json"):
        remembered.unlink()


def test_anything_changed_since_takes_the_full_path(project, cli):
    deploy(cli, project)
    assert TOLD in deploy(cli, project).stderr
    api = project.server.api_url
    hourly = prefect_state(api, names(project))[names(project)[0]]

    # A description edited by hand: the full path sees it and puts the release's back.
    by_hand(api, "PATCH", f"/deployments/{hourly['id']}", {"description": "edited by hand"})
    repaired = deploy(cli, project)
    assert TOLD not in repaired.stderr
    assert [d["action"] for d in repaired.json()["deployments"]] == ["updated", "unchanged", "unchanged"]
    assert prefect_state(api, names(project))[names(project)[0]]["description"] == hourly["description"]
    assert TOLD in deploy(cli, project).stderr

    # A deployment paused by hand: the full path decides what to do about it, then remembers.
    by_hand(api, "PATCH", f"/deployments/{hourly['id']}", {"paused": True})
    assert TOLD not in deploy(cli, project).stderr
    assert TOLD in deploy(cli, project).stderr

    # Another flag: not what was checked.
    assert TOLD not in deploy(cli, project, "--prune").stderr

    # A dirty tree is never told from memory: its files are not the commit's.
    (project.root / "untracked.txt").write_text("dirty\n")
    project.tag_head_image()
    dirty = cli("deploy", "--env", "local", "--root", str(project.root))
    assert TOLD not in dirty.stderr, dirty.stderr


def test_a_new_deployment_in_the_pool_takes_the_full_path(project, cli):
    deploy(cli, project)
    assert TOLD in deploy(cli, project).stderr
    api = project.server.api_url
    manual = prefect_state(api, names(project))[names(project)[1]]
    flow_id = httpx.get(f"{api}/deployments/{manual['id']}").json()["flow_id"]
    by_hand(api, "POST", "/deployments/", {"name": "made-by-hand", "flow_id": flow_id,
                                          "work_pool_name": manual["work_pool_name"]})
    again = deploy(cli, project)
    assert TOLD not in again.stderr
    assert re.search(r"nothing to write", again.stderr), again.stderr  # not slipway's: left alone
