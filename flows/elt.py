"""elt: extract-load, then dbt-build.

child_runs="subflows" runs both in this flow run's process (one Job, one container). child_runs="deployments"
starts each through its own deployment with run_deployment, so on Kubernetes each child is its own Job
(own pod, own resources and logs) while this parent waits and fails unless every child ends Completed.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment

from flows.dbt_build import dbt_build
from flows.extract_load import extract_load

EXTRACT_LOAD_DEPLOYMENT = "extract-load/jaffle-shop"
DBT_BUILD_DEPLOYMENT = "dbt-build/jaffle-shop"


def run_child_deployment(name: str, parameters: dict, timeout_seconds: float | None) -> dict:
    """Run deployment `name` as a child of this flow run and wait; raise unless it ends Completed."""
    child = run_deployment(name, parameters=parameters, timeout=timeout_seconds)
    state = child.state
    if state is None or not state.is_completed():
        state_name = state.name if state else "no state"
        message = f": {state.message}" if state and state.message else ""
        raise RuntimeError(f"child flow run {child.name} ({child.id}) of deployment {name} ended {state_name}{message}")
    get_run_logger().info("child flow run %s of %s: %s", child.name, name, state.name)
    return {"deployment": name, "flow_run_id": str(child.id), "state": state.name}


@flow(name="elt")
def elt(
    child_runs: Literal["subflows", "deployments"] = "subflows",
    dbt_target: str | None = None,
    child_timeout_seconds: float | None = None,
) -> dict:
    """Extract-load then dbt build. `dbt_target` defaults to DBT_TARGET / WAREHOUSE of the run that builds;
    `child_timeout_seconds` bounds the wait for each child deployment run (default: no limit)."""
    build_parameters = {"target": dbt_target} if dbt_target else {}
    if child_runs == "subflows":
        return {"extract-load": extract_load(), "dbt-build": dbt_build(**build_parameters)}
    return {
        "extract-load": run_child_deployment(EXTRACT_LOAD_DEPLOYMENT, {}, child_timeout_seconds),
        "dbt-build": run_child_deployment(DBT_BUILD_DEPLOYMENT, build_parameters, child_timeout_seconds),
    }


if __name__ == "__main__":
    elt()
