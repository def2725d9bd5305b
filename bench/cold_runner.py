"""(h) A code-only release on a fresh runner: an engine that holds none of the release's images (not the
runtime base, not the content image), a registry that holds the previous release and slipway's build cache.
slipway side by side with `prefect deploy --all` starting from the same empty engine.

Set-up, untimed:
- the bench repository's Dockerfile.base gets `LABEL io.slipway.bench=<workdir>` right after its FROM, so
  the benchmark's base (and everything built on it) has layers no other image on this engine shares:
  removing the benchmark's images then really takes them out of the engine, and no other engineer's image
  is touched;
- slipway's first release (`build.py release --env local`) builds that base and the content image and pushes
  both to the registry's build cache (`bench-slipway/slipway-cache`), then pushes the release and registers
  10 deployments; each incumbent variant makes its first `prefect deploy --all` too.

Each run, for each tool in turn: a one-line flow edit is committed, every image of this benchmark is removed
(`empty_engine`: only ours — the bench label, tags of ours, IDs the benchmark built; never a
prune), then the release is timed as one fresh CLI process:
- slipway: `build.py release --env local --json` — what `make image deploy` runs: the content image pulled
  from the build cache (the base's layers come with it), the code layers written from the commit, the entry
  points probed, the image assembled, pushed, 10 deployments registered;
- (h) `cold_runner_release_ratio_vs_prefect`: `prefect deploy --all` whose Dockerfile builds its own runtime
  (Dockerfile.base's steps, then the same content as Dockerfile.prefect) FROM the OS base: what a prefect.yaml
  project's fresh runner does, since nothing caches its runtime layers;
- (h, same base) `cold_runner_release_ratio_vs_prefect_same_base`: `prefect deploy --all` FROM the very base
  slipway cached in the registry (its build pulls it): the incumbent given slipway's base cache for free.
The OS base's layer is shared with other images on this machine, so it stays in the engine for every side.
slipway's profile (its own step lines, with their elapsed seconds) is kept per run in the details.
"""
from __future__ import annotations

import contextlib
import io
import re

from bench.common import PYTHON, median, run_timed
from bench.project import (
    PREFECT_POOL,
    SLIPWAY_REPOSITORY,
    BenchRepo,
    generated_deployments,
    incumbent_dockerfile,
    incumbent_prefect_yaml,
)
from bench.stack import BenchStack

DEPLOYMENTS = 10
FULL = {"file": "prefect-full.yaml", "dockerfile": "Dockerfile.prefect-full", "repository": "bench-prefect-full",
        "prefix": "f"}
SAME_BASE = {"file": "prefect-cached-base.yaml", "dockerfile": "Dockerfile.prefect-cached-base",
             "repository": "bench-prefect-cached-base", "prefix": "c"}
MIRROR_REPOSITORY = f"{SLIPWAY_REPOSITORY}-mirror"
STEP_LINE = re.compile(r"^\[\s*([\d.]+)s\] (.*)$")


# --- the repository ------------------------------------------------------------------------------------------

def mark_base(repo: BenchRepo, marker: str) -> None:
    """Dockerfile.base with the benchmark's LABEL right after FROM: every layer after it is this run's own."""
    text = (repo.root / "Dockerfile.base").read_text()
    assert "\nFROM ${BASE_IMAGE}\n" in text
    repo.write("Dockerfile.base", text.replace("\nFROM ${BASE_IMAGE}\n", f"\nFROM ${{BASE_IMAGE}}\nLABEL {marker}\n", 1))


def full_dockerfile(repo: BenchRepo, os_base: str, marker: str) -> str:
    """The incumbent that builds its own runtime: Dockerfile.base's steps FROM the OS base, then the content."""
    base = (repo.root / "Dockerfile.base").read_text()
    base = re.sub(r"(?m)^ARG BASE_IMAGE=.*\n", "", base)
    base = base.replace(f"FROM ${{BASE_IMAGE}}\nLABEL {marker}\n", f"FROM {os_base}\nLABEL {marker}\n", 1)
    content = incumbent_dockerfile("unused", marker).splitlines()
    body = [line for line in content if not line.startswith(("#", "FROM ", "LABEL "))]
    return base.rstrip("\n") + "\n\n# The content, as Dockerfile.prefect has it.\n" + "\n".join(body) + "\n"


def prepare(stack: BenchStack, repo: BenchRepo, os_base: str) -> dict:
    mark_base(repo, stack.label)
    repo.write("deployments.yaml", _yaml({"deployments": generated_deployments(DEPLOYMENTS, "s")}))
    repo.write(FULL["dockerfile"], full_dockerfile(repo, os_base, stack.label))
    cached_base = f"{stack.registry_address}/{SLIPWAY_REPOSITORY}/slipway-cache:base-{_cache_key(repo, os_base)}"
    repo.write(SAME_BASE["dockerfile"], incumbent_dockerfile(cached_base, stack.label))
    for variant in (FULL, SAME_BASE):
        repo.write(variant["file"], _yaml(incumbent_prefect_yaml(
            stack.registry_address, generated_deployments(DEPLOYMENTS, variant["prefix"]), True,
            dockerfile=variant["dockerfile"], repository=variant["repository"])))
    # `mirror`: another repository of the same registry sharing `local`'s build cache, where a second clone
    # pushes the same commit (same_commit_same_digest).
    config = yaml_load(repo.root / "slipway.yaml")
    config["environments"]["mirror"] = {**config["environments"]["local"], "repository": MIRROR_REPOSITORY,
                                        "cache_repository": f"{SLIPWAY_REPOSITORY}/slipway-cache"}
    repo.write("slipway.yaml", _yaml(config))
    repo.commit("bench: cold runner (a base of our own, the incumbents' Dockerfiles, a mirror environment)")
    return {"cached_base": cached_base}


def yaml_load(path):
    import yaml

    return yaml.safe_load(path.read_text())


def _cache_key(repo: BenchRepo, os_base: str) -> str:
    """The base's key in the cache as slipway's CLI computes it: with SLIPWAY_BASE_IMAGE=<os_base>, as it runs."""
    import os

    from slipway.image.base import cache_key
    from slipway.project.config import load_project

    previous = os.environ.get("SLIPWAY_BASE_IMAGE")
    os.environ["SLIPWAY_BASE_IMAGE"] = os_base
    try:
        return cache_key(load_project(repo.root))
    finally:
        if previous is None:
            os.environ.pop("SLIPWAY_BASE_IMAGE", None)
        else:
            os.environ["SLIPWAY_BASE_IMAGE"] = previous


def _yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


# --- an empty engine, of our images only ---------------------------------------------------------------------

def empty_engine(stack: BenchStack) -> dict:
    """Remove this run's images (BenchStack.remove_images: ours only); raises when one is left (the measurement
    would not be cold)."""
    return {"removed": stack.remove_images(strict=True)}


# --- the runs ------------------------------------------------------------------------------------------------

def slipway_release(stack: BenchStack, repo: BenchRepo, env: dict) -> tuple[float, list[tuple[float, str]], dict]:
    import json

    seconds, proc = run_timed([PYTHON, "build.py", "release", "--env", "local", "--json"], repo.root, env)
    steps = [(float(m.group(1)), m.group(2)) for m in map(STEP_LINE.match, proc.stderr.splitlines()) if m]
    return seconds, steps, json.loads(proc.stdout.strip().splitlines()[-1])


# Where each phase of slipway's release starts, from its own step lines (the first line matching).
PHASES = [
    ("content image pull", lambda m: m.startswith("pulling the content image")),
    ("base pull", lambda m: m.startswith("pulling the base image")),
    ("content build", lambda m: m.startswith("building the content image")),
    ("probe + validate", lambda m: m.startswith("importing ")),
    # The engine loads the finished image while the release is validated ("built" follows "validated").
    ("load + guard + lease", lambda m: m.startswith("validated ")),
    ("push", lambda m: m.startswith("checking access to")),
    ("register", lambda m: "@sha256:" in m and " holds " in m),
]


def phases(steps: list[tuple[float, str]], total: float) -> dict:
    """slipway's release cut into phases (seconds), from its step lines' elapsed times; `start` is the CLI's
    own start-up (imports, Git, the registry lookup of HEAD) before the first phase."""
    starts = [("start", 0.0)]
    for name, matches in PHASES:
        found = next((t for t, message in steps if matches(message)), None)
        if found is not None:
            starts.append((name, found))
    starts.append(("end", total))
    return {name: round(end - begin, 2) for (name, begin), (_, end) in zip(starts, starts[1:])}


def run(stack: BenchStack, repo: BenchRepo, runs: int) -> dict:
    from slipway.image.base import ensure_os_base
    from slipway.output import Reporter
    from slipway.project.config import load_project

    os_base = ensure_os_base(stack.client, load_project(repo.root), Reporter(stream=io.StringIO()))
    return measure(stack, repo, runs, os_base)  # its images are removed after it, as every scenario's


def measure(stack: BenchStack, repo: BenchRepo, runs: int, os_base: str) -> dict:
    setup = prepare(stack, repo, os_base)
    env = {**stack.tool_env(), "SLIPWAY_BASE_IMAGE": os_base}  # the OS base this machine has: no Hub pull
    with contextlib.suppress(Exception):
        stack.create_pool(PREFECT_POOL)
    # The first release of each: slipway builds the base and fills the cache; the incumbents build theirs.
    warm = {"slipway_s": slipway_release(stack, repo, env)[0]}
    for name, variant in (("prefect_full_s", FULL), ("prefect_same_base_s", SAME_BASE)):
        warm[name] = run_timed(_prefect_argv(variant), repo.root, env)[0]
    pairs = []
    for i in range(runs):
        row: dict = {"run": i + 1}
        repo.change_a_flow(f"cold-slipway-{i}")
        row["slipway_removed_images"] = empty_engine(stack)["removed"]
        seconds, steps, result = slipway_release(stack, repo, env)
        row.update(slipway_s=seconds, slipway_built=result.get("image") is not None,
                   slipway_pulled_content=any(m.startswith("pulled the content image") for _, m in steps),
                   slipway_ran_a_build_step=any(m.startswith(("building the content image", "building base image"))
                                                for _, m in steps),
                   slipway_phases=phases(steps, seconds), slipway_steps=[f"{t:6.1f}s {m}" for t, m in steps])
        for name, variant in (("prefect_full", FULL), ("prefect_same_base", SAME_BASE)):
            repo.change_a_flow(f"cold-{name}-{i}")
            row[f"{name}_removed_images"] = empty_engine(stack)["removed"]
            row[f"{name}_s"] = run_timed(_prefect_argv(variant), repo.root, env)[0]
        row["ratio"] = row["slipway_s"] / row["prefect_full_s"]
        row["ratio_same_base"] = row["slipway_s"] / row["prefect_same_base_s"]
        pairs.append(row)
        print(f"bench: cold runner run {i + 1}: slipway {row['slipway_s']:.1f} s, prefect (own runtime) "
              f"{row['prefect_full_s']:.1f} s, prefect (cached base) {row['prefect_same_base_s']:.1f} s; "
              f"slipway phases {row['slipway_phases']}", flush=True)
    base_bytes = _compressed_size(stack, setup["cached_base"])
    same = same_commit_same_digest(stack, repo, env)
    return {
        "figures": {
            "same_commit_same_digest": same["same"],
            "cold_runner_release_ratio_vs_prefect": median([p["ratio"] for p in pairs]),
            "cold_runner_release_ratio_vs_prefect_same_base": median([p["ratio_same_base"] for p in pairs]),
            "cold_runner_release_s": median([p["slipway_s"] for p in pairs]),
        },
        "details": {"cold_runner": {"runs": pairs, "warm_up": warm, "cached_base": setup["cached_base"],
                                    "cached_base_compressed_bytes": base_bytes, "os_base": os_base},
                    "same_commit_same_digest": same},
    }


def same_commit_same_digest(stack: BenchStack, repo: BenchRepo, env: dict) -> dict:
    """HEAD released from an empty engine (`build.py release --env local`); the engine emptied again; a second
    clone of the same commit builds (`image --env mirror`: the content image from the shared build cache) and
    pushes to the mirror repository. Same digest?"""
    import json
    import shutil

    from tests.kit.repo import git

    empty_engine(stack)
    _, _, first = slipway_release(stack, repo, env)
    first_digest = first["deploy"]["reference"].rpartition("@")[2]
    empty_engine(stack)
    clone = stack.workdir / "clone-two"
    shutil.rmtree(clone, ignore_errors=True)
    git(stack.workdir, "clone", "-q", str(repo.root), str(clone))
    git(repo.root, "remote", "add", "origin", str(repo.root))  # both clones name one source (an image label)
    try:
        run_timed([PYTHON, "build.py", "image", "--env", "mirror", "--json", "--root", str(clone)], repo.root, env)
        _, proc = run_timed([PYTHON, "build.py", "push", "--env", "mirror", "--json", "--root", str(clone)],
                            repo.root, env)
        second_digest = json.loads(proc.stdout.strip().splitlines()[-1])["digest"]
    finally:
        git(repo.root, "remote", "remove", "origin")
    return {"same": first_digest == second_digest, "first": first_digest, "second": second_digest,
            "commit": repo.sha()}


def _prefect_argv(variant: dict) -> list[str]:
    """`prefect deploy --all` as bench/tools.py runs it, with the variant's prefect.yaml."""
    from bench.stack import PREFECT_BIN

    return [str(PREFECT_BIN), "--no-prompt", "deploy", "--all", "--prefect-file", variant["file"]]


def _compressed_size(stack: BenchStack, reference: str) -> int | None:
    repository, _, tag = reference.partition("/")[2].rpartition(":")
    with contextlib.suppress(Exception):
        manifest = stack.manifest(repository, tag)
        return sum(layer["size"] for layer in manifest["layers"])
    return None
