"""`make demo K8S=1`: the Kubernetes path end to end on this machine, without a cluster.

1. `build.py up`            local registry on localhost:5000 and Prefect server on 127.0.0.1:4200
2. `build.py image`         HEAD's release image
3. `build.py deploy`        push, validate, register every deployment pinned to the digest (env `kind`: a
                            Kubernetes work pool from deploy/work-pools/kubernetes-job-template.json)
4. a stand-in cluster       a Kubernetes API stand-in on a loopback port (with deploy/helm/rbac.yaml's
                            namespace and service accounts) and a pod runner playing the Job controller and the
                            kubelet with Docker (tests/kit/kubernetes/)
5. the real worker          `prefect worker start --type kubernetes`, arguments and environment from
                            deploy/helm/values.yaml + values-kind.yaml as the prefect-worker chart renders them
6. run elt/on-demand        print the Job the worker submitted, the flow runs' final states and the image
                            the Pod's container was started from (checked against the release's digest)

The Kubernetes API server and the kubelet are stand-ins: no RBAC, admission, scheduling or node runtime is
exercised; a kind or minikube cluster shows those (README, "Kubernetes").

Options (for running it elsewhere than the embedded default): --root PATH releases another checkout (its
`kind` environment names the registry and Prefect server), --no-up uses services already running there.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # slipway/ and tests/kit/ live beside scripts/
ENVIRONMENT = "kind"
DEPLOYMENT = os.environ.get("DEMO_DEPLOYMENT", "elt/on-demand")
HELM_VALUES = ("deploy/helm/values.yaml", "deploy/helm/values-kind.yaml")
RBAC = "deploy/helm/rbac.yaml"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def build_py(root: Path, *args: str) -> dict | None:
    """Run a slipway verb like a user would; JSON verbs return their parsed result."""
    cmd = [sys.executable, str(ROOT / "build.py"), *args, "--root", str(root)]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    return json.loads(proc.stdout) if "--json" in args else None


async def run_and_report(api_url: str) -> tuple[object, list]:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.deployments import run_deployment

    say(f"running deployment {DEPLOYMENT} (timeout 15 min)")
    async with PrefectClient(api=api_url) as client:
        parent = await run_deployment(DEPLOYMENT, timeout=900, poll_interval=3, client=client)
        parent = await client.read_flow_run(parent.id)
        # Children are found through the parent's task runs, which the server records from events a moment
        # later: wait up to 30 s for the two of the ELT flow (extract-load, dbt-build).
        children = []
        for _ in range(30):
            children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id])))
            if len(children) >= 2 and all(c.state and c.state.is_final() for c in children):
                break
            await asyncio.sleep(1)
        print(f"\n{'flow run':<45} final state")
        for run, indent in [(parent, "")] + [(child, "  ") for child in children]:
            flow = await client.read_flow(run.flow_id)
            print(f"{indent + flow.name + '/' + run.name:<45} {run.state.name if run.state else '?'}")
    return parent, children


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to release (default: this one)")
    parser.add_argument("--no-up", action="store_true", help="do not run `build.py up`")
    args = parser.parse_args(argv)
    root = args.root.resolve()

    import yaml

    from slipway.image.engine import docker_client
    from tests.kit.kubernetes.cluster import start_cluster
    from tests.kit.kubernetes.helm import worker_from_values
    from tests.kit.kubernetes.worker import start_worker
    from tests.kit.services import kit_labels

    allow_dirty = ["--allow-dirty"] if os.environ.get("ALLOW_DIRTY") in {"1", "true", "yes"} else []
    if not args.no_up:
        say("starting the local registry and Prefect server")
        build_py(root, "up")
    say("building HEAD's image")
    build_py(root, "image", *allow_dirty)
    say(f"deploying to `{ENVIRONMENT}` (a Kubernetes work pool; pushes first)")
    deployed = build_py(root, "deploy", "--env", ENVIRONMENT, "--json")
    reference = deployed["reference"]
    for row in deployed["deployments"]:
        print(f"    {row['name']:<32} {row['action']}")

    config = yaml.safe_load((root / "slipway.yaml").read_text())
    api_url = config["environments"][ENVIRONMENT]["prefect"]["api_url"]
    workdir = Path(tempfile.mkdtemp(prefix="slipway-k8s-demo-"))
    engine = docker_client()
    say("starting the stand-in cluster: Kubernetes API on a loopback port, pods run by Docker")
    cluster = start_cluster(engine, workdir, config["kubernetes_version"], labels=kit_labels("demo-pod"))
    worker = None
    try:
        cluster.install(root / RBAC)
        helm = worker_from_values(*(root / f for f in HELM_VALUES))
        say(f"starting the worker as the Helm chart would: {' '.join(helm.argv())} (log: {workdir}/worker-*.log)")
        worker = start_worker(helm, Path(sys.executable).parent / "prefect", api_url, cluster.kubeconfig, workdir)
        parent, children = asyncio.run(run_and_report(api_url))

        submitted = cluster.submitted_jobs()
        for request in submitted:
            say(f"the Job the worker submitted (POST {request.path} -> HTTP {request.status}):")
            print(yaml.safe_dump(request.body, sort_keys=False), end="")
        started = [c.image for c in cluster.runner.started]
        print(f"\nPod containers started from: {', '.join(started) or '(none)'}")
        print(f"the release's digest:        {reference}")
        ok = started == [reference] and parent.state is not None and parent.state.is_completed() \
            and all(c.state is not None and c.state.is_completed() for c in children)
        if not ok:
            print(f"error: the run did not complete from the pinned digest; stand-in: {cluster.runner.errors}",
                  file=sys.stderr)
        return 0 if ok else 1
    finally:
        if worker is not None:
            worker.stop()
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
