"""`dbt parse` of a dbt project inside an image: the dbt, adapters and packages the flows run with, and the
environment a flow run gets (the work pool's `env` job variable), with no network — as `doctor` checks it.

Nothing is written: the parse's target and logs go to the container's /tmp, and the container is removed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import docker
from requests.exceptions import ConnectionError as HttpConnectionError

from slipway.errors import Finding
from slipway.image.probe import PROBE_LABEL
from slipway.project.config import CONFIG_FILE, Project
from slipway.project.dbt import PROJECT_FILE, env_vars_without_default

PARSE_TIMEOUT_SECONDS = 300
_MISSING_ENV = re.compile(r"Env var required but not provided: '([^']+)'")
_NO_EXECUTABLE = ("executable file not found", "no such file or directory")


@dataclass(frozen=True)
class Parsed:
    outcome: str  # "ok" | "failed" | "no dbt" (the image has no dbt command)
    output: str = ""  # the failure's last lines
    missing_env: tuple[str, ...] = ()  # variables dbt asked for and did not get


def parse_in_image(engine: docker.DockerClient, image: str, project_dir: str, environment: dict[str, str]) -> Parsed:
    """`dbt parse` of the project at `project_dir` (a path inside `image`)."""
    command = ["parse", "--project-dir", project_dir, "--no-partial-parse", "--target-path", "/tmp/slipway-dbt",
               "--log-path", "/tmp/slipway-dbt-logs"]
    env = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **environment}
    try:
        container = engine.containers.create(image, command=command, entrypoint=["dbt"], environment=env,
                                             network_disabled=True, working_dir=project_dir,
                                             labels={PROBE_LABEL: "dbt-parse"})
    except docker.errors.APIError as exc:
        return Parsed("failed", " ".join(str(exc.explanation or exc).split()))
    try:
        try:
            container.start()
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if any(sign in text.lower() for sign in _NO_EXECUTABLE):
                return Parsed("no dbt")
            return Parsed("failed", " ".join(text.split()))
        try:
            status = container.wait(timeout=PARSE_TIMEOUT_SECONDS)
        except HttpConnectionError:  # docker-py's read timeout
            return Parsed("failed", f"dbt parse took longer than {PARSE_TIMEOUT_SECONDS}s")
        output = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    if status.get("StatusCode") == 0:
        return Parsed("ok")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return Parsed("failed", " ".join(lines[-4:])[:500], tuple(dict.fromkeys(_MISSING_ENV.findall(output))))


def dbt_findings(engine: docker.DockerClient, image: str, project: Project, env_name: str,
                 project_dir: str) -> list[Finding]:
    """`doctor`'s dbt check of the repository's project at `project_dir`: parsed in `image` (content + code:
    the release) where the repository's files are, under the image's app directory, with the environment's
    `env` job variable. A variable dbt needs and does not get is named with the file that reads it."""
    app_dir = project.config.image.app_dir
    in_image = app_dir if project_dir == "." else f"{app_dir}/{project_dir}"
    shown = f"{project_dir}/{PROJECT_FILE}" if project_dir != "." else PROJECT_FILE
    env = project.environment(env_name)
    environment = {str(k): str(v) for k, v in (env.job_variables.get("env") or {}).items()}
    parsed = parse_in_image(engine, image, in_image, environment)
    if parsed.outcome == "ok":
        return []
    if parsed.outcome == "no dbt":
        return [Finding("warning", "dbt", f"{shown}: the image has no `dbt` command, so the dbt project cannot be "
                        "parsed there (nor run by a flow)", "add dbt-core and your adapter to the runtime lock")]
    if "No dbt_project.yml found" in parsed.output:
        return [Finding("warning", "dbt", f"{shown}: the dbt project is not in the image at {in_image}",
                        (f"COPY it there in {project.config.image.dockerfile}" if project.config.image.dockerfile
                         else f"set {CONFIG_FILE} image.dbt: {project_dir}") + f", or add {project_dir} to "
                        f"{CONFIG_FILE} image.code")]
    if parsed.missing_env:
        readers = env_vars_without_default(project.resolve(project_dir))
        return [Finding("error", "dbt", f"{shown}: dbt parse fails in the image: env_var('{name}')"
                        + (f" ({Path(project_dir) / readers[name]})" if name in readers else "")
                        + f" has no default and {name} is not set",
                        f"give it a default (env_var('{name}', '...')), or set {name} in the image (ENV in "
                        f"{project.config.image.dockerfile or 'Dockerfile.base'}) or in {CONFIG_FILE} "
                        f"environments.{env_name}.job_variables.env")
                for name in parsed.missing_env]
    return [Finding("error", "dbt", f"{shown}: dbt parse fails in the image: {parsed.output}",
                    "fix the project (`dbt parse` shows the same error)")]
