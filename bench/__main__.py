"""`python -m bench [--quick] [--only X]` (`make bench [QUICK=1]`): slipway side by side with `prefect deploy`.

One run starts its own registry container and Prefect server (random ports), snapshots the working tree into
a temporary repository pointed at them, measures (a)-(h) on a Prefect server on SQLite and (i) on its own
PostgreSQL-backed stack, and removes everything it created. It prints a table (figure, value, target,
met/missed) and writes bench/results/latest.json. --quick: one run of each figure instead of three (same keys,
same counts). --only a|b|d|e|h|i (repeatable): just those scenarios; the other figures already in the results
file are kept, and its `kept_from` names the run each came from. Nothing here asserts a time: these are
figures, not tests.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

from bench import cold_runner, image_build, register, release, rollback, scale
from bench.common import median, table
from bench.project import BenchRepo
from bench.stack import bench_stack
from tests.kit.repo import REPO_ROOT

RESULTS = Path(__file__).resolve().parent / "results"

# key -> (comparison, target, what each side does). Targets for this 2-core machine (issues 8, 12, 17).
FIGURES = {
    "cold_image_build_s": (None, None, "(a) s: build.py image's build, no layer cache (base image reused)"),
    "code_only_ratio_vs_prefect": ("<=", 0.25, "(b) one-line flow edit, 10 deployments: slipway (`make image "
                                   "deploy ENV=local` as typed: build, probe, validate, push, register) s / "
                                   "prefect deploy --all (prefect-docker build + push steps) s"),
    "noop_redeploy_s": ("<", 1.5, "(c) s: build.py deploy again, nothing changed (10 deployments)"),
    "noop_redeploy_writes": ("==", 0, "(c) deployment writes of that no-op (max of: `updated` moved via the "
                             "API, successful writes in the server's access log)"),
    "register_100_ratio_vs_prefect": ("<=", 0.2, "(d) 100 new deployments: build.py deploy (image already "
                                      "pushed; validate + create) s / prefect deploy --all without "
                                      "build/push (load flows + create) s"),
    "rollback_20_s": ("<", 5.0, "(e) s: build.py rollback --to <release A> of 20 deployments (B live); no "
                      "layer pulled (checked in the registry's access log)"),
    "push_bytes_ratio": ("<=", 1.5, "(f) bytes uploaded for a code-only release (registry access log + "
                         "blob sizes, manifests included) / compressed size of the layers new in its manifest"),
    "push_layer_bytes_ratio": (None, None, "(f) the same, layers only: layer bytes uploaded / compressed size of "
                               "the new layers (1.00 = nothing unchanged was re-sent; (f) adds the image config "
                               "blob and one manifest per tag)"),
    "push_bytes_with_large_data_ratio": ("<=", 1.05, "(f) bytes uploaded for the same flows-only release with "
                                         "64 MB of random bytes in data/ / with the example's data/ (data/'s "
                                         "unchanged layer is not sent again)"),
    "image_size_ratio": ("<=", 1.3, "(g) docker image inspect Size / du -sb /opt/venv in the image"),
    "cold_runner_release_ratio_vs_prefect": ("<=", 0.2, "(h) code-only release from an empty engine (registry "
                                             "holding the previous release and slipway's build cache), 10 "
                                             "deployments: slipway (build.py release: content image pulled from "
                                             "the cache, code layers, probe, push, register) s / prefect deploy "
                                             "--all building its own runtime and content from the OS base s"),
    "cold_runner_release_ratio_vs_prefect_same_base": (None, None, "(h) the same, prefect deploy --all FROM the "
                                                       "base slipway cached in the registry (its build pulls "
                                                       "it, then builds the content)"),
    "cold_runner_release_s": (None, None, "(h) s: slipway's release from the empty engine"),
    "same_commit_same_digest": ("==", True, "(h) HEAD released from an empty engine, the engine emptied, a "
                                "second clone of that commit built (content image from the build cache) and "
                                "pushed to another repository: the same image digest"),
    **scale.FIGURES,  # (i) 1,000 deployments on a PostgreSQL-backed server (issue 18)
}
SCENARIOS = ("a", "b", "d", "e", "h", "i")


def measured_commit() -> str:
    """HEAD of the working tree the bench snapshots, `-dirty` when it had uncommitted changes."""
    run = lambda *args: subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    return run("rev-parse", "HEAD") + ("-dirty" if run("status", "--porcelain", "--untracked-files=no") else "")


def verdict(key: str, value) -> str:
    op, target, _ = FIGURES[key]
    if value is None:
        return "error"
    if op is None:
        return "-"
    ok = {"<=": value <= target, "<": value < target, "==": value == target}[op]
    return "met" if ok else "missed"


def fmt(value) -> str:
    if value is None:
        return "error"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def scenario(name: str, errors: dict, func, *args, **kwargs) -> dict:
    """Run one scenario; a failure is reported (and the others still run), never hidden."""
    started = time.monotonic()
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    try:
        out = func(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported in the table and the JSON
        errors[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        print(f"bench: {name} failed: {errors[name]}", file=sys.stderr, flush=True)
        return {"figures": {}, "details": {}}
    print(f"bench: {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per figure (a few minutes)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--only", action="append", choices=SCENARIOS, metavar="X",
                        help=f"run only scenario X ({', '.join(SCENARIOS)}; repeatable); the output file keeps "
                             "the other figures it holds")
    args = parser.parse_args(argv)
    chosen = set(args.only or SCENARIOS)
    runs = args.runs or (1 if args.quick else 3)

    from slipway.image.base import ensure_base
    from slipway.image.engine import docker_client
    from slipway.output import Reporter
    from slipway.project.config import load_project

    client = docker_client()
    figures: dict = {}
    details: dict = {}
    errors: dict = {}
    started = time.monotonic()
    base = ensure_base(client, load_project(REPO_ROOT), Reporter(stream=io.StringIO()))
    quick_counts, extrapolated = {}, {}
    with bench_stack(client) if chosen - {"i"} else contextlib.nullcontext() as stack:
        repo = stack and BenchRepo.create(stack.workdir / "repo", stack.registry_address, stack.api_url, base,
                                          stack.label)

        def cold() -> dict:
            seconds, rows = image_build.cold_builds(client, repo.root, runs, stack.track)
            return {"figures": {"cold_image_build_s": median(seconds)},
                    "details": {"cold_image_build": [{"run": r[1], "seconds": r[2], "steps": r[3],
                                                      "from_cache": r[4]} for r in rows]}}

        for key, name, func, extra in (("a", "(a) cold image build", cold, {}),
                                       ("b", "(b)(c)(f)(g) code-only release", release.run, {}),
                                       ("d", "(d) register 100", register.run, {"count": 100}),
                                       ("e", "(e) rollback 20", rollback.run, {"count": 20}),
                                       ("h", "(h) cold runner release", cold_runner.run, {})):
            if key not in chosen:
                continue
            out = scenario(name, errors, func, *(() if func is cold else (stack, repo, runs)), **extra)
            # What it made goes before the next begins (ours only): (h) needs an engine without this run's images.
            stack.remove_images()
            figures.update(out["figures"])
            details.update(out["details"])
    if "i" in chosen:
        with bench_stack(client, database="postgres") as pg:  # (i): its own server, on PostgreSQL
            pg_repo = BenchRepo.create(pg.workdir / "repo", pg.registry_address, pg.api_url, base, pg.label)
            out = scenario("(i) 1,000 deployments on PostgreSQL", errors, scale.run, pg, pg_repo, runs,
                           quick=args.quick)
            figures.update(out["figures"])
            details.update(out["details"])
            quick_counts.update(out.get("quick_counts", {}))
            extrapolated.update(out.get("extrapolated", {}))

    # The earlier runs whose figures this file keeps: the scenarios still theirs, how many runs, which commit,
    # when (the README's table quotes each figure's run).
    kept_from: list = []
    if args.only and args.output.exists():  # the figures of the scenarios not run now stay as they were
        previous = json.loads(args.output.read_text())
        earlier = [{key: previous.get(key) for key in ("scenarios", "runs", "quick", "commit", "finished")}]
        for run in earlier + (previous.get("kept_from") or []):
            still = sorted(set(run.get("scenarios") or []) - chosen)
            if still:
                kept_from.append({**run, "scenarios": still})
        figures = {**{k: previous.get(k) for k in FIGURES if previous.get(k) is not None}, **figures}
        details = {**(previous.get("details") or {}), **details}
        if "i" not in chosen:
            quick_counts, extrapolated = previous.get("quick_counts") or {}, previous.get("extrapolated") or {}
    rows = []
    for key, (op, target, what) in FIGURES.items():
        value = figures.get(key)
        rows.append([key, fmt(value), f"{op} {target}" if op else "-", verdict(key, value), what])
    mode = f"quick: {runs} run per figure" if args.quick else f"median of {runs} runs per figure"
    title = (f"slipway vs prefect deploy ({mode}; ratios pair by pair; {os.cpu_count()} cores; "
             f"same repo snapshot, registry and Prefect server)")
    print(table(title, ["figure", "value", "target", "status", "what each side does"], rows))
    for line in scale.profile_lines(details):
        print(line)
    for name, message in errors.items():
        print(f"error in {name}: {message}")

    result = {
        **{key: figures.get(key) for key in FIGURES},
        "quick": args.quick,
        "quick_counts": quick_counts,  # figures --quick measured at a smaller count than the full run
        "extrapolated": extrapolated,  # figures computed from an extrapolation, and how
        "runs": runs,
        "scenarios": sorted(chosen),
        "kept_from": kept_from,
        "status": {key: verdict(key, figures.get(key)) for key in FIGURES},
        "targets": {key: {"op": op, "value": target} for key, (op, target, _) in FIGURES.items() if op},
        "details": details,
        "errors": errors,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": measured_commit(),  # the README's table quotes this file: which code it measured
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
