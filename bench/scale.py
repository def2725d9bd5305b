"""(i) A thousand deployments on a PostgreSQL-backed Prefect server, side by side with `prefect deploy --all` on
the same server in the same run (its own stack: bench_stack(database="postgres")).

- register 100: (d) on PostgreSQL — 100 new deployments, `build.py deploy` (image pushed before, untimed) /
  `prefect deploy --all` without build or push steps (bench/register.py, run on this stack).
- register 1000: the first registration of 1,000 deployments by `build.py deploy` (the three example flows
  cycled, every third deployment with a cron schedule, as in every scenario); and `prefect deploy --all` of
  the same 1,000 once (the full run), or its 100's median times ten (--quick: said in `extrapolated`).
- noop 1000: `build.py deploy` again, nothing changed: seconds, and deployment writes seen by the server
  (access log) and by the API (`updated` moved), which must be 0.
- plan 1000: `build.py plan`, nothing changed.
- rollback 1000: release B (a one-line flow change) over the 1,000, then `build.py rollback --to <A>`: seconds;
  checked from the outside as in (e): all 1,000 pin A's digest, the registry served no layer but A's release
  layer, and the Docker engine made no request (no pull).
- peak RSS: every slipway process above at 1,000 deployments is one child of this process whose peak resident
  set size is read from its own rusage (os.wait4): the figure is the largest, the details hold each.

Every slipway command runs as a user runs it: a fresh `python build.py ... --json` process, imports included.
The project's slipway.yaml leaves `write_concurrency` at its default, `auto`: 8 writers on PostgreSQL.
Counts: 1,000 (COUNT). --quick runs each once with the same counts, except those in QUICK_COUNTS (recorded in
the results as `quick_counts`). `python -m bench --only i` runs this scenario alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time

from bench.common import PYTHON, CommandFailed, median
from bench.project import PREFECT_POOL, PREFECT_REPOSITORY, SLIPWAY_POOL, SLIPWAY_REPOSITORY, BenchRepo
from bench.register import run as register_run
from bench.stack import BenchStack, changed
from bench.tools import prefect_deploy, slipway
from slipway.deploy.unchanged import TOLD_REASON

COUNT = 1000
QUICK_COUNTS: dict[str, int] = {}  # figure -> the count --quick uses instead of COUNT (none: same counts)

FIGURES = {
    "register_100_pg_ratio_vs_prefect": ("<=", 0.1, "(i) 100 new deployments on the PostgreSQL-backed server: "
                                         "build.py deploy s / prefect deploy --all (no build/push) s"),
    "register_1000_pg_s": (None, None, "(i) s: build.py deploy, first registration of 1,000 deployments "
                           "(PostgreSQL-backed server; image pushed before)"),
    "register_1000_pg_ratio_vs_prefect": (None, None, "(i) that / prefect deploy --all of the same 1,000 "
                                          "(measured once; --quick: 10 x its 100, see `extrapolated`)"),
    "noop_1000_s": ("<", 3.0, "(i) s: build.py deploy again, nothing changed, 1,000 deployments"),
    "noop_1000_writes": ("==", 0, "(i) deployment writes of that no-op (access log and `updated`, the larger)"),
    "plan_1000_s": ("<", 3.0, "(i) s: build.py plan, nothing changed, 1,000 deployments"),
    "rollback_1000_s": ("<", 15.0, "(i) s: build.py rollback --to <release A> of 1,000 deployments (B live)"),
    "rollback_1000_layers_pulled": ("==", 0, "(i) layers fetched by that rollback besides A's release layer, "
                                    "plus requests from the Docker engine (registry access log)"),
    "peak_rss_1000_mb": ("<", 300, "(i) MB: the largest peak RSS of the slipway processes at 1,000 "
                         "(deploy, no-op, plan, rollback)"),
}


def slipway_measured(stack: BenchStack, repo: BenchRepo, *args: str) -> tuple[float, dict, float, str]:
    """`python build.py <args> --json` as tools.slipway runs it, plus that process's peak RSS in MB and its
    stderr (the step lines)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen([PYTHON, "build.py", *args, "--json"], cwd=repo.root, env=stack.tool_env(),
                                stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's high-water mark
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join((stdout + "\n" + stderr).strip().splitlines()[-25:])
        raise CommandFailed(f"`build.py {' '.join(args)}` exited {proc.returncode}:\n{tail}")
    result = json.loads(stdout.strip().splitlines()[-1]) if stdout.strip() else {}
    return seconds, result, usage.ru_maxrss / 1024, stderr  # Linux: kilobytes


def path_taken(stderr: str) -> str:
    """Which path a deploy or plan of an unchanged release took, by its step line: "told" (deploy/unchanged.py,
    no Prefect import) or "full"."""
    return "told" if TOLD_REASON in stderr else "full"


def build_and_push(stack: BenchStack, repo: BenchRepo) -> str:
    """HEAD's image built and pushed (untimed); its digest reference."""
    _, image = slipway(stack, repo, "image")
    stack.track(image["image"])
    _, pushed = slipway(stack, repo, "push", "--env", "local")
    return pushed["reference"]


def register_1000(stack: BenchStack, repo: BenchRepo, runs: int, count: int, prefect_100_s: float | None,
                  measure_prefect: bool) -> dict:
    prefect_file = f"prefect-{count}.yaml"
    prefect_image = f"{stack.registry_address}/{PREFECT_REPOSITORY}:{repo.sha()[:12]}"
    rows, rss = [], []
    prefect = None
    for i in range(runs):
        for pool in (SLIPWAY_POOL, PREFECT_POOL):
            stack.delete_deployments(pool)
        repo.set_deployments(count, f"k{i}-s", f"k{i}-p", prefect_build=False, prefect_image=prefect_image,
                             prefect_file=prefect_file)
        build_and_push(stack, repo)
        offset = stack.server_log_offset()
        seconds, out, peak, _ = slipway_measured(stack, repo, "deploy", "--env", "local")
        writes = stack.api_writes_since(offset)
        created = sum(d["action"] == "created" for d in out["deployments"])
        if created != count or len(stack.deployments_state(SLIPWAY_POOL)) != count:
            raise RuntimeError(f"slipway created {created} of {count} deployments")
        rows.append({"run": i + 1, "count": count, "slipway_s": seconds, "peak_rss_mb": peak,
                     "deployment_writes": len(writes["deployments"]), "refused_writes": len(writes["refused"])})
        rss.append({"command": "deploy (first registration)", "run": i + 1, "peak_rss_mb": peak})
    if measure_prefect:
        offset = stack.server_log_offset()
        p_seconds, _ = prefect_deploy(stack, repo, prefect_file)
        p_writes = stack.api_writes_since(offset)
        p_count = len(stack.deployments_state(PREFECT_POOL))
        if p_count != count:
            raise RuntimeError(f"prefect deploy registered {p_count} of {count} deployments")
        prefect = {"prefect_s": p_seconds, "measured": True, "refused_writes": len(p_writes["refused"])}
        stack.delete_deployments(PREFECT_POOL)
    elif prefect_100_s is not None:
        prefect = {"prefect_s": prefect_100_s * count / 100, "measured": False,
                   "from": f"10 x the median prefect deploy of 100 ({prefect_100_s:.1f} s)"}
    slipway_s = median([r["slipway_s"] for r in rows])
    return {"rows": rows, "rss": rss, "slipway_s": slipway_s, "prefect": prefect,
            "ratio": slipway_s / prefect["prefect_s"] if prefect else None}


def noop_and_plan(stack: BenchStack, repo: BenchRepo, runs: int) -> dict:
    noop, plans, rss = [], [], []
    for i in range(runs):
        before, offset = stack.deployments_state(SLIPWAY_POOL), stack.server_log_offset()
        seconds, out, peak, stderr = slipway_measured(stack, repo, "deploy", "--env", "local")
        writes = stack.api_writes_since(offset)
        noop.append({"run": i + 1, "seconds": seconds, "peak_rss_mb": peak, "path": path_taken(stderr),
                     "writes_in_access_log": len(writes["deployments"]), "all_writes": len(writes["all"]),
                     "writes_by_updated": len(changed(before, stack.deployments_state(SLIPWAY_POOL))),
                     "slipway_reported": sum(d["action"] != "unchanged" for d in out["deployments"])})
        rss.append({"command": "deploy (no-op)", "run": i + 1, "peak_rss_mb": peak})
        seconds, out, peak, stderr = slipway_measured(stack, repo, "plan", "--env", "local")
        plans.append({"run": i + 1, "seconds": seconds, "peak_rss_mb": peak, "path": path_taken(stderr),
                      "changes": sum(d["action"] != "unchanged" for d in out["deployments"])})
        rss.append({"command": "plan", "run": i + 1, "peak_rss_mb": peak})
    # Where a no-op's time goes at this count: the server serving the pool's deployments, read bare.
    server_read = stack.time_pool_read(SLIPWAY_POOL)
    return {"noop": noop, "plan": plans, "rss": rss, "server_read": server_read}


def rollback_1000(stack: BenchStack, repo: BenchRepo, runs: int, count: int) -> dict:
    """Release A = what is live (the last registration); release B = a flow change over it; then roll back."""
    sha_a = repo.sha()
    state = stack.deployments_state(SLIPWAY_POOL)
    ref_a = next(iter(state.values()))["image"]
    repo.change_a_flow("scale-rollback-b")
    build_and_push(stack, repo)
    slipway(stack, repo, "deploy", "--env", "local")
    manifest_a = stack.manifest(SLIPWAY_REPOSITORY, ref_a.partition("@")[2])
    allowed = {manifest_a["config"]["digest"], manifest_a["layers"][-1]["digest"]}
    rows, rss = [], []
    for i in range(runs):
        if i:
            slipway(stack, repo, "deploy", "--env", "local")  # B live again (untimed)
        since, offset = time.time(), stack.server_log_offset()
        seconds, out, peak, _ = slipway_measured(stack, repo, "rollback", "--env", "local", "--to", sha_a)
        writes = stack.api_writes_since(offset)
        seen = stack.registry_requests_since(since)
        blobs = {r["path"].rsplit("/", 1)[-1] for r in seen if r["method"] == "GET" and "/blobs/" in r["path"]}
        engine = [r for r in seen if r["agent"].startswith("docker/")]
        pinned = sum(1 for s in stack.deployments_state(SLIPWAY_POOL).values() if s["image"] == ref_a)
        rows.append({"run": i + 1, "seconds": seconds, "peak_rss_mb": peak, "deployments": len(out["deployments"]),
                     "deployment_writes": len(writes["deployments"]), "refused_writes": len(writes["refused"]),
                     "pinned_to_a": pinned, "blobs_fetched": sorted(b[:19] for b in blobs),
                     "layers_pulled": len(blobs - allowed) + len(engine)})
        rss.append({"command": "rollback", "run": i + 1, "peak_rss_mb": peak})
        if pinned != count:
            raise RuntimeError(f"after the rollback {pinned} of {count} deployments pin {ref_a}")
    return {"rows": rows, "rss": rss, "release_a": ref_a}


def run(stack: BenchStack, repo: BenchRepo, runs: int, quick: bool = False) -> dict:
    counts = {key: (QUICK_COUNTS.get(key, COUNT) if quick else COUNT) for key in FIGURES}
    counts["register_100_pg_ratio_vs_prefect"] = 100  # its count is in its name, quick or not
    figures: dict = {}
    details: dict = {"database": stack.database}
    stack.create_pool(PREFECT_POOL)

    small = register_run(stack, repo, runs, count=100)
    figures["register_100_pg_ratio_vs_prefect"] = small["figures"]["register_100_ratio_vs_prefect"]
    details["register_100_pg"] = small["details"]["register"]
    prefect_100 = median([r["prefect_s"] for r in small["details"]["register"]])

    count = counts["register_1000_pg_s"]
    big = register_1000(stack, repo, runs, count, prefect_100, measure_prefect=not quick)
    figures["register_1000_pg_s"] = big["slipway_s"]
    figures["register_1000_pg_ratio_vs_prefect"] = big["ratio"]
    details["register_1000_pg"] = {"rows": big["rows"], "prefect": big["prefect"]}
    rss = list(big["rss"])

    same = noop_and_plan(stack, repo, runs)
    figures["noop_1000_s"] = median([r["seconds"] for r in same["noop"]])
    figures["noop_1000_writes"] = max(max(r["writes_in_access_log"], r["writes_by_updated"]) for r in same["noop"])
    figures["plan_1000_s"] = median([r["seconds"] for r in same["plan"]])
    details["noop_1000"], details["plan_1000"] = same["noop"], same["plan"]
    details["server_read_1000"] = same["server_read"]
    rss += same["rss"]

    back = rollback_1000(stack, repo, runs, count)
    figures["rollback_1000_s"] = median([r["seconds"] for r in back["rows"]])
    figures["rollback_1000_layers_pulled"] = max(r["layers_pulled"] for r in back["rows"])
    details["rollback_1000"] = back
    rss += back.pop("rss")

    figures["peak_rss_1000_mb"] = max(r["peak_rss_mb"] for r in rss)
    details["peak_rss_1000"] = rss
    details["counts"] = counts
    stack.delete_deployments(SLIPWAY_POOL)
    extrapolated = {} if big["prefect"] is None or big["prefect"]["measured"] else {
        "register_1000_pg_ratio_vs_prefect": big["prefect"]["from"]}
    return {"figures": figures, "details": {"scale_pg": details},
            "quick_counts": {k: counts[k] for k in QUICK_COUNTS if quick}, "extrapolated": extrapolated}


def profile_lines(details: dict) -> list[str]:
    """Where (i)'s no-op and plan time goes, printed under the table: which path each run took, and the
    server's own time to serve the pool's deployments (bare HTTP), the floor of either path's reads."""
    scale_pg = details.get("scale_pg") or {}
    if "noop_1000" not in scale_pg:
        return []
    lines = [f"(i) {what} at 1,000: " + ", ".join(f"{r['seconds']:.2f} s ({r.get('path', '?')})"
                                                   for r in scale_pg[key])
             for what, key in (("no-op", "noop_1000"), ("plan", "plan_1000"))]
    read = scale_pg.get("server_read_1000")
    if read:
        lines.append(f"(i) the server serving the pool's {read['deployments']} deployments, bare HTTP, "
                     f"{len(read['pages'])} pages one after another: {read['seconds']:.2f} s")
    return lines
