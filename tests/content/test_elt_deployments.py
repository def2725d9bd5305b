"""elt with child_runs="deployments": each child runs through its own deployment, here served by a real
Prefect runner process (`serve`) against the temporary server, as a worker would run them in production."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time

import duckdb
import pandas as pd
import pytest

from flows.elt import DBT_BUILD_DEPLOYMENT, EXTRACT_LOAD_DEPLOYMENT, elt
from tests.content.support import RAW_DIR, REPO_ROOT, python_path_for_subprocesses

SERVE_CHILDREN = """
from prefect import serve
from flows.dbt_build import dbt_build
from flows.extract_load import extract_load
serve(extract_load.to_deployment("jaffle-shop"), dbt_build.to_deployment("jaffle-shop"))
"""


@contextlib.contextmanager
def served_children(api_url: str, log_path, **env):
    """Serve extract-load/jaffle-shop and dbt-build/jaffle-shop in a child process until the block ends."""
    from prefect.client.orchestration import get_client

    child_env = {**os.environ, **env, "PREFECT_API_URL": api_url, "PYTHONPATH": python_path_for_subprocesses(),
                 "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    started = time.time()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", SERVE_CHILDREN], cwd=REPO_ROOT, env=child_env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        with get_client(sync_client=True) as client:
            while True:
                assert process.poll() is None, f"serve exited: {log_path.read_text()[-2000:]}"
                with contextlib.suppress(Exception):
                    # Served deployments are (re)registered at start: wait for both to point at this runner.
                    if all(client.read_deployment_by_name(n).updated.timestamp() > started
                           for n in (EXTRACT_LOAD_DEPLOYMENT, DBT_BUILD_DEPLOYMENT)):
                        break
                assert time.monotonic() < deadline, f"deployments not served: {log_path.read_text()[-2000:]}"
                time.sleep(1)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def runs_of(deployment_name: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        return len(client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))))


@pytest.mark.timeout(600)
def test_elt_runs_each_child_through_its_deployment(prefect_server, warehouse, tmp_path):
    with served_children(prefect_server, tmp_path / "serve.log"):
        state = elt(child_runs="deployments", child_timeout_seconds=300, return_state=True)

    assert state.is_completed(), state.message
    result = state.result()
    assert result["extract-load"]["state"] == "Completed"
    assert result["dbt-build"]["state"] == "Completed"
    # The children (other processes) built the marts in the same warehouse.
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        assert conn.execute("select count(*) from main.orders").fetchone()[0] == len(pd.read_csv(RAW_DIR / "orders.csv"))


@pytest.mark.timeout(600)
def test_elt_fails_when_a_child_deployment_run_fails(prefect_server, warehouse, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(RAW_DIR, raw)
    (raw / "orders.csv").unlink()

    with served_children(prefect_server, tmp_path / "serve.log", JAFFLE_DATA_DIR=str(raw)):
        dbt_runs_before = runs_of(DBT_BUILD_DEPLOYMENT)
        state = elt(child_runs="deployments", child_timeout_seconds=300, return_state=True)

    assert state.is_failed()
    assert f"of deployment {EXTRACT_LOAD_DEPLOYMENT} ended Failed" in state.message
    assert str(raw / "orders.csv") in state.message  # the child's own reason
    assert runs_of(DBT_BUILD_DEPLOYMENT) == dbt_runs_before  # dbt-build was never started
