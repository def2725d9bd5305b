"""Registry access for every kind an environment can name: `registry_client(env)` returns the client.

- generic: any OCI registry; credentials from env vars, else ~/.docker/config.json, else anonymous.
- ecr: AWS ECR; a fresh token from boto3 each run, repository created with immutable tags and scan on push.
- acr: Azure ACR; an Azure AD token (DefaultAzureCredential) exchanged for an ACR refresh token.
"""
from __future__ import annotations

from slipway.config import EnvironmentConfig
from slipway.registry.acr import AcrRegistryClient
from slipway.registry.client import MANIFEST_TYPES, RegistryClient
from slipway.registry.ecr import EcrRegistryClient
from slipway.registry.generic import GenericRegistryClient

_KINDS = {"generic": GenericRegistryClient, "ecr": EcrRegistryClient, "acr": AcrRegistryClient}


def registry_client(env: EnvironmentConfig, env_name: str | None = None, **options) -> RegistryClient:
    """The client for `env`'s registry. `env_name` only improves messages (`environments.<name>...`);
    `options` reach the kind's constructor (`azure_credential=` for acr)."""
    return _KINDS[env.registry.kind](env, env_name, **options)


__all__ = [
    "MANIFEST_TYPES",
    "AcrRegistryClient",
    "EcrRegistryClient",
    "GenericRegistryClient",
    "RegistryClient",
    "registry_client",
]
