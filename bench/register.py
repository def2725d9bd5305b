"""(d) Registering N (100) new deployments, both tools, against the same server.

slipway: `build.py deploy --env local` of N declarations, HEAD's image already built and pushed (untimed
before; the build imported the N entry points in the image): it reads what that probe found from the image's
release layer, validates parameters and job variables, reads the N deployments from Prefect and creates
them.
prefect: `prefect deploy --all --prefect-file prefect-N.yaml`, the same N deployments with no build or push
steps (the image given as a fixed reference): it loads each flow on the host, builds its parameter schema
and creates it.
Each run uses new names on both sides (so both create), and the pools are emptied first (untimed).
ratio = slipway seconds / prefect seconds per run; the figure is the median ratio.
"""
from __future__ import annotations

from bench.common import median
from bench.project import PREFECT_POOL, PREFECT_REPOSITORY, SLIPWAY_POOL, BenchRepo
from bench.stack import BenchStack
from bench.tools import prefect_deploy, slipway


def run(stack: BenchStack, repo: BenchRepo, runs: int, count: int = 100) -> dict:
    prefect_file = f"prefect-{count}.yaml"
    prefect_image = f"{stack.registry_address}/{PREFECT_REPOSITORY}:{repo.sha()[:12]}"
    rows = []
    for i in range(runs):
        for pool in (SLIPWAY_POOL, PREFECT_POOL):
            stack.delete_deployments(pool)
        repo.set_deployments(count, f"r{i}-s", f"r{i}-p", prefect_build=False, prefect_image=prefect_image,
                             prefect_file=prefect_file)
        _, image = slipway(stack, repo, "image")
        stack.track(image["image"])
        slipway(stack, repo, "push", "--env", "local")
        offset = stack.server_log_offset()
        s_seconds, out = slipway(stack, repo, "deploy", "--env", "local")
        s_writes = stack.api_writes_since(offset)
        offset = stack.server_log_offset()
        p_seconds, _ = prefect_deploy(stack, repo, prefect_file)
        p_writes = stack.api_writes_since(offset)
        s_count, p_count = len(stack.deployments_state(SLIPWAY_POOL)), len(stack.deployments_state(PREFECT_POOL))
        if s_count != count or p_count != count:
            raise RuntimeError(f"expected {count} deployments per tool, found slipway {s_count}, prefect {p_count}")
        rows.append({"run": i + 1, "count": count, "slipway_s": s_seconds, "prefect_s": p_seconds,
                     "slipway_created": sum(d["action"] == "created" for d in out["deployments"]),
                     "slipway_refused_writes": len(s_writes["refused"]), "prefect_refused_writes": len(
                         p_writes["refused"]),
                     "ratio": s_seconds / p_seconds})
    for pool in (SLIPWAY_POOL, PREFECT_POOL):
        stack.delete_deployments(pool)
    return {"figures": {"register_100_ratio_vs_prefect": median([r["ratio"] for r in rows])},
            "details": {"register": rows}}
