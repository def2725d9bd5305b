"""Registry access for every kind an environment can name: `registry_client(env)` returns the client.

- generic: any OCI registry; credentials from env vars, else ~/.docker/config.json, else anonymous.
- ecr: AWS ECR; a fresh token from boto3 each run, repository created with immutable tags and scan on push.
- acr: Azure ACR; an Azure AD token (DefaultAzureCredential) exchanged for an ACR refresh token.

Beside the clients: push.py (an engine image to the registry), copy.py (registry to registry by digest, for
promote), promotion.py (where a promoted release came from), releases.py (the history `releases` lists).
"""
from __future__ import annotations

import importlib

from slipway.project.config import EnvironmentConfig
from slipway.registry.client import MANIFEST_TYPES, RegistryClient

# kind -> (module, class). Imported on use: boto3 alone takes ~0.4 s to import, and only ECR needs it.
_KINDS = {"generic": ("generic", "GenericRegistryClient"), "ecr": ("ecr", "EcrRegistryClient"),
          "acr": ("acr", "AcrRegistryClient")}


def registry_client(env: EnvironmentConfig, env_name: str | None = None, **options) -> RegistryClient:
    """The client for `env`'s registry. `env_name` only improves messages (`environments.<name>...`);
    `options` reach the kind's constructor (`azure_credential=` for acr)."""
    module_name, class_name = _KINDS[env.registry.kind]
    module = importlib.import_module(f"slipway.registry.{module_name}")
    return getattr(module, class_name)(env, env_name, **options)


__all__ = ["MANIFEST_TYPES", "RegistryClient", "registry_client"]
