"""A probe run by tests/kit/test_cleanup.py as a child pytest (its name keeps it out of a normal run): it
starts a kit registry and a kit network, writes what it started to $KIT_PROBE_REPORT, and then either ends
normally (the session's teardown removes both) or, with KIT_PROBE_HANG=1, waits to be killed with SIGKILL
halfway (nothing removes them: the next run's start must)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import docker
import pytest

from tests.kit import services


@pytest.fixture(scope="session", autouse=True)
def present_before_start():
    """Which of $KIT_PROBE_LEFTOVERS (container and network names) exist before this session's start removes
    leftovers: an autouse session fixture runs before the `docker_engine` fixture that does it."""
    engine = docker.from_env()
    present = []
    for name in filter(None, os.environ.get("KIT_PROBE_LEFTOVERS", "").split(",")):
        if engine.containers.list(all=True, filters={"name": f"^{name}$"}) or engine.networks.list(names=[name]):
            present.append(name)
    return present


def test_probe(docker_engine, start_registry, present_before_start):
    report = {"pid": os.getpid(), "owner": services.owner(), "present_before_start": present_before_start,
              # prepare() already ran at the session's start (the docker_engine fixture): this is its record.
              "removed_at_start": services.prepare(docker_engine)["removed"]}
    registry = start_registry("kitprobe")
    network = services.create_network(docker_engine, "kitprobe")
    report.update(container=registry.container.get_wrapped_container().name, network=network.name)
    Path(os.environ["KIT_PROBE_REPORT"]).write_text(json.dumps(report))
    if os.environ.get("KIT_PROBE_HANG") == "1":
        time.sleep(600)  # the parent kills this process here
