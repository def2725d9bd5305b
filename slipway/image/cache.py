"""The build cache in an environment's registry: the images a build makes from inputs that rarely change —
the runtime base (`base-<hash>`) and the content image (`content-<hash>`) — each pushed by the machine that
built it, under a tag of its inputs' hash, to the repository slipway.yaml's `cache_repository` names
(default `<repository>/slipway-cache`), and pulled by a machine that lacks it (a fresh CI runner) instead of
being built again.

A cache, not a source of truth: when it cannot be read or written, the build goes on locally and one warning
says why. A tag is pushed once: when another machine pushed one for the same inputs meanwhile, that one stays
(either is a good image for those inputs; an immutable ECR repository would refuse a second anyway).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import docker

from slipway.errors import SlipwayError
from slipway.image.engine import pull
from slipway.output import Reporter
from slipway.registry.client import RegistryClient


@dataclass(frozen=True)
class BuildCache:
    registry: RegistryClient  # a client for the cache repository of the environment's registry

    @property
    def repository(self) -> str:
        return f"{self.registry.host}/{self.registry.repository}"

    def reference(self, tag: str) -> str:
        return f"{self.repository}:{tag}"

    def holds(self, tag: str, reporter: Reporter) -> bool | None:
        """Whether the cache has `tag`; None (and a warning) when it cannot be read."""
        try:
            return self.registry.manifest_digest(tag) is not None
        except SlipwayError as exc:
            reporter.warn(f"the build cache {self.repository} cannot be read ({exc.message}); building here")
            return None

    def pull(self, engine: docker.DockerClient, tag: str, what: str, reporter: Reporter) -> bool:
        """Pull `tag` into the engine; False (and a warning) when that fails."""
        reporter.step(f"pulling the {what} {self.reference(tag)} from the build cache (instead of building it)")
        started = time.monotonic()
        try:
            with reporter.group(f"docker pull {self.reference(tag)}"):
                pull(engine, self.repository, tag, self.registry.auth_config(), reporter.detail)
        except SlipwayError as exc:
            reporter.warn(f"{exc.message[:300]}; building the {what} here")
            return False
        reporter.step(f"pulled the {what} {self.reference(tag)} ({time.monotonic() - started:.1f} s)")
        return True

    def push(self, engine: docker.DockerClient, local: str, tag: str, what: str, reporter: Reporter) -> None:
        """Push the engine's image `local` to the cache as `tag`, unless the cache has that tag already."""
        from slipway.registry.push import push_image

        try:
            if self.registry.manifest_digest(tag) is not None:
                reporter.step(f"{self.reference(tag)} was pushed meanwhile by another build: keeping that one")
                return
            image = engine.images.get(local)
            image.tag(self.repository, tag)
            push_image(engine, self.registry, image, [tag], reporter)
        except SlipwayError as exc:
            reporter.warn(f"the {what} could not be cached in {self.repository} ({exc.line()}); the next fresh "
                          "machine will build it again")
