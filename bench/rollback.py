"""(e) Rollback of N (20) deployments: release A, release B, then `build.py rollback --env local --to <A sha>`.

Each run starts with B live (redeployed, untimed) and times the rollback to A. Checked on every run, from
outside slipway: every deployment pins A's digest afterwards, and the registry's access log for the
rollback's window shows no layer download — the only blobs fetched are A's config blob and A's small last
layer (the release layer) — and no request from the Docker engine (no pull).
"""
from __future__ import annotations

import time

from bench.common import median
from bench.project import SLIPWAY_POOL, SLIPWAY_REPOSITORY, BenchRepo
from bench.stack import BenchStack
from bench.tools import slipway


def release(stack: BenchStack, repo: BenchRepo) -> dict:
    _, image = slipway(stack, repo, "image")
    stack.track(image["image"])
    _, out = slipway(stack, repo, "deploy", "--env", "local")
    return out


def run(stack: BenchStack, repo: BenchRepo, runs: int, count: int = 20) -> dict:
    stack.delete_deployments(SLIPWAY_POOL)
    sha_a = repo.set_deployments(count, "rb")
    ref_a = release(stack, repo)["reference"]
    repo.change_a_flow("rollback-b")
    ref_b = release(stack, repo)["reference"]
    manifest_a = stack.manifest(SLIPWAY_REPOSITORY, ref_a.partition("@")[2])
    allowed = {manifest_a["config"]["digest"], manifest_a["layers"][-1]["digest"]}
    rows = []
    for i in range(runs):
        if i:
            slipway(stack, repo, "deploy", "--env", "local")  # B live again (untimed)
        since, offset = time.time(), stack.server_log_offset()
        seconds, out = slipway(stack, repo, "rollback", "--env", "local", "--to", sha_a)
        writes = stack.api_writes_since(offset)
        requests_seen = stack.registry_requests_since(since)
        blobs = sorted({r["path"].rsplit("/", 1)[-1] for r in requests_seen
                        if r["method"] == "GET" and "/blobs/" in r["path"]})
        engine = [r for r in requests_seen if r["agent"].startswith("docker/")]
        state = stack.deployments_state(SLIPWAY_POOL)
        pinned = sum(1 for s in state.values() if s["image"] == ref_a)
        rows.append({"run": i + 1, "seconds": seconds, "deployments": len(out["deployments"]),
                     "deployment_writes": len(writes["deployments"]), "refused_writes": len(writes["refused"]),
                     "pinned_to_a": pinned, "blobs_fetched": len(blobs),
                     "blob_bytes": sum(r["bytes"] for r in requests_seen
                                       if r["method"] == "GET" and "/blobs/" in r["path"]),
                     "only_config_and_release_layer": set(blobs) <= allowed, "engine_requests": len(engine)})
        if pinned != count:
            raise RuntimeError(f"after the rollback {pinned} of {count} deployments pin {ref_a}")
    return {"figures": {"rollback_20_s": median([r["seconds"] for r in rows])},
            "details": {"rollback": rows, "release_a": ref_a, "release_b": ref_b,
                        "no_layer_pulled": all(r["only_config_and_release_layer"] and not r["engine_requests"]
                                               for r in rows)}}
