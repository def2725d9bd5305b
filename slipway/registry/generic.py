"""Any OCI registry (a local registry, Harbor, GHCR, Artifactory, ...): credentials from the environment
variables the environment names, else the user's Docker config, else anonymous access."""
from __future__ import annotations

import os

import docker
from docker.errors import DockerException

from slipway.errors import SlipwayError
from slipway.registry.client import RegistryClient


class GenericRegistryClient(RegistryClient):
    kind = "generic"

    def _fetch_credentials(self) -> tuple[str, str] | None:
        registry = self.env.registry
        if registry.username_env or registry.password_env:
            return self._from_environment(registry.username_env, registry.password_env)
        return self._from_docker_config()

    def _from_environment(self, username_env: str | None, password_env: str | None) -> tuple[str, str]:
        if not (username_env and password_env):
            missing = "password_env" if username_env else "username_env"
            raise SlipwayError(f"{self._field(missing)} is missing",
                               "set both username_env and password_env (the names of environment variables)")
        values = []
        for field, name in (("username_env", username_env), ("password_env", password_env)):
            value = os.environ.get(name)
            if not value:
                raise SlipwayError(f"environment variable {name} ({self._field(field)}) is not set",
                                   f"export {name} with the registry {field.split('_')[0]}")
            values.append(value)
        return values[0], values[1]

    def _from_docker_config(self) -> tuple[str, str] | None:
        """`docker login`'s entry for this host: `auths` (base64 user:password) or a credential helper."""
        try:
            entry = docker.auth.load_config().resolve_authconfig(self.host) or {}
        except DockerException as exc:
            raise SlipwayError(f"reading Docker credentials for {self.host} failed ({exc})",
                               "fix ~/.docker/config.json or its credential helper, or set "
                               f"{self._field('username_env')} and password_env") from exc
        if entry.get("Username") and entry.get("Password"):
            return entry["Username"], entry["Password"]
        return None

    def credentials_source(self) -> str:
        registry = self.env.registry
        if registry.username_env:
            return f"the credentials in ${registry.username_env}/${registry.password_env}"
        if self.credentials() is not None:
            return f"the Docker config's credentials for {self.host}"
        return "anonymous access"

    def credentials_fix(self) -> str:
        registry = self.env.registry
        if registry.username_env:
            return (f"check ${registry.username_env} and ${registry.password_env} "
                    f"({self._field('username_env')}/password_env)")
        return (f"set {self._field('username_env')} and password_env to the names of environment variables "
                f"holding the credentials, or run `docker login {self.host}`")
