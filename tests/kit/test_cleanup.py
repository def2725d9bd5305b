"""The kit's clean-up: Ryuk where its image can be had, the kit's labels where it cannot.

- `configure_reaper` keeps Ryuk on when its image is present or can be pulled (GitHub's hosted runners pull
  testcontainers/ryuk from Docker Hub), turns it off when the pull fails (an air-gapped machine like this
  one), and respects an explicit TESTCONTAINERS_RYUK_DISABLED: stub engines, no Docker.
- A pytest run killed with SIGKILL halfway leaves its labelled container and network behind; the next run
  removes them when its session starts and passes, and its own are gone when it ends; a container labelled by
  another live process is never touched. Real child pytest runs against the real engine.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests
from docker.errors import APIError, ImageNotFound, NotFound
from testcontainers.core.config import testcontainers_config

from tests.kit import services
from tests.kit.repo import REPO_ROOT

PROBE = "tests/kit/probe_killed_run.py"
PROBE_READY_SECONDS = 240  # a child pytest imports slipway and testcontainers and starts a registry
PROBE_RUN_SECONDS = 300


# --- Ryuk on or off -------------------------------------------------------------------------------------

class StubImages:
    def __init__(self, present: bool, pull_error: Exception | None = None):
        self.present, self.pull_error, self.pulled = present, pull_error, []

    def get(self, name):
        if not self.present:
            raise ImageNotFound(f"No such image: {name}")
        return object()

    def pull(self, name):
        self.pulled.append(name)
        if self.pull_error is not None:
            raise self.pull_error
        return object()


class StubEngine:
    def __init__(self, images: StubImages):
        self.images = images


class UntouchableEngine:
    @property
    def images(self):
        raise AssertionError("an explicit TESTCONTAINERS_RYUK_DISABLED must not consult the engine")


@pytest.fixture
def reaper_config(monkeypatch):
    """testcontainers' configuration as a fresh process sees it (restored afterwards)."""
    monkeypatch.delenv("TESTCONTAINERS_RYUK_DISABLED", raising=False)
    monkeypatch.setattr(testcontainers_config, "_ryuk_disabled", None)
    monkeypatch.setattr(testcontainers_config, "tc_properties", {})
    return monkeypatch


def pulls_with(monkeypatch, images: StubImages) -> None:
    """The kit pulls through its own client (with a time-out): make that client the stub too."""
    monkeypatch.setattr(services.docker, "from_env", lambda **_: StubEngine(images))


def test_ryuk_stays_on_when_its_image_is_present(reaper_config):
    images = StubImages(present=True)
    pulls_with(reaper_config, images)
    assert services.configure_reaper(StubEngine(images)) is True
    assert testcontainers_config.ryuk_disabled is False and images.pulled == []


def test_ryuk_stays_on_when_its_image_can_be_pulled(reaper_config):
    images = StubImages(present=False)
    pulls_with(reaper_config, images)
    assert services.configure_reaper(StubEngine(images)) is True
    assert testcontainers_config.ryuk_disabled is False
    assert images.pulled == [testcontainers_config.ryuk_image]


@pytest.mark.parametrize("error", [
    APIError("Get https://registry-1.docker.io/v2/: dial tcp: lookup registry-1.docker.io: no such host"),
    requests.exceptions.ReadTimeout("read timed out"),
], ids=["no-registry", "time-out"])
def test_ryuk_is_turned_off_when_its_image_cannot_be_had(reaper_config, error):
    images = StubImages(present=False, pull_error=error)
    pulls_with(reaper_config, images)
    assert services.configure_reaper(StubEngine(images)) is False
    assert testcontainers_config.ryuk_disabled is True
    assert images.pulled == [testcontainers_config.ryuk_image]


@pytest.mark.parametrize("value, on", [("true", False), ("false", True)])
def test_an_explicit_choice_is_respected(reaper_config, value, on):
    reaper_config.setenv("TESTCONTAINERS_RYUK_DISABLED", value)
    assert services.configure_reaper(UntouchableEngine()) is on


# --- a killed run, the next run, a live neighbour --------------------------------------------------------

def start_probe(report, hang: bool, leftovers: tuple[str, ...] = ()) -> subprocess.Popen:
    env = {**os.environ, "KIT_PROBE_REPORT": str(report), "KIT_PROBE_HANG": "1" if hang else "0",
           "KIT_PROBE_LEFTOVERS": ",".join(leftovers),
           # As on an air-gapped machine: only the kit's labels clean up (on GitHub, Ryuk would reap the killed
           # run's containers by itself, ten seconds after its death, and race this test).
           "TESTCONTAINERS_RYUK_DISABLED": "true"}
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", PROBE],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_report(probe: subprocess.Popen, report) -> dict:
    deadline = time.monotonic() + PROBE_READY_SECONDS
    while time.monotonic() < deadline:
        if report.exists() and report.read_text():
            return json.loads(report.read_text())
        if probe.poll() is not None:
            pytest.fail(f"the probe ended early ({probe.returncode}): {probe.stdout.read().decode()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"the probe wrote no report within {PROBE_READY_SECONDS} s")


def is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()[0] == "Z"


def labelled(engine, owner: str) -> tuple[list[str], list[str]]:
    """Names of the containers and networks labelled by `owner` (host:pid)."""
    selector = {"label": f"{services.KIT_LABEL}={owner}"}
    return ([c.name for c in engine.containers.list(all=True, filters=selector)],
            [n.name for n in engine.networks.list(filters=selector)])


@pytest.fixture
def live_neighbour(docker_engine):
    """A container labelled by another process that is alive (a `sleep`): the kit must never remove it.
    Yields (process, container)."""
    from slipway.stack import registry_image
    from tests.kit.services import _project, _quiet

    process = subprocess.Popen(["sleep", "600"])
    owner = services.owner().rpartition(":")[0] + f":{process.pid}"
    container = docker_engine.containers.create(
        registry_image(docker_engine, _project(), _quiet()), name=f"kit-neighbour-{uuid.uuid4().hex[:8]}",
        labels={services.KIT_LABEL: owner, services.ROLE_LABEL: "neighbour"})
    yield process, container
    process.kill()
    process.wait()
    with contextlib.suppress(NotFound):
        container.remove(force=True)


def killed_then_next(engine, tmp_path, children: list[subprocess.Popen]) -> tuple[dict, dict]:
    """A probe run killed halfway, then a normal one: their reports."""
    tmp_path.mkdir()
    killed = start_probe(tmp_path / "killed.json", hang=True)
    children.append(killed)
    first = wait_for_report(killed, tmp_path / "killed.json")
    assert first["pid"] == killed.pid
    assert labelled(engine, first["owner"]) == ([first["container"]], [first["network"]])

    os.kill(killed.pid, signal.SIGKILL)  # halfway: the session's teardown never runs
    # Until this process reaps it, the killed run is a zombie, whose pid still answers kill(pid, 0): the other
    # kit sessions that may start on a shared machine meanwhile take its containers for a live run's.
    deadline = time.monotonic() + 30
    while not is_zombie(killed.pid):
        assert time.monotonic() < deadline, "the probe did not die from SIGKILL"
        time.sleep(0.1)
    # Left behind, still running: nothing else cleans up here.
    assert engine.containers.get(first["container"]).status == "running"
    assert labelled(engine, first["owner"]) == ([first["container"]], [first["network"]])
    assert killed.wait(timeout=5) == -signal.SIGKILL

    next_run = start_probe(tmp_path / "next.json", hang=False, leftovers=(first["container"], first["network"]))
    children.append(next_run)
    output = next_run.communicate(timeout=PROBE_RUN_SECONDS)[0].decode(errors="replace")
    assert next_run.returncode == 0, output[-3000:]
    return first, json.loads((tmp_path / "next.json").read_text())


def test_a_killed_run_is_cleaned_up_by_the_next_one(docker_engine, tmp_path, live_neighbour):
    neighbour_process, neighbour = live_neighbour
    children: list[subprocess.Popen] = []
    try:
        for attempt in range(3):
            first, second = killed_then_next(docker_engine, tmp_path / str(attempt), children)
            leftovers = {first["container"], first["network"]}
            if set(second["present_before_start"]) == leftovers:
                break
            # Another kit session started on this machine in the few seconds between the reaping and the next
            # run's start, and removed the leftovers first (as it should): nothing was left to test. Again.
        else:
            pytest.fail("three times running, another test session removed the leftovers first")
        # The next run removed the killed run's leftovers when its session started, and passed.
        assert leftovers <= set(second["removed_at_start"])
        assert labelled(docker_engine, first["owner"]) == ([], [])
        # A normal run leaves nothing of its own behind (the session's teardown).
        assert second["container"] and labelled(docker_engine, second["owner"]) == ([], [])
        # The live neighbour's container was left alone ...
        assert neighbour_process.poll() is None
        assert neighbour.name not in second["removed_at_start"]
        neighbour.reload()
        # ... until its process is gone: then it is a leftover like any other.
        neighbour_process.kill()
        neighbour_process.wait()
        assert neighbour.name in services.remove_leftovers(docker_engine)
        with pytest.raises(NotFound):
            docker_engine.containers.get(neighbour.name)
    finally:
        owners = {f"{services.owner().rpartition(':')[0]}:{child.pid}" for child in children}
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        # Whatever assertion failed above, leave nothing of the children behind.
        services._remove(docker_engine, lambda labels: labels.get(services.KIT_LABEL) in owners)
