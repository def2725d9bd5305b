"""One environment of slipway.yaml, resolved once per run and handed to every step: the Target.

It holds the environment's settings, its one registry client (one token cache: ECR and ACR tokens are
fetched once per run) and how to reach its Prefect API. Nothing downstream looks the environment up again.
Tests build a Target from the test kit's fakes (a registry of tag -> digest and blobs, an in-memory Prefect).
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slipway.deploy.prefect_api import PrefectApi, PrefectSettings
from slipway.project.config import LOCAL_ENVIRONMENT, EnvironmentConfig, Project
from slipway.registry import RegistryClient, registry_client

if TYPE_CHECKING:
    from slipway.image.cache import BuildCache

PrefectConnector = Callable[[PrefectSettings], AbstractAsyncContextManager[PrefectApi]]


@dataclass
class Target:
    name: str
    env: EnvironmentConfig
    registry: RegistryClient
    prefect: PrefectSettings
    connector: PrefectConnector  # PrefectApi.connect, or a fake's
    plain_reads: bool = False  # a real API, readable with plain HTTP too (deploy/unchanged.py); not a fake's

    @property
    def repository(self) -> str:
        """`<registry host>/<repository>`: what image references in this environment start with."""
        return self.env.image_repository()

    @property
    def accepts_dirty(self) -> bool:
        """Only the developer's own `local` environment takes images built from uncommitted changes."""
        return self.name == LOCAL_ENVIRONMENT

    def reference(self, digest: str) -> str:
        return f"{self.repository}@{digest}"

    def build_cache(self) -> BuildCache:
        """The environment's build cache (image/cache.py): the same registry and credentials, the repository
        slipway.yaml's `cache_repository` names."""
        from slipway.image.cache import BuildCache

        cache_env = self.env.model_copy(update={"repository": self.env.build_cache_repository()})
        return BuildCache(registry_client(cache_env, self.name))

    def connect(self) -> AbstractAsyncContextManager[PrefectApi]:
        """The run's one Prefect client (checked to answer), as an async context manager."""
        return self.connector(self.prefect)


def open_target(project: Project, name: str) -> Target:
    """The real Target for environment `name`: an unknown name is one error listing the known ones."""
    env = project.environment(name)
    registry_up, prefect_up = project.up_serves(env)
    registry = registry_client(env, name)
    registry.up_starts_it = registry_up
    return Target(name, env, registry, PrefectSettings(name, env.prefect, up_starts_it=prefect_up),
                  PrefectApi.connect, plain_reads=True)

