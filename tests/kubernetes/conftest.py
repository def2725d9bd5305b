"""Fixtures of the Kubernetes tests: this repository released to its `kind` environment (a Kubernetes work
pool from deploy/work-pools/kubernetes-job-template.json) on the kit's registry and Prefect server, the
stand-in cluster (tests/kit/kubernetes/), and the real prefect-kubernetes worker started from the Helm values.

The release is built and deployed once per session (`deployed`). Names are made unique per release so the
tests share the session's registry and server with others: the snapshot's
slipway.yaml `kind` pool and deploy/helm/values-kind.yaml's `workPool` each get the same suffix, so the two
stay as equal, or as different, as they are in the repository.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import yaml

from tests.conftest import Outcome, remove_tags_containing  # noqa: F401
from tests.kit.repo import REPO_ROOT, git, snapshot_repo

PREFECT_BIN = Path(sys.executable).parent / "prefect"
ENV = "kind"
DEPLOYMENT = "elt/on-demand"
HELM_VALUES = ("deploy/helm/values.yaml", "deploy/helm/values-kind.yaml")
RBAC = "deploy/helm/rbac.yaml"
TEMPLATE = "deploy/work-pools/kubernetes-job-template.json"


def run_cli(*args: str) -> Outcome:
    """`build.py <args>` in-process (the `main` build.py calls), its output captured."""
    from slipway.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return Outcome(code, out.getvalue(), err.getvalue())


@dataclass
class KubernetesRelease:
    """A snapshot of this repository whose `kind` environment points at the test registry and server."""

    root: Path
    name: str
    registry: object
    server: object

    @property
    def pool(self) -> str:
        return yaml.safe_load((self.root / "slipway.yaml").read_text())["environments"][ENV]["work_pool"]["name"]

    def kubernetes_version(self) -> str:
        return yaml.safe_load((self.root / "slipway.yaml").read_text())["kubernetes_version"]

    def build(self) -> None:
        from slipway import pipeline
        from slipway.output import Reporter
        from slipway.project.config import load_project

        pipeline.build(pipeline.Workspace(load_project(self.root), Reporter(stream=io.StringIO())))

    def deploy(self) -> dict:
        outcome = run_cli("deploy", "--env", ENV, "--root", str(self.root), "--json")
        assert outcome.code == 0, outcome.stderr
        return outcome.json()

    def manifests(self) -> dict:
        """`build.py manifests --env kind --json`: {"reference", "manifests": {full name: Job}}."""
        outcome = run_cli("manifests", "--env", ENV, "--root", str(self.root), "--json")
        assert outcome.code == 0, outcome.stderr
        return outcome.json()


def kind_release(workdir: Path, test_registry, server, engine):
    """Yield a KubernetesRelease of a snapshot of this repository; its image tags are removed afterwards."""
    suffix = uuid.uuid4().hex[:8]
    name = f"k8s-{suffix}"
    root = snapshot_repo(workdir / "repo")
    config = yaml.safe_load((root / "slipway.yaml").read_text())
    config["image"]["name"] = name
    kind = config["environments"][ENV]
    kind["registry"]["address"] = test_registry.address
    kind["repository"] = name
    kind["prefect"]["api_url"] = server.api_url
    kind["work_pool"]["name"] = f"{kind['work_pool']['name']}-{suffix}"
    (root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for values_file in HELM_VALUES:
        values = yaml.safe_load((root / values_file).read_text()) or {}
        pool = values.get("worker", {}).get("config", {}).get("workPool")
        if pool:
            values["worker"]["config"]["workPool"] = f"{pool}-{suffix}"
            (root / values_file).write_text(yaml.safe_dump(values, sort_keys=False))
    git(root, "commit", "-q", "-am", "point kind at the test registry and server, unique pool")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_CONFIG", str(workdir / "docker-config"))  # not the user's registry logins
        yield KubernetesRelease(root, name, test_registry, server)
    remove_tags_containing(engine, name)


@dataclass
class Deployed:
    release: KubernetesRelease
    reference: str  # the release's digest reference
    rendered: dict  # `build.py manifests`: full deployment name -> Job


@pytest.fixture(scope="session")
def deployed(tmp_path_factory, registry, prefect_server, docker_engine):  # noqa: F811
    """This repository built, pushed and deployed to `kind` once per server; the Jobs `manifests` renders.
    Tests that change the pool's template put the repository's back when they end."""
    for release in kind_release(tmp_path_factory.mktemp("kind"), registry, prefect_server, docker_engine):
        release.build()
        reference = release.deploy()["reference"]
        rendered = release.manifests()
        assert rendered["reference"] == reference
        yield Deployed(release, reference, rendered["manifests"])


@pytest.fixture
def cluster(tmp_path, docker_engine):
    """The stand-in cluster, with deploy/helm/rbac.yaml's namespace, service accounts and RBAC created, as
    deploy/README.md has an admin do before installing the chart."""
    from tests.kit.kubernetes.cluster import start_cluster
    from tests.kit.services import kit_labels

    version = yaml.safe_load((REPO_ROOT / "slipway.yaml").read_text())["kubernetes_version"]
    stand_in = start_cluster(docker_engine, tmp_path, version, labels=kit_labels("pod"))
    try:
        stand_in.install(REPO_ROOT / RBAC)
        yield stand_in
    finally:
        stand_in.close()


def start_worker(release: KubernetesRelease, cluster, workdir: Path):
    """The real prefect-kubernetes worker: arguments and environment from the snapshot's
    deploy/helm/values*.yaml (the chart's rendering, tests/kit/kubernetes/helm.py), the API URL of the test
    server, the stand-in's kubeconfig. Returns once the worker has registered with the server."""
    from tests.kit.kubernetes.helm import worker_from_values
    from tests.kit.kubernetes.worker import start_worker as start

    helm = worker_from_values(*(release.root / f for f in HELM_VALUES))
    return start(helm, PREFECT_BIN, release.server.api_url, cluster.kubeconfig, workdir)


def set_pool_template(api_url: str, pool: str, template: dict) -> None:
    """Replace a work pool's base job template in Prefect, as `prefect work-pool update --base-job-template`
    (or the Helm chart's baseJobTemplate init container) would, behind slipway's back."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import WorkPoolUpdate

    async def update():
        async with PrefectClient(api=api_url) as client:
            await client.update_work_pool(pool, WorkPoolUpdate(base_job_template=template))

    anyio.run(update)


def repo_template() -> dict:
    return json.loads((REPO_ROOT / TEMPLATE).read_text())
