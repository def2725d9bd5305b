"""A stand-in cluster: the API stand-in with its admission, the pod runner, and a kubeconfig for clients.

    cluster = start_cluster(engine, workdir, kubernetes_version="1.30.0", labels=kit_labels("pod"))
    cluster.install(REPO_ROOT / "deploy/helm/rbac.yaml")   # kubectl create namespace + kubectl create -f
    ... KUBECONFIG=cluster.kubeconfig prefect worker start --type kubernetes ...
    cluster.close()

The kubeconfig names the stand-in's loopback URL and a token the stand-in never checks; prefect-kubernetes
(the worker and its kopf observer) loads it like any kubeconfig when it does not run in a Pod.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.kit.kubernetes.admission import pinned_images_only, strictly_valid
from tests.kit.kubernetes.apiserver import ApiServer, Recorded
from tests.kit.kubernetes.kubelet import PodRunner

CONTEXT = "slipway-stand-in"


@dataclass
class StandInCluster:
    api: ApiServer
    runner: PodRunner
    kubeconfig: Path

    installed: int = 0  # how many requests the installation took: those after it are the clients'

    def install(self, *manifests: Path) -> None:
        """What an admin does before installing the worker: `kubectl create namespace <ns>` for each namespace
        the files name, then `kubectl create -f <file>`, through the API with kubernetes-asyncio's client."""
        asyncio.run(self._install(manifests))
        self.installed = len(self.api.requests)

    def client_requests(self) -> list[Recorded]:
        """The requests made after `install`: the worker's and its observer's."""
        return list(self.api.requests)[self.installed:]

    async def _install(self, manifests) -> None:
        from kubernetes_asyncio import client, config, utils

        api = await config.new_client_from_config(str(self.kubeconfig))
        async with api:
            namespaces = sorted({doc["metadata"]["namespace"] for path in manifests
                                 for doc in yaml.safe_load_all(Path(path).read_text())
                                 if doc and doc.get("metadata", {}).get("namespace")})
            for namespace in namespaces:
                await client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
            for path in manifests:
                await utils.create_from_yaml(api, str(path))

    def submitted_jobs(self) -> list[Recorded]:
        """Every Job create request, as the client sent it, with the status the stand-in answered."""
        return self.api.created("jobs")

    def wait_until(self, condition, timeout: float, what: str) -> None:
        """Poll `condition()` until it is true; AssertionError naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"stand-in cluster: {what} not within {timeout:.0f} s; "
                                     f"pod runner errors: {self.runner.errors}")
            time.sleep(0.2)

    def close(self) -> None:
        """Stop the Pods' containers still running, then the API (its watches closed, its tasks cancelled), then
        remove the containers the pod runner started."""
        self.runner.stop_containers()
        self.api.stop()
        self.runner.remove_containers()


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": CONTEXT, "cluster": {"server": server}}],
        "users": [{"name": CONTEXT, "user": {"token": "not-checked-by-the-stand-in"}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
    }, sort_keys=False))
    return path


def start_cluster(engine, workdir: Path, kubernetes_version: str, labels: dict[str, str] | None = None,
                  network_mode: str = "host") -> StandInCluster:
    """The API stand-in (refusing unpinned images and Jobs that fail strict validation for
    `kubernetes_version`), a pod runner on `engine`, and a kubeconfig at `workdir/kubeconfig`."""
    api = ApiServer(admission=[pinned_images_only, strictly_valid(kubernetes_version)]).start()
    runner = PodRunner(api, engine, network_mode=network_mode, labels=labels)
    return StandInCluster(api, runner, write_kubeconfig(Path(workdir) / "kubeconfig", api.url))
