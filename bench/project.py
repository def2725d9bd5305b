"""The repository both tools release: a snapshot copy of the working tree, pointed at the bench stack, plus
what the incumbent needs to release the same content (a Dockerfile and a prefect.yaml).

slipway side: slipway.yaml's `local` environment names the bench registry (repository `bench-slipway`), the
bench Prefect server and the work pool `bench-slipway-docker`; deployments.yaml holds N generated deployments.

prefect side (`prefect deploy --all`): prefect.yaml in the form Prefect's docs show for Docker images —
`run_shell_script` for the commit hash, `prefect_docker...build_docker_image` (pull: false: nothing can be
pulled here) and `push_docker_image`, one entry per deployment whose `job_variables.image` is the built
image — and Dockerfile.prefect, what a team writes by hand: FROM the same runtime base, the same content in
the same cache-friendly order (modules + pip install, dbt + dbt parse, data, flows). Same base, same content,
same build context (.dockerignore), same registry and server: the difference measured is the tool.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.kit.repo import REPO_ROOT, change_a_flow, commit_all, git, snapshot_repo

SLIPWAY_REPOSITORY = "bench-slipway"
PREFECT_REPOSITORY = "bench-prefect"
SLIPWAY_POOL = "bench-slipway-docker"
PREFECT_POOL = "bench-prefect-docker"
IMAGE_NAME = "bench-jaffle-shop"
INCUMBENT_DOCKERFILE = "Dockerfile.prefect"

# The example flows, cycled through to make N deployments: (entrypoint, parameters, schedules).
FLOWS = [
    ("flows/extract_load.py:extract_load", {}, []),
    ("flows/dbt_build.py:dbt_build", {}, []),
    ("flows/elt.py:elt", {"child_runs": "subflows"}, [{"cron": "0 6 * * *", "timezone": "Europe/Amsterdam"}]),
]
APP_ROOT = "/opt/prefect"
JOB_VARIABLES = {"network_mode": "host", "image_pull_policy": "IfNotPresent"}


def generated_deployments(count: int, prefix: str) -> list[dict]:
    """`count` deployments over the example flows, in prefect.yaml's `deployments:` schema."""
    out = []
    for i in range(count):
        entrypoint, parameters, schedules = FLOWS[i % len(FLOWS)]
        dep = {"name": f"{prefix}-{i:03d}", "entrypoint": entrypoint,
               "description": f"Benchmark deployment {i} of {count}.", "tags": ["bench"]}
        if parameters:
            dep["parameters"] = dict(parameters)
        if schedules:
            dep["schedules"] = [dict(s) for s in schedules]
        out.append(dep)
    return out


def incumbent_dockerfile(base_image: str, marker: str) -> str:
    """`marker` (a LABEL, metadata only) lets the benchmark find and remove every image of this build."""
    return f"""# What a team writes for `prefect deploy` (prefect-docker's build step): the same runtime base and content.
FROM {base_image}
LABEL {marker}
USER root
WORKDIR {APP_ROOT}
ENV DBT_PROFILES_DIR={APP_ROOT}/dbt DBT_PROJECT_DIR={APP_ROOT}/dbt DBT_SEND_ANONYMOUS_USAGE_STATS=false
COPY modules/ /tmp/modules/
RUN pip install --no-deps --no-build-isolation --no-compile /tmp/modules && rm -rf /tmp/modules
COPY dbt/ {APP_ROOT}/dbt/
RUN cd {APP_ROOT}/dbt && dbt parse --quiet --target-path target --log-path /tmp/dbt-logs && rm -rf /tmp/dbt-logs
COPY data/ {APP_ROOT}/data/
COPY flows/ {APP_ROOT}/flows/
USER 10001:10001
"""


def incumbent_prefect_yaml(registry_address: str, deployments: list[dict], build: bool,
                           image: str | None = None, dockerfile: str = INCUMBENT_DOCKERFILE,
                           repository: str = PREFECT_REPOSITORY) -> dict:
    """prefect.yaml for `prefect deploy --all`. build=False: no build/push steps, `image` given as is."""
    doc: dict = {"name": "bench-jaffle-shop", "prefect-version": "3.8.8"}
    if build:
        doc["build"] = [
            {"prefect.deployments.steps.run_shell_script": {
                "id": "get-commit-hash", "script": "git rev-parse --short=12 HEAD", "stream_output": False}},
            {"prefect_docker.deployments.steps.build_docker_image": {
                "id": "build-image", "image_name": f"{registry_address}/{repository}",
                "tag": "{{ get-commit-hash.stdout }}", "dockerfile": dockerfile, "pull": False}},
        ]
        doc["push"] = [
            {"prefect_docker.deployments.steps.push_docker_image": {
                "image_name": "{{ build-image.image_name }}", "tag": "{{ build-image.tag }}"}},
        ]
        image = "{{ build-image.image }}"
    else:
        doc["build"] = None
        doc["push"] = None
    doc["pull"] = [{"prefect.deployments.steps.set_working_directory": {"directory": APP_ROOT}}]
    doc["deployments"] = [
        {**dep, "work_pool": {"name": PREFECT_POOL, "job_variables": {**JOB_VARIABLES, "image": image}}}
        for dep in deployments]
    return doc


class BenchRepo:
    """The snapshot repository and the edits the scenarios make to it (each one committed)."""

    def __init__(self, root: Path, registry_address: str, api_url: str):
        self.root = root
        self.registry_address = registry_address
        self.api_url = api_url

    @classmethod
    def create(cls, dest: Path, registry_address: str, api_url: str, base_image: str, marker: str) -> BenchRepo:
        repo = cls(snapshot_repo(dest), registry_address, api_url)
        config = yaml.safe_load((repo.root / "slipway.yaml").read_text())
        config["image"]["name"] = IMAGE_NAME  # local tags bench-jaffle-shop:<sha>: the benchmark's own
        local = config["environments"]["local"]
        local["registry"]["address"] = registry_address
        local["repository"] = SLIPWAY_REPOSITORY
        local["prefect"]["api_url"] = api_url
        local["work_pool"]["name"] = SLIPWAY_POOL
        repo.write("slipway.yaml", yaml.safe_dump(config, sort_keys=False))
        repo.write(INCUMBENT_DOCKERFILE, incumbent_dockerfile(base_image, marker))
        # .dockerignore is an allowlist without the code paths (slipway writes them as its own layers and leaves
        # them out of the content image's context whatever this file says); the incumbent's Dockerfile copies
        # them itself, so they go in the build context both tools are given.
        ignore = (repo.root / ".dockerignore").read_text()
        repo.write(".dockerignore", ignore + "\n# bench: the incumbent's Dockerfile copies the code paths\n!data/\n!flows/\n")
        repo.commit("bench: point local at the bench stack; the incumbent's Dockerfile")
        # `make` finds the tool's virtualenv where a clone has it (.venv is ignored: the tree stays clean).
        (repo.root / ".venv").symlink_to(REPO_ROOT / ".venv")
        return repo

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str) -> str:
        return commit_all(self.root, message)

    def sha(self) -> str:
        return git(self.root, "rev-parse", "HEAD")

    def set_deployments(self, count: int, slipway_prefix: str, prefect_prefix: str | None = None,
                        prefect_build: bool = True, prefect_image: str | None = None,
                        prefect_file: str = "prefect.yaml") -> str:
        """Both tools' declarations of `count` deployments over the example flows (the incumbent's only with
        `prefect_prefix`); committed."""
        self.write("deployments.yaml", yaml.safe_dump(
            {"deployments": generated_deployments(count, slipway_prefix)}, sort_keys=False))
        if prefect_prefix:
            self.write(prefect_file, yaml.safe_dump(incumbent_prefect_yaml(
                self.registry_address, generated_deployments(count, prefect_prefix), prefect_build,
                prefect_image), sort_keys=False))
        return self.commit(f"bench: {count} deployments")

    def change_a_flow(self, marker: str) -> str:
        """A one-line code change to a flow, committed: what a typical code-only release looks like."""
        return change_a_flow(self.root, f"bench {marker}")
