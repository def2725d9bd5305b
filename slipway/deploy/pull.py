"""Pull credentials: how a flow run's container pulls the release image from a registry the node does not trust.

From the working tree's slipway.yaml (infrastructure, like the pool's template: a rollback to a release older than
the setting still gets it), as job variables under every deployment's own:
- Kubernetes pools, `image_pull_secret: <name>`: `image_pull_secrets: [{name: <name>}]`, which the repository's
  job template renders into the Job's pod spec (`imagePullSecrets`); the Secret (type
  kubernetes.io/dockerconfigjson) lives in the Job's namespace.
- Docker pools, `registry_credentials_block: <name>`: `registry_credentials: {"$ref": {"block_document_id": ...}}`,
  a reference to the prefect-docker DockerRegistryCredentials block of that name, which the Docker worker
  resolves when it starts the run and logs in with before pulling. The reference goes by id (Prefect's server
  refuses a `{{ prefect.blocks... }}` template for this variable, and resolving the block here would copy its
  password into the deployment): the block is looked up when slipway plans, so an unknown name is one error line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slipway.errors import SlipwayError
from slipway.project.config import CONFIG_FILE, EnvironmentConfig

DOCKER_CREDENTIALS_BLOCK_TYPE = "docker-registry-credentials"


@dataclass(frozen=True)
class PullCredentials:
    job_variables: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # job variable -> the slipway.yaml field that set it


def kubernetes_pull(env: EnvironmentConfig, env_name: str) -> PullCredentials:
    if not env.image_pull_secret:
        return PullCredentials()
    return PullCredentials({"image_pull_secrets": [{"name": env.image_pull_secret}]},
                           {"image_pull_secrets": f"{CONFIG_FILE}: environments.{env_name}.image_pull_secret"})


async def pull_credentials(api, env: EnvironmentConfig, env_name: str) -> PullCredentials:
    """The job variables for the environment's pull credentials; a docker pool's block is looked up (by name,
    without its secrets) and must exist."""
    if env.image_pull_secret:
        return kubernetes_pull(env, env_name)
    name = env.registry_credentials_block
    if not name:
        return PullCredentials()
    where = f"{CONFIG_FILE}: environments.{env_name}.registry_credentials_block"
    block_id = await api.block_document_id(DOCKER_CREDENTIALS_BLOCK_TYPE, name)
    if block_id is None:
        raise SlipwayError(
            f"{where}: no Docker Registry Credentials block '{name}' in {env.prefect.api_url}",
            f"create it (UI: Blocks, or `DockerRegistryCredentials(...).save('{name}')` from prefect-docker) or "
            "fix the name; nothing was changed")
    return PullCredentials({"registry_credentials": {"$ref": {"block_document_id": block_id}}},
                           {"registry_credentials": where})
