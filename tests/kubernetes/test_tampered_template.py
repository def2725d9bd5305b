"""The end-to-end test's checks fail when the job template is tampered with: the template drops the image
variable, the Pod would run as root, or the worker would send another image than the release's.

The cheapest real check for each: the repository is released once per session (conftest's `deployed`,
shared with the end-to-end test: one build, one deploy); then, per case, a tampered copy of
deploy/work-pools/kubernetes-job-template.json is written to the work pool in Prefect (as `prefect work-pool
update --base-job-template` or the Helm chart's baseJobTemplate init container would: a second writer behind
slipway's back), the real prefect-kubernetes worker is started from the Helm values, a run of elt/on-demand
is created, and the Job the worker sends to the stand-in API is checked with the end-to-end test's own checks
(tests/kubernetes/jobs.py). The run is not waited for: what each case shows is decided when the Job is
submitted (and, for two of them, when its Pod starts). The repository's template is put back after each.

The stand-in is the one of the end-to-end test (tests/kit/kubernetes/); the same limits apply (no RBAC, no
Pod Security admission: on a real cluster a `restricted` namespace would refuse the root Pod as well).
"""
from __future__ import annotations

import anyio
import pytest

from tests.kubernetes.conftest import DEPLOYMENT, repo_template, set_pool_template, start_worker
from tests.kubernetes.jobs import assert_pinned_and_non_root, assert_same_job

pytestmark = [pytest.mark.docker, pytest.mark.parametrize("prefect_server", ["sqlite"], indirect=True)]


def _container(template: dict) -> dict:
    return template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]


def drop_image_variable(template: dict) -> None:
    del _container(template)["image"]
    del template["variables"]["properties"]["image"]


def run_as_root(template: dict) -> None:
    context = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["securityContext"]
    context.pop("runAsNonRoot")
    context["runAsUser"] = 0


def send_another_image(reference: str):
    other = reference.partition("@")[0] + "@sha256:" + "0" * 64  # pinned, but not this release

    def edit(template: dict) -> None:
        _container(template)["image"] = other

    return edit, other


def create_run(api_url: str):
    from prefect.client.orchestration import PrefectClient
    from prefect.deployments import run_deployment

    async def create():
        async with PrefectClient(api=api_url) as client:
            return (await run_deployment(DEPLOYMENT, timeout=0, client=client)).id

    return anyio.run(create)


def read_run(api_url: str, flow_run_id):
    from prefect.client.orchestration import PrefectClient

    async def read():
        async with PrefectClient(api=api_url) as client:
            return await client.read_flow_run(flow_run_id)

    return anyio.run(read)


def cancel_run(api_url: str, flow_run_id) -> None:
    """End the run so no later worker of this session picks it up."""
    from prefect.client.orchestration import PrefectClient
    from prefect.states import Cancelled

    async def cancel():
        async with PrefectClient(api=api_url) as client:
            if not (await client.read_flow_run(flow_run_id)).state.is_final():
                await client.set_flow_run_state(flow_run_id, Cancelled(message="tamper test done"), force=True)

    anyio.run(cancel)


@pytest.fixture
def submit_with(deployed, cluster, tmp_path):
    """submit_with(edit): tamper the pool's template with `edit`, start the worker, create a run of the
    deployment; returns (the worker's first Job request, the flow run id) once the stand-in got it. The
    worker is stopped and the run ended when the test is over."""
    release = deployed.release
    started = []

    def submit(edit):
        template = repo_template()
        edit(template)
        set_pool_template(release.server.api_url, release.pool, template)
        worker = start_worker(release, cluster, tmp_path)
        flow_run_id = create_run(release.server.api_url)
        started.append((worker, flow_run_id))
        cluster.wait_until(lambda: cluster.submitted_jobs(), 120, f"the worker submitted a Job\n{worker.output()}")
        return cluster.submitted_jobs()[0], flow_run_id

    yield submit
    for worker, flow_run_id in started:
        worker.stop()
        cancel_run(release.server.api_url, flow_run_id)
    set_pool_template(release.server.api_url, release.pool, repo_template())


def test_a_template_without_the_image_variable_is_refused(deployed, cluster, submit_with):
    release, reference, rendered = deployed.release, deployed.reference, deployed.rendered[DEPLOYMENT]
    request, flow_run_id = submit_with(drop_image_variable)

    # The worker fell back to Prefect's own image, by tag: the stand-in refuses the Job, no Pod exists.
    image = request.body["spec"]["template"]["spec"]["containers"][0]["image"]
    assert "@sha256:" not in image and image.startswith("prefecthq/prefect:"), image
    assert request.status == 422
    assert cluster.api.objects("jobs") == [] and cluster.runner.started == []
    with pytest.raises(AssertionError, match="not the release's"):
        assert_pinned_and_non_root(request.body, reference)
    with pytest.raises(AssertionError, match="not the one slipway rendered"):
        assert_same_job(request.body, rendered)
    # The user sees why: the worker, its retries refused too, reports the refusal on the flow run.
    cluster.wait_until(lambda: read_run(release.server.api_url, flow_run_id).state.is_final(), 60,
                       "the worker ended the flow run")
    state = read_run(release.server.api_url, flow_run_id).state
    assert state.is_crashed() and "pinned by digest" in (state.message or ""), state


def test_a_template_that_runs_the_pod_as_root_fails_the_checks(deployed, cluster, docker_engine, submit_with):
    reference, rendered = deployed.reference, deployed.rendered[DEPLOYMENT]
    request, _ = submit_with(run_as_root)

    # An API server without Pod Security admission accepts it, and the kubelet runs the container as uid 0.
    assert request.status == 201
    with pytest.raises(AssertionError, match="may run as root"):
        assert_pinned_and_non_root(request.body, reference)
    with pytest.raises(AssertionError, match="not the one slipway rendered"):
        assert_same_job(request.body, rendered)
    cluster.wait_until(lambda: cluster.runner.started, 120, "the Pod's container started")
    container = docker_engine.containers.get(cluster.runner.started[0].container_id)
    assert container.attrs["Config"]["User"] == "0:10001"  # the e2e test requires 10001:10001


def test_a_template_that_sends_another_image_fails_the_checks(deployed, cluster, submit_with):
    reference, rendered = deployed.reference, deployed.rendered[DEPLOYMENT]
    edit, other = send_another_image(reference)
    request, _ = submit_with(edit)

    # Pinned, so admitted; but it is not the release, and the node cannot pull it.
    assert request.status == 201
    assert request.body["spec"]["template"]["spec"]["containers"][0]["image"] == other
    with pytest.raises(AssertionError, match="not the release's"):
        assert_pinned_and_non_root(request.body, reference)
    with pytest.raises(AssertionError, match="not the one slipway rendered"):
        assert_same_job(request.body, rendered)

    def waiting_reason():
        pods = cluster.api.objects("pods", "prefect")
        statuses = pods[0].get("status", {}).get("containerStatuses") if pods else None
        return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

    cluster.wait_until(lambda: waiting_reason() == "ErrImagePull", 120, "the Pod's image pull failed")
    assert cluster.runner.started == []

