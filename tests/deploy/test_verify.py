"""Verified releases (deploy/verify.py): the smoke run after a deploy, against a real Prefect server and
registry, and (test_verify_worker.py) a real Docker worker.

Here no worker serves the pool, so every verification run stays Scheduled: what a release whose image the
workers cannot start looks like. `start_timeout` is 2 s, so each case costs a deploy and two seconds.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import anyio
import pytest
import yaml

from tests.deploy.conftest import prefect_state
from tests.kit.repo import REPO_ROOT

pytestmark = [pytest.mark.docker, pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)]


def smoke_name(proj) -> str:
    return f"deploy-test-smoke/{proj.name}-smoke"


def release_with_verify(proj, fail: bool = False, message: str = "release", **verify) -> str:
    """Commit a release whose deployments include the smoke flow's and whose `local` environment verifies
    it; HEAD's image tagged as `make image` leaves it. Returns the commit."""
    config = yaml.safe_load((proj.root / "slipway.yaml").read_text())
    config["environments"]["local"]["verify"] = {"deployments": [smoke_name(proj)], "start_timeout": "2s",
                                                 "timeout": "5m", **verify}
    proj.write("slipway.yaml", yaml.safe_dump(config, sort_keys=False))
    decls = yaml.safe_load((proj.root / "deployments.yaml").read_text())
    decls["deployments"] = [d for d in decls["deployments"] if d["name"] != f"{proj.name}-smoke"]
    decls["deployments"].append({"name": f"{proj.name}-smoke", "entrypoint": "flows/smoke.py:smoke",
                                 "parameters": {"fail": fail}})
    proj.write("deployments.yaml", yaml.safe_dump(decls, sort_keys=False))
    sha = proj.commit(message)
    proj.tag_head_image()
    return sha


def names(proj) -> list[str]:
    return [f"deploy-test-hello/{proj.name}-hourly", f"deploy-test-numbers/{proj.name}-manual",
            f"deploy-test-hello/{proj.name}-rrule", smoke_name(proj)]


def pinned(proj) -> dict[str, tuple[str, bool]]:
    return {name: (d["job_variables"]["image"].rpartition("@")[2], d["paused"])
            for name, d in prefect_state(proj.server.api_url, names(proj)).items()}


def history(cli, proj) -> list[dict]:
    listing = cli("releases", "--env", "local", "--json", "--root", str(proj.root))
    assert listing.code == 0, listing.stderr
    return listing.json()["history"]


def verification_runs(api_url: str, deployment: str) -> list:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    async def read():
        async with PrefectClient(api=api_url) as client:
            return await client.read_flow_runs(deployment_filter=DeploymentFilter(
                name=DeploymentFilterName(any_=[deployment.split("/")[1]])))

    return anyio.run(read)


def test_a_run_no_worker_starts_is_rolled_back_to_the_release_before(project, cli):
    proj, root = project, str(project.root)
    release_with_verify(proj, message="A")
    first = cli("deploy", "--env", "local", "--json", "--no-verify", "--root", root)
    assert first.code == 0, first.stderr
    assert "verification of 'local' skipped (--no-verify)" in first.stderr
    a_digest = first.json()["reference"].rpartition("@")[2]
    assert history(cli, proj)[0]["details"] == {"verification": "skipped (--no-verify)"}

    b_sha = release_with_verify(proj, message="B", parameters={smoke_name(proj): {"fail": False}})
    second = cli("deploy", "--env", "local", "--json", "--root", root)
    assert second.code == 1
    assert second.error.startswith(f"error: release {b_sha[:12]} failed verification ({smoke_name(proj)}: run ")
    assert "not started: no worker started it within 2 s (cancelled)); rolled back to " in second.error
    assert "verifying " + smoke_name(proj) in second.stderr and "/runs/flow-run/" in second.stderr

    # Every deployment pins A's digest again, active; B's run was cancelled, so no late worker runs it.
    assert set(pinned(proj).values()) == {(a_digest, False)}
    runs = verification_runs(proj.server.api_url, smoke_name(proj))
    assert [r.state.type.value for r in runs] == ["CANCELLED"]
    assert runs[0].parameters == {"fail": False}

    # The history: B deployed, then rolled back to A, saying which run failed and why.
    entries = history(cli, proj)
    assert [(e["verb"], e["release"]["digest"]) for e in entries[:1]] == [("rollback", a_digest)]
    assert (entries[1]["verb"], entries[1]["release"]["revision"]) == ("deploy", b_sha)
    assert entries[0]["details"]["verification"] == "failed"
    assert entries[0]["details"]["failed_release"] == b_sha[:12]
    assert str(runs[0].id) in entries[0]["details"]["run"]
    assert entries[0]["message"].startswith(f"automatic rollback: release {b_sha[:12]} failed verification")


def test_the_first_release_has_nothing_to_roll_back_to_so_its_deployments_are_paused(project, cli):
    proj, root = project, str(project.root)
    sha = release_with_verify(proj)
    outcome = cli("deploy", "--env", "local", "--root", root)
    assert outcome.code == 1
    assert outcome.error.startswith(f"error: release {sha[:12]} failed verification (")
    assert ("it is the first release of 'local', so there is nothing to roll back to: its 4 deployment(s) "
            "are paused; see http") in outcome.error
    assert all(paused for _, paused in pinned(proj).values())
    entry = history(cli, proj)[0]
    assert (entry["verb"], entry["details"]["verification"]) == ("verify", "failed")
    assert entry["previous"] is None


def test_keep_leaves_the_new_release_live_and_exits_non_zero(project, cli):
    proj, root = project, str(project.root)
    release_with_verify(proj, message="A")
    assert cli("deploy", "--env", "local", "--no-verify", "--root", root).code == 0
    b_sha = release_with_verify(proj, message="B", on_failure="keep")
    outcome = cli("deploy", "--env", "local", "--root", root)
    assert outcome.code == 1
    assert outcome.error.startswith(f"error: release {b_sha[:12]} failed verification (")
    assert "; it stays live (verify.on_failure is keep); see http" in outcome.error
    assert "slipway rollback --env local" in outcome.error
    b_digest = history(cli, proj)[0]["release"]["digest"]
    assert set(pinned(proj).values()) == {(b_digest, False)}
    entries = history(cli, proj)
    assert [e["verb"] for e in entries[:2]] == ["verify", "deploy"]
    assert entries[0]["details"]["verification"] == "failed"
    assert entries[0]["previous"]["digest"] != b_digest  # `make rollback` without TAG still goes back to A


def test_verify_names_a_deployment_the_release_lacks_before_anything_is_written(project, cli):
    proj, root = project, str(project.root)
    release_with_verify(proj, deployments=["deploy-test-hello/nope"])
    outcome = cli("deploy", "--env", "local", "--root", root)
    assert outcome.code == 1
    assert outcome.error.startswith("error: slipway.yaml: environments.local.verify.deployments: the release "
                                    "declares no deployment 'deploy-test-hello/nope'")
    assert all(d is None for d in prefect_state(proj.server.api_url, names(proj)).values())
    bad = release_with_verify(proj, parameters={smoke_name(proj): {"fail": "often"}})
    assert bad
    outcome = cli("deploy", "--env", "local", "--root", root)
    assert outcome.error.startswith(f"error: slipway.yaml: environments.local.verify.parameters.{smoke_name(proj)}"
                                    ".fail: ")
    assert all(d is None for d in prefect_state(proj.server.api_url, names(proj)).values())


def test_a_release_terminated_while_verifying_says_how_to_finish_and_rollback_finishes(project, cli):
    """SIGTERM (a cancelled CI job) while the run waits for a worker: the release stays live, unverified, its
    run cancelled, the lease given back; the one line's `make rollback ENV=local` finishes at once."""
    proj, root = project, str(project.root)
    release_with_verify(proj, message="A")
    first = cli("deploy", "--env", "local", "--json", "--no-verify", "--root", root)
    a_digest = first.json()["reference"].rpartition("@")[2]
    b_sha = release_with_verify(proj, message="B", start_timeout="5m")
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "build.py"), "deploy", "--env", "local", "--root", root],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not verification_runs(proj.server.api_url, smoke_name(proj)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    time.sleep(1.5)  # the run is being followed
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert [ln for ln in stderr.splitlines() if ln.startswith("error: ")] == [
        "error: interrupted; run the same command again to finish what it started"]
    assert (f"interrupted while verifying release {b_sha[:12]}: it is live in 'local', not verified, its "
            f"verification run cancelled; to undo it: python build.py rollback --env local --to ") in stderr
    assert f"to verify it: python build.py rollback --env local --to {b_sha[:12]} --verify" in stderr
    [run] = verification_runs(proj.server.api_url, smoke_name(proj))
    assert run.state.type.value == "CANCELLED"  # no late worker runs it
    b_digest = history(cli, proj)[0]["release"]["digest"]
    assert b_digest != a_digest and set(pinned(proj).values()) == {(b_digest, False)}
    assert history(cli, proj)[0]["verb"] == "deploy"  # not recorded verified

    started = time.monotonic()
    back = cli("rollback", "--env", "local", "--root", root)  # what the line says (make rollback ENV=local)
    assert back.code == 0, back.stderr
    assert "waiting for another release" not in back.stderr  # the lease was given back on the way out
    assert time.monotonic() - started < 60
    assert set(pinned(proj).values()) == {(a_digest, False)}


def test_a_release_killed_while_verifying_is_finished_by_the_next_rollback_which_cancels_its_run(project, cli):
    """SIGKILL (a lost CI runner) while the run waits for a worker: nothing could be said or cancelled, so the
    release is live and unverified (`releases` shows it: a `deploy` entry, no `verify`), its run still
    Scheduled, the lease taken. The one command that finishes it, `rollback --to <the release before>`, waits
    for the dead lease to run out, cancels the run left behind (no late worker starts it) and rolls back."""
    proj, root = project, str(project.root)
    a_sha = release_with_verify(proj, message="A")
    first = cli("deploy", "--env", "local", "--json", "--no-verify", "--root", root)
    a_digest = first.json()["reference"].rpartition("@")[2]
    release_with_verify(proj, message="B", start_timeout="5m")
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "build.py"), "deploy", "--env", "local", "--root", root],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not verification_runs(proj.server.api_url, smoke_name(proj)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(1.5)  # the run is being followed
    proc.kill()
    proc.wait(timeout=30)
    [left] = verification_runs(proj.server.api_url, smoke_name(proj))
    assert left.state.type.value == "SCHEDULED"
    assert history(cli, proj)[0]["verb"] == "deploy"  # B live, not verified

    back = cli("rollback", "--env", "local", "--to", a_sha[:12], "--root", root)
    assert back.code == 0, back.stderr
    assert "waiting for another release of 'local' to finish" in back.stderr  # the killed run's lease
    assert re.search(rf"cancelled verification run {left.name} \((Scheduled|Late)\), left by a release stopped "
                     "while it verified", back.stderr), back.stderr  # Late: Scheduled past its start time
    [run] = verification_runs(proj.server.api_url, smoke_name(proj))
    assert run.state.type.value == "CANCELLED"
    assert set(pinned(proj).values()) == {(a_digest, False)}


def test_a_server_that_stops_answering_while_verifying_leaves_the_release_live_and_says_how_to_finish(
        project, cli):
    """The Prefect server goes away while the smoke run is followed (tests/kit/proxy.py drops every request
    after the run's second read): one line saying the release is live, not verified, nothing rolled back, and
    how to finish; once the server answers again, the rollback it names completes (after the lease it could
    not give back runs out)."""
    from tests.deploy.test_release_faults import through
    from tests.kit.net import free_port
    from tests.kit.proxy import FaultProxy, Rule

    proj, root = project, str(project.root)
    proxy = FaultProxy(proj.server.api_url.removesuffix("/api"))
    alive = proxy.upstream
    try:
        through(proj, proxy)
        a_sha = release_with_verify(proj, message="A")
        first = cli("deploy", "--env", "local", "--json", "--no-verify", "--root", root)
        assert first.code == 0, first.stderr
        a_digest = first.json()["reference"].rpartition("@")[2]
        b_sha = release_with_verify(proj, message="B", start_timeout="5m")
        proxy.rules = [Rule("GET", r"/api/flow_runs/[0-9a-f-]{36}", nth=2,
                            before=lambda: setattr(proxy, "upstream", f"http://127.0.0.1:{free_port()}"))]
        failed = cli("deploy", "--env", "local", "--root", root)
        assert proxy.fired()
        assert failed.code == 1, failed.stderr
        assert "Traceback" not in failed.stderr
        [line] = [ln for ln in failed.stderr.splitlines() if ln.startswith("error: ")]
        assert line.startswith(f"error: release {b_sha[:12]} is live in 'local' but its verification could not be "
                               "followed"), line
        assert "the Prefect server stopped answering" in line and "nothing was rolled back" in line, line
        assert f"to verify again: slipway rollback --env local --to {b_sha[:12]} --verify" in line, line

        proxy.upstream = alive  # the server answers again
        b_digest = history(cli, proj)[0]["release"]["digest"]
        assert b_digest != a_digest and set(pinned(proj).values()) == {(b_digest, False)}  # live, as it said
        back = cli("rollback", "--env", "local", "--to", a_sha[:12], "--root", root)
        assert back.code == 0, back.stderr
        assert set(pinned(proj).values()) == {(a_digest, False)}
    finally:
        proxy.close()


def test_a_second_release_started_while_one_verifies_waits_for_it_and_lands_after_its_rollback(
        project, cli, tmp_path):
    """Release B is verifying (no worker: it will time out and roll back) when release C starts from another
    checkout: C waits for B's lease, B rolls back to A under it, then C deploys; the history tells it in
    that order, and every deployment pins C."""
    from tests.kit.repo import git

    proj, root = project, str(project.root)
    a_sha = release_with_verify(proj, message="A")
    first = cli("deploy", "--env", "local", "--json", "--no-verify", "--root", root)
    assert first.code == 0, first.stderr
    a_digest = first.json()["reference"].rpartition("@")[2]
    b_sha = release_with_verify(proj, message="B", start_timeout="8s")
    c_sha = release_with_verify(proj, message="C", start_timeout="9s")
    checkouts = {}
    for name, sha in (("b", b_sha), ("c", c_sha)):
        checkouts[name] = tmp_path / f"checkout-{name}"
        git(proj.root, "worktree", "add", "-q", "--detach", str(checkouts[name]), sha)
    b = subprocess.Popen([sys.executable, str(REPO_ROOT / "build.py"), "deploy", "--env", "local", "--root",
                          str(checkouts["b"])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not verification_runs(proj.server.api_url, smoke_name(proj)):
        assert b.poll() is None and time.monotonic() < deadline, b.communicate()
        time.sleep(0.5)
    c = cli("deploy", "--env", "local", "--json", "--no-verify", "--root", str(checkouts["c"]))
    _, b_stderr = b.communicate(timeout=120)
    assert b.returncode == 1, b_stderr
    assert f"error: release {b_sha[:12]} failed verification" in b_stderr and "rolled back to " in b_stderr
    assert c.code == 0, c.stderr
    assert "waiting for another release of 'local' to finish" in c.stderr  # B held the lease throughout
    c_digest = c.json()["reference"].rpartition("@")[2]
    assert c_digest != a_digest and set(pinned(proj).values()) == {(c_digest, False)}
    entries = history(cli, proj)
    assert [(e["verb"], e["release"]["revision"]) for e in entries[:3]] == [
        ("deploy", c_sha), ("rollback", a_sha), ("deploy", b_sha)]
