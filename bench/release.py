"""(b) code-only release of 10 deployments, side by side; (c) no-op redeploy; (f) bytes pushed; (g) image size.

(b) Each run is one pair: a one-line flow edit is committed, then slipway releases it as a release engineer
types it (`make image deploy ENV=local`: one `build.py release` process: build, probe, validate, push,
register) and is timed; another one-line edit is
committed, then `prefect deploy --all` releases it (prefect-docker build + push steps, 10 deployments) and is
timed. ratio = slipway seconds / prefect seconds, per pair; the figure is the median ratio.
(c) Right after slipway's release, `build.py deploy --env local` again with nothing changed: seconds, and the
deployment writes the server saw, counted twice independently of slipway's own report: deployments whose
`updated` timestamp moved (API), and successful write requests under /api/deployments (access log).
(f) From the registry's side during slipway's release: bytes of the blobs uploaded (PUTs that complete an
upload, sized on the registry's disk) plus the manifests PUT, over the compressed size of the layers whose
digests are new in the new manifest (versus the previous release's manifest). Then the same flows-only
release with a large data/ (64 MB of random bytes committed to it, its first release untimed): bytes
uploaded over those of (b)'s release of the same run number — a path that did not change is not sent again,
so the ratio stays ≈ 1 whatever data/ holds.
(g) `docker image inspect` Size of the release image over `du -sb /opt/venv` inside it.
"""
from __future__ import annotations

import os
import urllib.parse
import uuid

from bench.common import median, run_timed
from bench.project import PREFECT_POOL, PREFECT_REPOSITORY, SLIPWAY_POOL, SLIPWAY_REPOSITORY, BenchRepo
from bench.stack import BenchStack, changed
from bench.tools import prefect_deploy, slipway, slipway_make

DEPLOYMENTS = 10
LARGE_DATA = "data/bench-large.bin"
LARGE_DATA_BYTES = 64 * 2**20  # >= 50 MB: the "a 200 MB data/ is pushed again for a one-line flow change"


def uploaded_bytes(stack: BenchStack, since: float, repository: str) -> dict:
    """Bytes uploaded to `repository` since `since` (by slipway or an engine), from the registry's access log
    and disk."""
    blobs = stack.registry_blobs()
    layers = manifests = 0
    uploads, manifest_puts = [], []
    for req in stack.registry_requests_since(since):
        # Exactly this repository: the build cache (<repository>/slipway-cache) is a repository of its own.
        path = req["path"].split("?", 1)[0]
        if not path.startswith((f"/v2/{repository}/blobs/", f"/v2/{repository}/manifests/")) \
                or req["status"] >= 300:
            continue
        if req["method"] == "PUT" and "/blobs/uploads/" in req["path"]:
            query = urllib.parse.parse_qs(urllib.parse.urlparse(req["path"]).query)
            digest = (query.get("digest") or [""])[0]
            uploads.append(digest)
            layers += blobs.get(digest, 0)
        elif req["method"] == "PUT" and "/manifests/" in req["path"]:
            reference = req["path"].rsplit("/", 1)[-1]
            manifest_puts.append(reference)
            manifests += len(stack_manifest_bytes(stack, repository, reference))
    return {"blob_bytes": layers, "manifest_bytes": manifests, "bytes": layers + manifests, "blobs": uploads,
            "manifest_puts": manifest_puts}


def stack_manifest_bytes(stack: BenchStack, repository: str, reference: str) -> bytes:
    import requests

    from slipway.registry import MANIFEST_TYPES

    resp = requests.get(f"{stack.registry_url}/v2/{repository}/manifests/{reference}",
                        headers={"Accept": ", ".join(MANIFEST_TYPES)}, timeout=10)
    resp.raise_for_status()
    return resp.content


def changed_layers(old: dict, new: dict) -> dict:
    before = {layer["digest"] for layer in old.get("layers", [])}
    fresh = [layer for layer in new.get("layers", []) if layer["digest"] not in before]
    return {"layers": len(fresh), "bytes": sum(layer["size"] for layer in fresh),
            "digests": [layer["digest"] for layer in fresh]}


def image_sizes(stack: BenchStack, image: str) -> dict:
    size = stack.client.images.get(image).attrs["Size"]
    out = stack.client.containers.run(image, ["du", "-sb", "/opt/venv"], entrypoint=[], remove=True,
                                      name=f"bench-du-{uuid.uuid4().hex[:8]}")
    venv = int(out.decode().split()[0])
    return {"image_bytes": size, "venv_bytes": venv, "ratio": size / venv}


def warm_up(stack: BenchStack, repo: BenchRepo) -> dict:
    """First release by each tool: the base layers reach the registry, the deployments exist. Untimed."""
    repo.set_deployments(DEPLOYMENTS, "s", "p")
    # The repository's copies of the lock are newer than the tool's .venv/.installed, so its first `make`
    # would check the virtualenv again (pip, compileall: 3-50 s measured) inside the first timed release.
    run_timed(["make", "--no-print-directory", "venv"], repo.root, stack.tool_env())
    stack.create_pool(PREFECT_POOL)
    _, image = slipway(stack, repo, "image")
    stack.track(image["image"])
    slipway(stack, repo, "deploy", "--env", "local")
    prefect_deploy(stack, repo)
    track_prefect_images(stack)
    return {"sha": repo.sha(), "image": image["image"]}


def track_prefect_images(stack: BenchStack) -> None:
    for image in stack.client.images.list(name=f"{stack.registry_address}/{PREFECT_REPOSITORY}"):
        stack.images.add(image.id)


def pushed(stack: BenchStack, since: float, prev_sha: str, sha: str) -> dict:
    """(f) What the release of `sha` (after `prev_sha`) uploaded since `since`, from the registry's side."""
    up = uploaded_bytes(stack, since, SLIPWAY_REPOSITORY)
    new_manifest = stack.manifest(SLIPWAY_REPOSITORY, sha)
    layers = changed_layers(stack.manifest(SLIPWAY_REPOSITORY, prev_sha), new_manifest)
    blob_sizes = stack.registry_blobs()
    in_manifest = {layer["digest"] for layer in new_manifest.get("layers", [])}
    layer_bytes = sum(blob_sizes.get(d, 0) for d in up["blobs"] if d in in_manifest)
    return {"uploaded_bytes": up["bytes"], "uploaded_blobs": len(up["blobs"]),
            "uploaded_blob_sizes": {d[:19]: blob_sizes.get(d) for d in up["blobs"]},
            "uploaded_layer_bytes": layer_bytes,
            "config_blob_bytes": up["blob_bytes"] - layer_bytes,
            "manifest_bytes": up["manifest_bytes"], "manifest_puts": len(up["manifest_puts"]),
            "changed_layers": layers["layers"],
            "changed_layer_bytes": layers["bytes"], "ratio": up["bytes"] / max(layers["bytes"], 1),
            "layer_ratio": layer_bytes / max(layers["bytes"], 1)}


def slipway_release(stack: BenchStack, repo: BenchRepo, prev_sha: str, marker: str) -> tuple[str, dict]:
    """A one-line flow edit committed and released by `make image deploy ENV=local`: its sha and (f)."""
    sha = repo.change_a_flow(marker)
    since = _now()
    _, out = slipway_make(stack, repo, "image", "deploy")
    stack.track(out["image"]["image"])
    return sha, pushed(stack, since, prev_sha, sha)


def large_data_pushes(stack: BenchStack, repo: BenchRepo, runs: int, prev_sha: str, example: list[dict]) -> list:
    """(f) with a large data/: LARGE_DATA_BYTES of random bytes (gzip cannot shrink them) committed to data/
    and released once (its layer uploaded, untimed), then `runs` flows-only releases like (b)'s, each paired
    with (b)'s run of the same number (the example's data/). The file is removed (and that committed) after,
    so the scenarios that follow release the example as it is."""
    path = repo.root / LARGE_DATA
    with path.open("wb") as out:
        for _ in range(LARGE_DATA_BYTES // 2**20):
            out.write(os.urandom(2**20))
    prev_sha, _ = slipway_release(stack, repo, prev_sha, "large-data")  # the data/ layer's first upload
    rows = []
    try:
        for i in range(runs):
            prev_sha, push = slipway_release(stack, repo, prev_sha, f"large-data-{i}")
            rows.append({"run": i + 1, "data_file_bytes": LARGE_DATA_BYTES, **push,
                         "ratio_to_example": push["uploaded_bytes"] / max(example[i]["uploaded_bytes"], 1)})
    finally:
        path.unlink()
        repo.commit("bench: the example's data/ again")
    return rows


def run(stack: BenchStack, repo: BenchRepo, runs: int) -> dict:
    state = warm_up(stack, repo)
    prev_sha = state["sha"]
    pairs, noop, pushes = [], [], []
    for i in range(runs):
        # (b) slipway: code change -> image -> deploy (validate, push, register).
        sha = repo.change_a_flow(f"slipway-{i}")
        since = _now()
        offset = stack.server_log_offset()
        s_release, out = slipway_make(stack, repo, "image", "deploy")  # as typed: one `build.py release`
        image, deployed = out["image"], out["deploy"]
        stack.track(image["image"])
        deploy_writes = stack.api_writes_since(offset)
        actions = [d["action"] for d in deployed["deployments"]]
        pushes.append({"run": i + 1, **pushed(stack, since, prev_sha, sha)})  # (f)
        prev_sha = sha
        # (c) no-op redeploy, nothing changed.
        before, offset = stack.deployments_state(SLIPWAY_POOL), stack.server_log_offset()
        s_noop, again = slipway(stack, repo, "deploy", "--env", "local")
        writes = stack.api_writes_since(offset)
        noop.append({"run": i + 1, "seconds": s_noop, "writes_by_updated": len(changed(before,
                                                                                     stack.deployments_state(SLIPWAY_POOL))),
                     "writes_in_access_log": len(writes["deployments"]), "all_writes": len(writes["all"]),
                     "slipway_reported": sum(d["action"] != "unchanged" for d in again["deployments"])})
        # (b) prefect: code change -> `prefect deploy --all` (build + push steps, 10 deployments).
        repo.change_a_flow(f"prefect-{i}")
        since = _now()
        before = stack.deployments_state(PREFECT_POOL)
        p_seconds, _ = prefect_deploy(stack, repo)
        p_up = uploaded_bytes(stack, since, PREFECT_REPOSITORY)
        p_written = len(changed(before, stack.deployments_state(PREFECT_POOL)))
        # The incumbent's no-op, for comparison: same commit again.
        before, offset = stack.deployments_state(PREFECT_POOL), stack.server_log_offset()
        p_noop, _ = prefect_deploy(stack, repo)
        p_noop_writes = stack.api_writes_since(offset)
        noop[-1].update({"prefect_seconds": p_noop, "prefect_writes_by_updated": len(changed(
            before, stack.deployments_state(PREFECT_POOL))), "prefect_writes_in_access_log": len(
            p_noop_writes["deployments"])})
        track_prefect_images(stack)
        pairs.append({"run": i + 1, "slipway_s": s_release, "slipway_actions": sorted(set(actions)),
                      "slipway_deployment_writes": len(deploy_writes["deployments"]),
                      "slipway_refused_writes": len(deploy_writes["refused"]),
                      "slipway_steps": out["steps"],
                      "prefect_s": p_seconds, "prefect_deployments_written": p_written,
                      "prefect_uploaded_bytes": p_up["bytes"], "ratio": s_release / p_seconds})
    sizes = image_sizes(stack, image["image"])
    large = large_data_pushes(stack, repo, runs, prev_sha, pushes)
    return {
        "figures": {
            "code_only_ratio_vs_prefect": median([p["ratio"] for p in pairs]),
            "noop_redeploy_s": median([n["seconds"] for n in noop]),
            "noop_redeploy_writes": max(max(n["writes_by_updated"], n["writes_in_access_log"]) for n in noop),
            "push_bytes_ratio": median([p["ratio"] for p in pushes]),
            "push_layer_bytes_ratio": median([p["layer_ratio"] for p in pushes]),
            "push_bytes_with_large_data_ratio": median([p["ratio_to_example"] for p in large]),
            "image_size_ratio": sizes["ratio"],
        },
        "details": {"code_only": pairs, "noop": noop, "push": pushes, "push_large_data": large,
                    "image_size": sizes},
    }


def _now() -> float:
    import time

    return time.time()
