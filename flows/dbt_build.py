"""dbt-build: `dbt build` (models, then their tests) on the project shipped with the content."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from prefect import flow, get_run_logger

from jaffle_common import Settings, snowflake_environment

APP_ROOT = Path(__file__).resolve().parents[1]
# dbt statuses that mean a node did not do its job ("skipped" follows an upstream failure, reported there).
FAILED_STATUSES = {"error", "fail", "runtime error"}


def writable_dir(variable: str, project_dir: Path, name: str) -> Path:
    """Where dbt writes `name` (target/ or logs/): $variable, else the project dir when writable (local
    runs), else a temp dir — in the image the project belongs to root and the flow runs as uid 10001."""
    if os.environ.get(variable):
        return Path(os.environ[variable])
    if os.access(project_dir, os.W_OK):
        return project_dir / name
    return Path(tempfile.gettempdir()) / "jaffle_shop-dbt" / name


def profile_environment(target: str) -> dict[str, str]:
    """What dbt's profile (dbt/profiles.yml) reads from the environment for `target`, resolved as
    extract-load resolves it: for Snowflake each SNOWFLAKE_* from its variable or from the Secret block its
    `<VARIABLE>_BLOCK` names, every missing one named before dbt starts."""
    return snowflake_environment() if target == "snowflake" else {}


def dbt_args(settings: Settings, target: str, command: str = "build") -> list[str]:
    project_dir = settings.dbt_project_dir
    return [
        command,
        "--project-dir", str(project_dir),
        "--profiles-dir", os.environ.get("DBT_PROFILES_DIR") or str(project_dir),
        "--target", target,
        "--target-path", str(writable_dir("DBT_TARGET_PATH", project_dir, "target")),
        "--log-path", str(writable_dir("DBT_LOG_PATH", project_dir, "logs")),
    ]


@flow(name="dbt-build")
def dbt_build(target: str | None = None, project_dir: str | None = None) -> dict[str, int]:
    """Run `dbt build` against `target` (default: DBT_TARGET, else WAREHOUSE); returns node counts by status.

    `project_dir` overrides DBT_PROJECT_DIR / <app root>/dbt.
    """
    logger = get_run_logger()
    settings = Settings.from_env(APP_ROOT)
    if project_dir:
        settings = dataclasses.replace(settings, dbt_project_dir=Path(project_dir))
    target = target or settings.dbt_target
    os.environ.update(profile_environment(target))
    args = dbt_args(settings, target)
    logger.info("dbt %s", " ".join(args))

    # Imported here, not at the top: dbt takes ~1 s to import, and everything that only loads this flow
    # (the worker resolving the entry point, slipway's build-time probe, the elt parent) skips that cost.
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(args)
    # result.result is None when dbt stopped before running any node (bad profile, parse error...).
    node_results = result.result.results if result.result is not None else []
    counts: dict[str, int] = {}
    failed: list[str] = []
    skipped: list[str] = []
    for node_result in node_results:
        node, status = node_result.node, str(node_result.status)
        counts[status] = counts.get(status, 0) + 1
        logger.info(
            "%s %s: %s in %.2fs%s",
            node.resource_type, node.name, status, node_result.execution_time or 0.0,
            f" ({node_result.message})" if node_result.message else "",
        )
        if status in FAILED_STATUSES:
            failed.append(f"{node.resource_type} {node.name} ({status}: {node_result.message})")
        elif status == "skipped":
            skipped.append(node.name)

    if failed:
        downstream = f"; skipped downstream: {', '.join(skipped)}" if skipped else ""
        raise RuntimeError(f"dbt build on target {target} failed: {'; '.join(failed)}{downstream}")
    if not result.success:
        raise RuntimeError(f"dbt build on target {target} failed: {result.exception or 'see the dbt log above'}")
    logger.info("dbt build on target %s: %s", target, ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return counts


if __name__ == "__main__":
    dbt_build()
