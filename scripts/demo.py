"""`make demo`: the embedded default end to end, the way a release engineer would do it by hand.

1. `build.py up`       local registry on localhost:5000 and Prefect server on 127.0.0.1:4200
2. `build.py image`    HEAD's release image
3. a Prefect Docker worker (prefect-docker) polls the `local` work pool (it creates the pool on a new server)
4. `build.py deploy`   push, validate, register every deployment pinned to the digest (env `local`), then
   verify the release: slipway.yaml's `local.verify` runs the ELT parent deployment through the worker, and a
   run that fails rolls the release back
5. print each flow run of that verification run with its final state; the run's container is started from
   the pinned digest, which is checked and printed too. (A commit verified already is not verified again:
   the demo then runs the deployment itself.)
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # slipway/ lives beside scripts/
DEPLOYMENT = os.environ.get("DEMO_DEPLOYMENT", "elt/on-demand")
ENVIRONMENT = "local"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def build_py(*args: str) -> dict | None:
    """Run a slipway verb like a user would; JSON verbs return their parsed result."""
    cmd = [sys.executable, str(ROOT / "build.py"), *args]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    return json.loads(proc.stdout) if "--json" in args else None


def container_image(flow_run_id, remove: bool = False) -> str:
    """The image the worker's container for this flow run was started from (the local env keeps it)."""
    import docker

    client = docker.from_env()
    found = client.containers.list(all=True, filters={"label": f"io.prefect.flow-run-id={flow_run_id}"})
    if not found:
        return "(no container found)"
    image = found[0].attrs["Config"]["Image"]
    if remove:
        for container in found:
            container.remove(force=True)
    return image


async def wait_for_pool(name: str, worker: subprocess.Popen, seconds: float = 90) -> bool:
    """Until the worker has created its pool (or found it): deploy then writes into that pool, never races
    the worker to create it."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                await client.read_work_pool(name)
                return True
            except ObjectNotFound:
                await asyncio.sleep(1)
    return False


async def report(run_id: str | None, reference: str) -> int:
    """The ELT parent run (the release's verification run, or a run started here) and its children."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.deployments import run_deployment

    if run_id is None:
        say(f"this release was verified already: running deployment {DEPLOYMENT} (timeout 15 min)")
        run_id = (await run_deployment(DEPLOYMENT, timeout=900, poll_interval=3)).id
    async with get_client() as client:
        parent = await client.read_flow_run(run_id)
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])))
        rows = [(parent, "")] + [(child, "  ") for child in sorted(children, key=lambda r: r.start_time or 0)]
        print(f"\n{'flow run':<45} {'final state':<12} container image")
        for run, indent in rows:
            flow = await client.read_flow(run.flow_id)
            image = container_image(run.id) if not indent else "(the parent's container)"
            print(f"{indent + flow.name + '/' + run.name:<45} {run.state.name if run.state else '?':<12} {image}")
    ran = container_image(parent.id, remove=True)
    if ran != reference:
        print(f"error: the flow run's container ran {ran}, not the released {reference}", file=sys.stderr)
        return 1
    return 0 if parent.state and parent.state.is_completed() else 1


def main() -> int:
    allow_dirty = ["--allow-dirty"] if os.environ.get("ALLOW_DIRTY") in {"1", "true", "yes"} else []
    say("starting the local registry and Prefect server")
    build_py("up")
    say("building HEAD's image")
    build_py("image", *allow_dirty)

    from slipway.project.config import load_project
    env = load_project(ROOT).environment(ENVIRONMENT)
    os.environ["PREFECT_API_URL"] = env.prefect.api_url
    log_path = ROOT / ".slipway" / "worker.log"
    log_path.parent.mkdir(exist_ok=True)
    say(f"starting a Prefect Docker worker on pool {env.work_pool.name} (log: {log_path.relative_to(ROOT)})")
    with open(log_path, "w") as log:
        worker = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "worker.py"), ENVIRONMENT], cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT)  # `make worker`'s
    try:
        if not asyncio.run(wait_for_pool(env.work_pool.name, worker)):
            print(f"error: the worker did not start (exit {worker.poll()}); see {log_path}", file=sys.stderr)
            return 1
        say("deploying to `local`: push, register, then verify the release with a run of its ELT flow")
        result = build_py("deploy", "--env", ENVIRONMENT, "--json")
        for row in result["deployments"]:
            print(f"    {row['name']:<32} {row['action']}")
        runs = (result.get("verification") or {}).get("runs") or []
        return asyncio.run(report(runs[0]["run_id"] if runs else None, result["reference"]))
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


if __name__ == "__main__":
    sys.exit(main())
