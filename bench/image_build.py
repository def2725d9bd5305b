"""Image build: a cold build (no layer cache) and the rebuild after a one-line flow change.

Only the code layers should rebuild after a flow change: the table shows seconds and how many Dockerfile
steps ran versus came from the cache.
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

import yaml

from bench.common import median, stopwatch, table
from slipway import pipeline
from slipway.image.engine import docker_client
from slipway.output import Reporter
from slipway.project.config import load_project
from slipway.project.git import read_git_facts
from tests.kit.repo import change_a_flow, git, snapshot_repo


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
        pipeline.build(pipeline.Workspace(project, counter))
    return t["s"], counter


def cold_build(client, repo: Path) -> tuple[float, StepCounter]:
    """The release image with no layer cache (the base image is reused: it is built once per lock)."""
    counter = StepCounter()
    with stopwatch() as t:
        pipeline.build(pipeline.Workspace(load_project(repo), counter), nocache=True)
    return t["s"], counter


def cold_builds(client, repo: Path, runs: int, track=lambda ref: ref) -> tuple[list[float], list[list]]:
    """(a) `runs` cold builds of the repository's release image; `track` is told each image built."""
    project = load_project(repo)
    build(client, repo)  # the base image and anything else the first build needs, once
    seconds, rows = [], []
    for i in range(runs):
        took, counter = cold_build(client, repo)
        track(f"{project.config.image.name}:{read_git_facts(repo).sha}")
        seconds.append(took)
        rows.append(["cold image build (no layer cache)", i + 1, took, counter.steps, counter.cached])
    return seconds, rows


def remove_images(client, built: set[str], label: str) -> None:
    """Our tags, then every untagged image of ours (built IDs, and intermediates carrying our label)."""
    ids = set(built) | {i.id for i in client.images.list(all=True, filters={"label": label})}
    for image_id in ids:
        with contextlib.suppress(Exception):
            for tag in client.images.get(image_id).tags:
                if tag.startswith("bench-image-build:"):
                    client.images.remove(tag, noprune=True)
    for _ in range(5):  # parents go once their children are gone
        for image_id in list(ids):
            with contextlib.suppress(Exception):
                if not client.images.get(image_id).tags:
                    client.images.remove(image_id)
            with contextlib.suppress(Exception):
                client.images.get(image_id)
                continue
            ids.discard(image_id)


def run(runs: int = 3) -> dict:
    """Standalone: cold builds and rebuilds after a flow change, in a scratch copy; its images are removed."""
    client = docker_client()
    built: set[str] = set()

    def track(ref: str) -> str:
        with contextlib.suppress(Exception):
            built.add(client.images.get(ref).id)
        return ref

    warm = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        repo = snapshot_repo(Path(tmp) / "repo")
        config = yaml.safe_load((repo / "slipway.yaml").read_text())
        config["image"]["name"] = "bench-image-build"  # the benchmark's own local tags
        (repo / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        git(repo, "commit", "-q", "-am", "bench: own image name")
        try:
            cold, rows = cold_builds(client, repo, runs, track)
            for i in range(runs):
                change_a_flow(repo, f"image-{i}")
                seconds, counter = build(client, repo)
                track(f"bench-image-build:{read_git_facts(repo).sha}")
                warm.append(seconds)
                rows.append(["rebuild after a one-line flow change", i + 1, seconds, counter.steps, counter.cached])
        finally:
            remove_images(client, built, f"org.opencontainers.image.source={repo}")
    print(table("Image build", ["build", "run", "seconds", "steps", "from cache"], rows))
    return {"cold_image_build_s": median(cold), "code_change_rebuild_s": median(warm)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    print(run(parser.parse_args().runs))
