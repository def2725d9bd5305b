"""`python build.py up` / `down`: the stack's containers are created, reused when healthy, restarted when
stopped, and keep their data on named volumes. The tests run the stack's own code under `push-` names on
random loopback ports (5000 and 4200 belong to the real stack)."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import uuid

import docker
import pytest
import requests

from slipway.project.config import load_project
from slipway.stack import PREFECT, REGISTRY, ensure_prefect, ensure_registry, stack_down
from tests.kit.repo import REPO_ROOT
from tests.push.conftest import quiet_reporter

pytestmark = pytest.mark.docker


@pytest.fixture
def service_names(docker_engine):
    """Unique `push-` container and volume names; both removed afterwards."""
    suffix = uuid.uuid4().hex[:8]
    created = []

    def names(service):
        renamed = dataclasses.replace(service, container=f"push-stack-{service.role}-{suffix}",
                                      volume=f"push-stack-{service.role}-data-{suffix}", host_port=None)
        created.append(renamed)
        return renamed

    yield names
    for service in created:
        with contextlib.suppress(docker.errors.NotFound):
            docker_engine.containers.get(service.container).remove(force=True)
        with contextlib.suppress(docker.errors.NotFound):
            docker_engine.volumes.get(service.volume).remove(force=True)


def test_registry_is_reused_restarted_and_keeps_its_data(docker_engine, service_names):
    service = service_names(REGISTRY)
    project = load_project(REPO_ROOT)

    first = ensure_registry(docker_engine, project, quiet_reporter(), service)
    assert first["status"] == "started"
    blob = b"kept across restarts " + uuid.uuid4().bytes
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    base = f"http://127.0.0.1:{first['port']}/v2/push-stack"
    start = requests.post(f"{base}/blobs/uploads/", timeout=10)
    assert start.status_code == 202
    location = start.headers["Location"]
    location = location if location.startswith("http") else f"http://127.0.0.1:{first['port']}{location}"
    assert requests.put(location, params={"digest": digest}, data=blob, timeout=10).status_code == 201

    again = ensure_registry(docker_engine, project, quiet_reporter(), service)
    assert again == {**first, "status": "reused"}

    assert stack_down(docker_engine, quiet_reporter(), (service,)) == {"registry": "stopped"}
    assert docker_engine.containers.get(service.container).status == "exited"
    restarted = ensure_registry(docker_engine, project, quiet_reporter(), service)
    assert restarted["status"] == "restarted"
    kept = requests.get(f"http://127.0.0.1:{restarted['port']}/v2/push-stack/blobs/{digest}", timeout=10)
    assert kept.status_code == 200 and kept.content == blob

    bindings = docker_engine.containers.get(service.container).attrs["NetworkSettings"]["Ports"]["5000/tcp"]
    assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}  # never reachable from the network


def test_prefect_server_starts_healthy_and_keeps_its_database(docker_engine, service_names):
    service = service_names(PREFECT)
    project = load_project(REPO_ROOT)

    first = ensure_prefect(docker_engine, project, quiet_reporter(), service)
    assert first["status"] == "started"
    api = first["api_url"]
    assert requests.get(f"{api}/health", timeout=10).json() is True
    flow = requests.post(f"{api}/flows/", json={"name": f"push-stack-{uuid.uuid4().hex[:6]}"}, timeout=10)
    assert flow.status_code in (200, 201)

    assert ensure_prefect(docker_engine, project, quiet_reporter(), service)["status"] == "reused"
    stack_down(docker_engine, quiet_reporter(), (service,))
    restarted = ensure_prefect(docker_engine, project, quiet_reporter(), service)
    assert restarted["status"] == "restarted"
    kept = requests.get(f"{restarted['api_url']}/flows/{flow.json()['id']}", timeout=10)
    assert kept.status_code == 200 and kept.json()["name"] == flow.json()["name"]
