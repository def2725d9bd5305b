"""End to end on the Kubernetes path: slipway deploys this repository to its `kind` environment (a Kubernetes
work pool with deploy/work-pools/kubernetes-job-template.json), the real prefect-kubernetes worker, started
from deploy/helm/values.yaml + values-kind.yaml as the Helm chart starts it, picks up a run of `elt/on-demand`
and submits a Job; the Pod made from that Job runs the flow from the pinned digest to Completed. That run is
the verification of a release (`verify:` in `kind`, a code-only release on top of the session's): slipway
creates it, follows it through the Kubernetes worker and records the release verified with it.

Real: the registry container, the Prefect server container, the release image of this repository, `build.py
deploy` and `build.py manifests`, the prefect-kubernetes worker process (its job rendering, its kopf observer
watching Pods and Jobs), the flow run in a Docker container.

A stand-in: the Kubernetes API server and the kubelet (tests/kit/kubernetes/). The API stand-in speaks the
Kubernetes REST and watch protocol over HTTP, keeps the objects and records every request; it refuses (422)
a Job whose image is not a digest reference or that fails strict schema validation. The pod runner creates
the Job's Pod and starts it as a Docker container: the image exactly as given, the command, args, env,
working directory and uid:gid from the Pod spec, on the host network so the flow run reaches the Prefect
server on 127.0.0.1. What this does not prove: authentication, RBAC enforcement (rbac.yaml's objects are
created, and the worker's recorded requests are checked against its Role afterwards, but nothing is
refused for lack of a permission), Pod Security and other admission, scheduling, a node's own image pulls
(containerd, pull secrets) and cluster networking; only a real cluster shows those.

One database: the test runs against the SQLite server only. It exercises the worker and the cluster side,
not the server's storage (the deploy tests cover both databases), and a run takes minutes on two cores.
"""
from __future__ import annotations

import anyio
import pytest
import yaml

from tests.kit.kubernetes.helm import worker_from_values
from tests.kit.kubernetes.rbac import forbidden, granted_rules
from tests.kit.repo import commit_all
from tests.kubernetes.conftest import DEPLOYMENT, ENV, HELM_VALUES, RBAC, run_cli, start_worker
from tests.kubernetes.jobs import assert_pinned_and_non_root, assert_same_job, strictly_valid

pytestmark = [pytest.mark.docker, pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)]


def ended_run(api_url: str, run_id: str, children: int):
    """(the flow run, its child flow runs) as the server holds them once the run has ended.

    A child is found through the parent's task run that started it, which the server records from events, a
    moment after the fact: up to 60 s are given for `children` of them to be found."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    async def read():
        async with PrefectClient(api=api_url) as client:
            found = []
            with anyio.move_on_after(60):
                while True:
                    found = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
                        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
                    if len(found) >= children and all(c.state and c.state.is_final() for c in found):
                        break
                    await anyio.sleep(1)
            return await client.read_flow_run(run_id), found

    return anyio.run(read)


def verified_release(deployed) -> tuple[dict, str]:
    """`kind` verified by a run of elt/on-demand: slipway.yaml's `verify:` committed (it is in the release
    layer, so this is a code-only release of the session's image) and `build.py release --env kind`. Returns
    the release's deploy JSON and its sha; `deployed` then describes the release live in `kind`."""
    release = deployed.release
    config = yaml.safe_load((release.root / "slipway.yaml").read_text())
    config["environments"][ENV]["verify"] = {"deployments": [DEPLOYMENT], "start_timeout": "3m", "timeout": "10m"}
    (release.root / "slipway.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    sha = commit_all(release.root, "verify kind's releases")
    outcome = run_cli("release", "--env", ENV, "--root", str(release.root), "--json")
    assert outcome.code == 0, outcome.stderr
    result = outcome.json()["deploy"]
    deployed.reference, deployed.rendered = result["reference"], release.manifests()["manifests"]
    return result, sha


def pod_events(api_url: str, pod_uid: str, last: str, timeout: float = 60) -> list[str]:
    """The `prefect.kubernetes.pod.*` events Prefect holds for a Pod (the worker's observer emits them from
    the Pod watch stream), once `last` is among them or after `timeout` seconds (events are stored in
    batches)."""
    from datetime import UTC, datetime, timedelta

    from prefect.client.orchestration import PrefectClient
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    query = EventFilter(event=EventNameFilter(prefix=["prefect.kubernetes.pod."]),
                        resource=EventResourceFilter(id=[f"prefect.kubernetes.pod.{pod_uid}"]),
                        occurred=EventOccurredFilter(since=datetime.now(UTC) - timedelta(hours=1)))

    async def read():
        names: list[str] = []
        async with PrefectClient(api=api_url) as client:
            with anyio.move_on_after(timeout):
                while last not in names:
                    response = await client.request("POST", "/events/filter", json={
                        "filter": query.model_dump(exclude_unset=True, mode="json")})
                    names = [e["event"] for e in response.json()["events"]]
                    await anyio.sleep(1)
        return sorted(names)

    return anyio.run(read)


def test_kubernetes_worker_runs_the_verification_of_a_release_from_the_pinned_digest(deployed, cluster,
                                                                                      docker_engine, tmp_path):
    release = deployed.release
    phases = ["prefect.kubernetes.pod.pending", "prefect.kubernetes.pod.running", "prefect.kubernetes.pod.succeeded"]
    worker = start_worker(release, cluster, tmp_path)
    try:
        result, sha = verified_release(deployed)
        reference, rendered = deployed.reference, deployed.rendered
        assert result["verification"]["verified"] is True, f"{result}\n{worker.output()}"
        [verification] = result["verification"]["runs"]
        flow_run, children = ended_run(release.server.api_url, verification["run_id"], children=2)
        # The flow run reports Completed itself, a moment before its container exits and the Job succeeds;
        # the worker's observer must see that too, so the worker runs until the Pod's last event is in.
        cluster.wait_until(lambda: [j["status"].get("succeeded") for j in cluster.api.objects("jobs")] == [1], 60,
                           "the Job succeeded")
        (pod,) = cluster.api.objects("pods", "prefect")
        events = pod_events(release.server.api_url, pod["metadata"]["uid"], phases[-1])
    finally:
        worker.stop()
    context = f"worker log:\n{worker.output()}\nstand-in: {cluster.runner.errors}"

    # The release is recorded verified in kind's history, with the run the Kubernetes worker ran.
    history = run_cli("releases", "--env", ENV, "--root", str(release.root), "--json").json()["history"]
    assert (history[0]["verb"], history[0]["release"]["revision"]) == ("verify", sha), history[0]
    assert history[0]["details"] == {"verification": "verified", "run": f"{flow_run.name} ({flow_run.id})"}

    # The worker submitted one Job, accepted; it is the Job `manifests` rendered, apart from per-run fields.
    submitted = cluster.submitted_jobs()
    assert [r.status for r in submitted] == [201], context
    job = submitted[0].body
    assert_same_job(job, rendered[DEPLOYMENT])
    strictly_valid(job, release.kubernetes_version())
    assert_pinned_and_non_root(job, reference)

    # The flow run and its children (subflows in the same Pod) completed.
    assert flow_run.state.is_completed(), f"{flow_run.state}\n{context}"
    assert len(children) == 2 and all(c.state.is_completed() for c in children), \
        [(c.name, c.state) for c in children]

    # The one container that ran was started from the pinned digest, pulled from the registry by digest,
    # as the template's user; its Pod ended as on a cluster.
    assert [c.image for c in cluster.runner.started] == [reference], cluster.runner.started
    container = docker_engine.containers.get(cluster.runner.started[0].container_id)
    assert container.attrs["Config"]["Image"] == reference
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert cluster.runner.pulled == [reference]
    digest = reference.partition("@")[2]
    assert release.registry.count("GET", f"/v2/{release.name}/manifests/{digest}") >= 1
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["metadata"]["labels"]["prefect.io/flow-run-id"] == str(flow_run.id)
    assert cluster.runner.errors == []

    # The worker's observer (kopf) watched the namespace's Pods and Jobs through the stand-in and reported the
    # Pod's phases, as the pod runner wrote them, to Prefect.
    watched = {r.path for r in cluster.client_requests() if r.verb == "watch"}
    assert {"/api/v1/namespaces/prefect/pods", "/apis/batch/v1/namespaces/prefect/jobs"} <= watched, watched
    assert events == phases, context

    # The stand-in enforces no RBAC: every request of the worker is checked against what rbac.yaml grants the
    # service account the Helm values give the worker, in the namespace it runs in (the Jobs').
    account = worker_from_values(*(release.root / f for f in HELM_VALUES)).service_account
    rules = granted_rules(release.root / RBAC, account, job["metadata"]["namespace"])
    assert forbidden(cluster.client_requests(), rules) == []

