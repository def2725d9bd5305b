"""The two tools as a user runs them: one fresh CLI process per command, timed from start to exit."""
from __future__ import annotations

import json
import shutil
import subprocess

from bench.common import PYTHON, run_timed
from bench.project import BenchRepo
from bench.stack import PREFECT_BIN, BenchStack


def slipway(stack: BenchStack, repo: BenchRepo, *args: str) -> tuple[float, dict]:
    """`python build.py <args> --json` in the repository (its own copy of slipway): seconds, parsed output."""
    seconds, proc = run_timed([PYTHON, "build.py", *args, "--json"], repo.root, stack.tool_env())
    return seconds, json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else {}


def slipway_make(stack: BenchStack, repo: BenchRepo, *goals: str, env_name: str = "local") -> tuple[float, dict]:
    """`make <goals> ENV=<env>` in the repository, as a release engineer types it (`make image deploy` is one
    `build.py release` process): seconds, and the verbs' JSON results (SLIPWAY_RESULTS_DIR) by verb name, with
    slipway's step lines under "steps"."""
    results = stack.workdir / "results"
    shutil.rmtree(results, ignore_errors=True)
    env = {**stack.tool_env(), "SLIPWAY_RESULTS_DIR": str(results)}
    seconds, proc = run_timed(["make", "--no-print-directory", *goals, f"ENV={env_name}"], repo.root, env)
    out = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}
    # slipway's own step lines (each prefixed with its seconds): what the results file keeps to explain a run.
    out["steps"] = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    return seconds, out


def prefect_deploy(stack: BenchStack, repo: BenchRepo, prefect_file: str = "prefect.yaml"
                   ) -> tuple[float, subprocess.CompletedProcess]:
    """`prefect --no-prompt deploy --all` against the bench server (PREFECT_API_URL in the environment)."""
    return run_timed([str(PREFECT_BIN), "--no-prompt", "deploy", "--all", "--prefect-file", prefect_file],
                     repo.root, stack.tool_env())
