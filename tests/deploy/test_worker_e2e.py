"""End to end on the embedded default: release this repository, then a real Prefect Docker worker runs the
ELT parent deployment to COMPLETED in a container started from the pinned digest.

Real components only: the registry container `make up` runs, a Prefect server container from the runtime
base image (on SQLite, then on PostgreSQL), prefect-docker's worker, and the release image of this repository.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.deploy.conftest import release_repo

pytestmark = pytest.mark.docker

PREFECT_BIN = Path(sys.executable).parent / "prefect"


@pytest.fixture
def release(tmp_path, registry, prefect_server, docker_engine, cli, monkeypatch):
    yield from release_repo(tmp_path, registry, prefect_server, docker_engine, cli, monkeypatch,
                            name_prefix="deploy-e2e")


def test_docker_worker_runs_the_elt_flow_from_the_pinned_digest(release, docker_engine, tmp_path):
    deployed = release.build_and_deploy()
    reference = deployed["reference"]
    pool = f"{release.name}-docker"
    env = {**os.environ, "PREFECT_API_URL": release.server.api_url, "PREFECT_HOME": str(tmp_path / "worker-home")}
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([str(PREFECT_BIN), "worker", "start", "--pool", pool, "--type", "docker"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from prefect.client.orchestration import PrefectClient
        from prefect.deployments import run_deployment

        async def run():
            async with PrefectClient(api=release.server.api_url) as client:
                flow_run = await run_deployment("elt/on-demand", timeout=600, poll_interval=2, client=client)
                return await client.read_flow_run(flow_run.id)

        flow_run = anyio.run(run)
        assert flow_run.state.is_completed(), f"{flow_run.state}: {log.read_text()[-3000:]}"
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    # The run's container (kept: auto_remove is false in the `local` environment) ran the pinned digest.
    containers = docker_engine.containers.list(all=True, filters={"label": f"io.prefect.flow-run-id={flow_run.id}"})
    assert len(containers) == 1, log.read_text()[-3000:]
    try:
        assert containers[0].attrs["Config"]["Image"] == reference
        assert containers[0].attrs["Config"]["User"] in ("10001:10001", "10001")
    finally:
        containers[0].remove(force=True)
