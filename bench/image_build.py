"""Image build: a cold build (no layer cache) and the rebuild after a one-line flow change.

Only the code layers should rebuild after a flow change: the table shows seconds and how many Dockerfile
steps ran versus came from the cache.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import change_a_flow, median, snapshot_repo, stopwatch, table
from slipway.config import load_project
from slipway.engine import docker_client
from slipway.git import read_git_facts
from slipway.image import build_image
from slipway.output import Reporter


class StepCounter(Reporter):
    """Counts the Dockerfile steps that ran versus came from the cache, from the build's own output."""

    def __init__(self):
        super().__init__(quiet=True)
        self.interactive = True  # receive detail lines
        self.steps = self.cached = 0

    def detail(self, message: str) -> None:
        if message.startswith("Step "):
            self.steps += 1
        elif "Using cache" in message:
            self.cached += 1


def build(client, repo: Path) -> tuple[float, StepCounter]:
    project = load_project(repo)
    counter = StepCounter()
    with stopwatch() as t:
        build_image(client, project, read_git_facts(repo), counter)
    return t["s"], counter


def cold_build(client, repo: Path) -> tuple[float, StepCounter]:
    """The release image with no layer cache (the base image is reused: it is built once per lock)."""
    counter = StepCounter()
    with stopwatch() as t:
        build_image(client, load_project(repo), read_git_facts(repo), counter, nocache=True)
    return t["s"], counter


def run(runs: int = 3) -> dict:
    client = docker_client()
    rows, cold, warm = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        repo = snapshot_repo(Path(tmp) / "repo")
        build(client, repo)  # prime the cache once
        for i in range(runs):
            seconds, counter = cold_build(client, repo)
            cold.append(seconds)
            rows.append(["cold image build (no layer cache)", i + 1, seconds, counter.steps, counter.cached])
        for i in range(runs):
            change_a_flow(repo, f"image-{i}")
            seconds, counter = build(client, repo)
            warm.append(seconds)
            rows.append(["rebuild after a one-line flow change", i + 1, seconds, counter.steps, counter.cached])
    print(table("Image build", ["build", "run", "seconds", "steps", "from cache"], rows))
    return {"cold_image_build_s": median(cold), "code_change_rebuild_s": median(warm)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    print(run(parser.parse_args().runs))
