"""Verified releases with a real Prefect Docker worker: the verification run is started by prefect-docker's
worker in a container from the pinned digest, and its end (Completed, Failed) is read from the server.

One worker and one project for the whole story, so the cost is one deploy without a run and four runs: A is
deployed unverified (it creates the pool the worker then serves), B's smoke run completes (verified), C's
smoke run raises (`fail: true`, a parameter of the release's own deployment) and C is rolled back to B; then
`rollback --verify`, which only reports: back to C, whose run fails again, C stays live and the command exits
1; back to B, whose run completes, B recorded verified.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.test_verify import history, pinned, release_with_verify, smoke_name, verification_runs

pytestmark = [pytest.mark.docker, pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)]

PREFECT_BIN = Path(sys.executable).parent / "prefect"


@pytest.fixture
def docker_worker(project, docker_engine, tmp_path):
    """`prefect worker start --type docker` on the project's pool, polling every 2 s. Yields the log's path;
    the run containers it leaves (auto_remove is false) are removed afterwards."""
    env = {**os.environ, "PREFECT_API_URL": project.server.api_url, "PREFECT_HOME": str(tmp_path / "worker-home"),
           "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_PREFETCH_SECONDS": "2"}
    log = tmp_path / "worker.log"
    started = []

    def start():
        with open(log, "wb") as out:
            started.append(subprocess.Popen([str(PREFECT_BIN), "worker", "start", "--pool", project.docker_pool,
                                             "--type", "docker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True))
        return log

    yield start
    for worker in started:
        worker.terminate()
        worker.wait(timeout=30)
    for run in verification_runs(project.server.api_url, smoke_name(project)):
        for container in docker_engine.containers.list(all=True,
                                                       filters={"label": f"io.prefect.flow-run-id={run.id}"}):
            container.remove(force=True)


def test_a_run_that_completes_is_verified_and_one_that_raises_is_rolled_back(project, cli, docker_worker, docker_engine,
                                                                          monkeypatch, tmp_path):
    from slipway.summary import SUMMARY_ENV

    proj, root = project, str(project.root)
    release_with_verify(proj, message="A", start_timeout="3m")
    assert cli("deploy", "--env", "local", "--no-verify", "--root", root).code == 0  # creates the pool
    log = docker_worker()

    b_sha = release_with_verify(proj, message="B", start_timeout="3m")
    monkeypatch.setenv(SUMMARY_ENV, str(tmp_path / "step_summary.md"))  # as GitHub Actions provides it
    b = cli("deploy", "--env", "local", "--json", "--root", root)
    monkeypatch.delenv(SUMMARY_ENV)
    assert b.code == 0, f"{b.stderr}\n{log.read_text()[-3000:]}"
    b_digest = b.json()["reference"].rpartition("@")[2]
    assert f"release {b_sha[:12]} verified in 'local' (" in b.stderr
    # Its state changes as they are polled (a run of this tiny flow can be Running for less than a poll).
    assert ": Scheduled" in b.stderr and ": Completed" in b.stderr, b.stderr
    runs = verification_runs(proj.server.api_url, smoke_name(proj))
    assert [r.state.type.value for r in runs] == ["COMPLETED"]
    entry = history(cli, proj)[0]
    assert (entry["verb"], entry["release"]["revision"]) == ("verify", b_sha)
    assert entry["details"] == {"verification": "verified", "run": f"{runs[0].name} ({runs[0].id})"}
    # The CI step summary lists the run, its end and its page in the UI.
    summary = (tmp_path / "step_summary.md").read_text()
    assert f"### slipway verify → local\n\n**`{b_sha[:12]}` verified**" in summary, summary
    url = f"{proj.server.api_url.removesuffix('/api')}/runs/flow-run/{runs[0].id}"
    assert f"| `{smoke_name(proj)}` | `{runs[0].name}` | Completed | [open in Prefect]({url}) |" in summary, summary
    # The worker ran B's pinned digest.
    [container] = docker_engine.containers.list(all=True, filters={"label": f"io.prefect.flow-run-id={runs[0].id}"})
    assert container.attrs["Config"]["Image"].endswith("@" + b_digest)

    c_sha = release_with_verify(proj, message="C", start_timeout="3m",
                                parameters={smoke_name(proj): {"fail": True}})
    c = cli("deploy", "--env", "local", "--root", root)
    assert c.code == 1, c.stderr
    errors = [line for line in c.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in c.stderr, c.stderr
    assert errors[0].startswith(f"error: release {c_sha[:12]} failed verification ({smoke_name(proj)}: run "), c.stderr
    assert " Failed: " in errors[0] and f"; rolled back to {b_sha[:12]}" in errors[0], errors[0]
    # Every deployment pins B's digest again, active, with no human step; the history says why.
    assert set(pinned(proj).values()) == {(b_digest, False)}
    failed = [r for r in verification_runs(proj.server.api_url, smoke_name(proj)) if r.id != runs[0].id]
    assert [(r.state.type.value, r.parameters) for r in failed] == [("FAILED", {"fail": True})]
    entries = history(cli, proj)
    assert [(e["verb"], e["release"]["revision"]) for e in entries[:2]] == [("rollback", b_sha), ("deploy", c_sha)]
    assert entries[0]["details"]["verification"] == "failed"
    assert entries[0]["details"]["run"] == f"{failed[0].name} ({failed[0].id}) Failed"

    # rollback --verify runs the rolled-back release's own verification and only reports: C's run fails, C
    # stays live (no automatic rollback), exit 1 with one line; B's completes and B is recorded verified.
    to_c = cli("rollback", "--env", "local", "--to", c_sha[:12], "--verify", "--root", root)
    assert to_c.code == 1, to_c.stderr
    [line] = [ln for ln in to_c.stderr.splitlines() if ln.startswith("error: ")]
    assert line.startswith(f"error: release {c_sha[:12]} failed verification ({smoke_name(proj)}: run "), line
    assert "it stays live (rollback --verify only reports)" in line, line
    c_digest = history(cli, proj)[0]["release"]["digest"]
    assert c_digest != b_digest and set(pinned(proj).values()) == {(c_digest, False)}
    to_b = cli("rollback", "--env", "local", "--to", b_sha[:12], "--verify", "--json", "--root", root)
    assert to_b.code == 0, to_b.stderr
    assert to_b.json()["verification"]["verified"] is True
    assert set(pinned(proj).values()) == {(b_digest, False)}
    entry = history(cli, proj)[0]
    assert (entry["verb"], entry["release"]["revision"], entry["details"]["verification"]) == (
        "verify", b_sha, "verified")
    assert [r.state.type.value for r in verification_runs(proj.server.api_url, smoke_name(proj))].count(
        "COMPLETED") == 2
