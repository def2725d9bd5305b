"""The Kubernetes stand-in itself (tests/kit/kubernetes/), without Docker: the e2e tests rely on it answering
as an API server does, refusing what it must, mapping a Pod spec to the container the kubelet would run, and
on the worker's command coming from the Helm values.

The API is driven with kubernetes-asyncio, the client prefect-kubernetes uses; the Job under test is the one
slipway renders from the repository's template with prefect-kubernetes' code (no server needed).
"""
from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from docker.errors import DockerException

from tests.kit.kubernetes.apiserver import ApiServer
from tests.kit.kubernetes.cluster import start_cluster
from tests.kit.kubernetes.helm import load_values, worker_from_values
from tests.kit.kubernetes.kubelet import PODS, ContainerConfigError, PodRunner, run_as
from tests.kit.repo import REPO_ROOT

REFERENCE = "localhost:5000/jaffle-shop@sha256:" + "ab" * 32
KUBERNETES_VERSION = yaml.safe_load((REPO_ROOT / "slipway.yaml").read_text())["kubernetes_version"]


def rendered_job(template: dict | None = None, image: str = REFERENCE) -> dict:
    """The Job slipway renders for elt/on-demand from the repository's template (or `template`)."""
    from tests.kit.jobs import render_job_manifest

    template = template or json.loads((REPO_ROOT / "deploy/work-pools/kubernetes-job-template.json").read_text())
    return render_job_manifest(template, {"namespace": "prefect", "image": image}, flow_name="elt",
                               deployment_name="on-demand", work_pool_name="kind-kubernetes",
                               api_url="http://127.0.0.1:4200/api")


class NoEngine:
    """A node that cannot pull: the pod runner gets as far as the image, no container is started."""

    class images:  # noqa: N801 - the engine's attribute
        @staticmethod
        def pull(reference):
            raise DockerException("no Docker engine in these tests")

        get = pull


@pytest.fixture
def cluster(tmp_path):
    stand_in = start_cluster(NoEngine(), tmp_path, KUBERNETES_VERSION)
    stand_in.install(REPO_ROOT / "deploy/helm/rbac.yaml")
    yield stand_in
    stand_in.close()


def with_client(cluster, work):
    """Run `work(api_client)` against the stand-in with a client loaded from its kubeconfig."""
    from kubernetes_asyncio import config

    async def run():
        api = await config.new_client_from_config(str(cluster.kubeconfig))
        async with api:
            return await work(api)

    return asyncio.run(run())


def create_job(cluster, job: dict, namespace: str = "prefect"):
    """(status, body) of the create request."""
    from kubernetes_asyncio import client

    async def create(api):
        try:
            created = await client.BatchV1Api(api).create_namespaced_job(namespace, job)
            return 201, api.sanitize_for_serialization(created)
        except client.ApiException as exc:
            return exc.status, json.loads(exc.body)

    return with_client(cluster, create)


# --- the API --------------------------------------------------------------------------------------------------

def test_the_repository_job_is_admitted_with_a_generated_name_and_server_fields(cluster):
    status, job = create_job(cluster, rendered_job())
    assert status == 201
    meta = job["metadata"]
    assert meta["name"].startswith("on-demand-run-") and len(meta["name"]) == len("on-demand-run-") + 5
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert [j["metadata"]["name"] for j in cluster.api.objects("jobs", "prefect")] == [meta["name"]]
    (request,) = cluster.submitted_jobs()
    assert request.body == rendered_job()  # recorded as the client sent it
    # The Job controller's part: one Pod from the template, owned by the Job; this node cannot pull it.
    cluster.wait_until(lambda: _waiting(cluster) == "ErrImagePull", 10, "the Pod's pull failed")
    (pod,) = cluster.api.objects("pods", "prefect")
    assert pod["metadata"]["labels"]["job-name"] == meta["name"]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == meta["uid"]
    assert pod["spec"]["containers"] == job["spec"]["template"]["spec"]["containers"]
    assert cluster.runner.started == [] and cluster.runner.errors == []


def _waiting(cluster) -> str | None:
    pods = cluster.api.objects("pods", "prefect")
    statuses = pods[0].get("status", {}).get("containerStatuses") if pods else None
    return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None


@pytest.mark.parametrize("image", ["prefecthq/prefect:3.8.8-python3.11", "localhost:5000/jaffle-shop:abc123",
                                   "localhost:5000/jaffle-shop@sha256:short"])
def test_an_image_not_pinned_by_digest_is_refused(cluster, image):
    status, body = create_job(cluster, rendered_job(image=image))
    assert status == 422 and body["reason"] == "Invalid"
    assert "containers[0].image" in body["message"] and "pinned by digest" in body["message"]
    assert cluster.api.objects("jobs") == []


def test_a_job_that_fails_strict_validation_is_refused(cluster):
    job = rendered_job()
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}  # misspelt
    status, body = create_job(cluster, job)
    assert status == 422 and "unknown field" in body["message"] and "'limit' was unexpected" in body["message"]


def test_a_job_in_a_namespace_that_does_not_exist_is_refused(cluster):
    job = rendered_job()
    job["metadata"].pop("namespace")
    status, body = create_job(cluster, job, namespace="elsewhere")
    assert status == 404 and body["message"] == 'namespaces "elsewhere" not found'


def test_rbac_yaml_is_created_and_each_namespace_gets_its_default_service_account(cluster):
    accounts = {a["metadata"]["name"] for a in cluster.api.objects("serviceaccounts", "prefect")}
    assert accounts == {"default", "prefect-worker", "prefect-flows"}
    assert [r["metadata"]["name"] for r in cluster.api.objects("roles", "prefect")] == ["prefect-worker"]


def test_list_and_watch_follow_label_selectors_and_resource_versions(cluster):
    from kubernetes_asyncio import client, watch

    api = cluster.api
    api.call(api.create(PODS, "prefect", {"metadata": {"name": "a", "labels": {"prefect.io/flow-run-id": "1"}}}))
    api.call(api.create(PODS, "prefect", {"metadata": {"name": "b"}}))

    async def list_then_watch(api_client):
        core = client.CoreV1Api(api_client)
        listed = await core.list_pod_for_all_namespaces(label_selector="prefect.io/flow-run-id")
        version = listed.metadata.resource_version
        # After the list: one change to a selected pod, one to another; the watch sees only the first.
        api.call(api.patch(PODS, "prefect", "b", {"status": {"phase": "Running"}}))
        api.call(api.patch(PODS, "prefect", "a", {"status": {"phase": "Running"}}))
        seen = []
        async with watch.Watch().stream(core.list_pod_for_all_namespaces, label_selector="prefect.io/flow-run-id",
                                        resource_version=version, timeout_seconds=1) as stream:
            async for event in stream:
                seen.append((event["type"], event["object"].metadata.name, event["object"].status.phase))
        return [p.metadata.name for p in listed.items], seen

    listed, seen = with_client(cluster, list_then_watch)
    assert listed == ["a"]
    assert seen == [("MODIFIED", "a", "Running")]


def test_every_request_is_recorded_with_its_answer(cluster):
    create_job(cluster, rendered_job(image="busybox"))
    create_job(cluster, rendered_job())
    assert [(r.verb, r.status) for r in cluster.api.requests if r.path.endswith("/jobs")] == \
        [("create", 422), ("create", 201)]


# --- the kubelet's part -----------------------------------------------------------------------------------------

def test_the_repository_job_maps_to_the_container_a_kubelet_would_run():
    job = rendered_job()
    job["metadata"]["name"] = "on-demand-run-x"
    pod = {"metadata": {"name": "on-demand-run-x-abcde", "namespace": "prefect"}, "spec": job["spec"]["template"]["spec"]}
    runner = PodRunner(ApiServer(), NoEngine(), network_mode="host", labels={"kit": "1"})
    create = runner._create_arguments("prefect", job, pod, pod["spec"]["containers"][0], image_user="10001:10001")
    env = create.pop("environment")
    assert create.pop("name").startswith("k8s-on-demand-run-x-abcde-")
    assert create == {
        "image": REFERENCE, "command": ["prefect", "flow-run", "execute"], "user": "10001:10001",
        "group_add": ["10001"], "network_mode": "host", "tmpfs": {"/tmp": "mode=1777"}, "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"], "read_only": False, "privileged": False, "detach": True,
        "labels": {"kit": "1", "io.slipway.kit.pod": "prefect/on-demand-run-x-abcde",
                   "io.slipway.kit.job": "on-demand-run-x"},
        "mem_limit": 2 * 2**30, "nano_cpus": 10**9,
    }
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert env["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"] == "reschedule"  # backoffLimit 0


@pytest.mark.parametrize(("pod", "container", "image_user", "expected"), [
    ({"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001}, {}, "", "10001:10001"),
    ({"runAsUser": 10001}, {"runAsUser": 20002}, "", "20002"),  # the container's wins
    ({"runAsNonRoot": True}, {}, "10001:10001", "10001:10001"),  # the image's USER
    ({"runAsGroup": 5}, {}, "10001", "10001:5"),
    ({}, {}, "", "0"),  # no USER: root, allowed without runAsNonRoot
])
def test_the_user_follows_the_kubelets_rules(pod, container, image_user, expected):
    assert run_as({"securityContext": pod}, {"securityContext": container}, image_user) == expected


@pytest.mark.parametrize(("pod", "image_user", "message"), [
    ({"runAsNonRoot": True, "runAsUser": 0}, "10001", "container's runAsUser breaks non-root policy"),
    ({"runAsNonRoot": True}, "0", "container has runAsNonRoot and image will run as root"),
    ({"runAsNonRoot": True}, "", "container has runAsNonRoot and image will run as root"),
    ({"runAsNonRoot": True}, "prefect", "image has non-numeric user (prefect), cannot verify"),
])
def test_a_non_root_pod_that_would_run_as_root_is_not_started(pod, image_user, message):
    with pytest.raises(ContainerConfigError) as raised:
        run_as({"securityContext": pod}, {}, image_user)
    assert message in str(raised.value)


# --- the worker from the Helm values -----------------------------------------------------------------------------

def test_the_worker_starts_as_the_chart_would_from_the_kind_values():
    worker = worker_from_values(REPO_ROOT / "deploy/helm/values.yaml", REPO_ROOT / "deploy/helm/values-kind.yaml")
    assert worker.argv() == ["prefect", "worker", "start", "--type", "kubernetes", "--pool", "kind-kubernetes",
                             "--install-policy", "never"]
    assert worker.env == {"PREFECT_WORKER_PREFETCH_SECONDS": "10", "PREFECT_WORKER_QUERY_SECONDS": "5",
                          "PREFECT_API_ENABLE_HTTP2": "true", "PREFECT_DEBUG_MODE": "false",
                          "PREFECT_KUBERNETES_CLUSTER_UID": "slipway",
                          "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES": "prefect"}
    assert worker.service_account == "prefect-worker"


@pytest.mark.parametrize("env", ["kind", "staging", "prod"])
def test_each_environments_values_name_its_slipway_pool(env):
    """The pool the chart's worker polls is the pool slipway deploys to (a drift here: runs never start)."""
    slipway = yaml.safe_load((REPO_ROOT / "slipway.yaml").read_text())["environments"][env]
    worker = worker_from_values(REPO_ROOT / "deploy/helm/values.yaml", REPO_ROOT / f"deploy/helm/values-{env}.yaml")
    assert worker.pool == slipway["work_pool"]["name"]
    assert worker.type == slipway["work_pool"]["type"]


def test_values_merge_like_helm(tmp_path):
    (tmp_path / "a.yaml").write_text("worker: {config: {workPool: a, workQueues: [x, y]}, extraArgs: [--one]}")
    (tmp_path / "b.yaml").write_text("worker: {config: {workQueues: [z], limit: 2}}")
    values = load_values(tmp_path / "a.yaml", tmp_path / "b.yaml")["worker"]
    assert values["config"]["workPool"] == "a" and values["config"]["workQueues"] == ["z"]  # lists replaced
    assert values["config"]["installPolicy"] == "prompt"  # the chart's default
    assert worker_from_values(tmp_path / "a.yaml", tmp_path / "b.yaml").argv() == [
        "prefect", "worker", "start", "--type", "kubernetes", "--pool", "a", "--work-queue", "z",
        "--install-policy", "prompt", "--limit", "2", "--one"]


# --- RBAC, checked from the request log ------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "query", "allowed"), [
    ("POST", "/apis/batch/v1/namespaces/prefect/jobs", {}, True),
    ("GET", "/apis/batch/v1/namespaces/prefect/jobs", {"watch": "true"}, True),
    ("GET", "/api/v1/namespaces/prefect/pods/p-1/log", {}, True),
    ("GET", "/api/v1/namespaces/prefect/events", {}, True),
    ("GET", "/api", {}, True),  # discovery
    ("GET", "/apis/batch/v1", {}, True),
    ("GET", "/api/v1/pods", {"watch": "true"}, False),  # cluster-wide: a namespaced Role does not reach it
    ("GET", "/apis/batch/v1/jobs", {}, False),
    ("POST", "/api/v1/namespaces/prefect/secrets", {}, False),
    ("PATCH", "/api/v1/namespaces/prefect/pods/p-1", {}, False),
    ("POST", "/apis/batch/v1/namespaces/default/jobs", {}, False),  # another namespace
])
def test_requests_are_checked_against_the_role_rbac_yaml_binds_to_the_worker(method, path, query, allowed):
    from tests.kit.kubernetes.apiserver import Recorded
    from tests.kit.kubernetes.rbac import forbidden, granted_rules

    rules = granted_rules(REPO_ROOT / "deploy/helm/rbac.yaml", "prefect-worker", "prefect")
    assert (forbidden([Recorded(method, path, query, None, 200)], rules) == []) is allowed


def test_the_flow_runs_service_account_is_granted_nothing():
    from tests.kit.kubernetes.rbac import granted_rules

    assert granted_rules(REPO_ROOT / "deploy/helm/rbac.yaml", "prefect-flows", "prefect") == []
