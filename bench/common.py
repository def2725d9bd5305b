"""Helpers shared by the benchmarks: timing, medians and tables. Repositories and services come from the test
kit (tests/kit/), which the benchmarks share with the tests."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

PYTHON = sys.executable  # the venv's interpreter: both tools run from it


@contextmanager
def stopwatch():
    box = {}
    start = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class CommandFailed(RuntimeError):
    pass


def run_timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run one CLI invocation as a user would (a fresh process: imports included) and time it."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + "\n" + proc.stderr).strip().splitlines()[-25:])
        raise CommandFailed(f"`{' '.join(str(a) for a in argv)}` exited {proc.returncode}:\n{tail}")
    return seconds, proc


def table(title: str, header: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in header]] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [title, line]
    for i, r in enumerate(cells):
        out.append("|".join(f" {c:<{widths[j]}} " for j, c in enumerate(r)))
        if i == 0:
            out.append(line)
    out.append(line)
    return "\n".join(out)
