"""The checks on a Job the worker submitted, shared by the end-to-end test and the tamper tests.

`assert_same_job(submitted, rendered)`: the Job equals what `build.py manifests` rendered for the deployment
once the per-run fields are set aside. Those are listed here, every one of them, with why it differs:

- PER_RUN_LABELS (on the Job and its Pod template), set aside on both sides: ids of objects `manifests`
  does not read (it renders with stand-in flow, flow-run and deployment ids), the flow run's generated name,
  the worker's name, and the deployment's last update time (which `manifests` has no deployment to read);
- `metadata.generateName`: the Job name prefix is the flow run's generated name;
- PER_RUN_ENV values: the same ids and names, as the flow-run container's environment;
- WORKER_ENV: variables the worker adds from its own process settings (Prefect's `_base_environment`:
  every PREFECT_* setting set for the worker process). These must be exactly the ones listed: the four the
  Helm chart sets on the worker container, and PREFECT_SERVER_EPHEMERAL_ENABLED from Prefect's default
  profile. `manifests` renders only PREFECT_API_URL, on purpose (kubernetes.py: no worker secrets in its
  output), so a new one here (an API key, a chart `extraEnvVars` entry) fails until it is listed.

Anything else that differs fails, with a line-by-line diff of the two Jobs.
"""
from __future__ import annotations

import copy
import difflib
import json

from tests.kit.kubernetes.admission import DIGEST_REFERENCE

PER_RUN_LABELS = (
    "prefect.io/flow-run-id", "prefect.io/flow-run-name", "prefect.io/flow-id", "prefect.io/deployment-id",
    "prefect.io/deployment-updated", "prefect.io/work-pool-id", "prefect.io/worker-name",
)
PER_RUN_ENV = (
    "PREFECT__FLOW_RUN_ID", "PREFECT__FLOW_ID", "PREFECT__DEPLOYMENT_ID", "PREFECT__WORKER_ID",
    "PREFECT__WORKER_NAME",
)
WORKER_ENV = (
    "PREFECT_API_ENABLE_HTTP2", "PREFECT_DEBUG_MODE", "PREFECT_SERVER_EPHEMERAL_ENABLED",
    "PREFECT_WORKER_PREFETCH_SECONDS", "PREFECT_WORKER_QUERY_SECONDS",
)
PER_RUN = "<per run>"


def _container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def without_per_run_fields(job: dict) -> dict:
    job = copy.deepcopy(job)
    job["metadata"]["generateName"] = PER_RUN
    for meta in (job["metadata"], job["spec"]["template"].get("metadata") or {}):
        for label in PER_RUN_LABELS:
            (meta.get("labels") or {}).pop(label, None)
    container = _container(job)
    container["env"] = [{**e, "value": PER_RUN} if e["name"] in PER_RUN_ENV else e
                        for e in container.get("env") or [] if e["name"] not in WORKER_ENV]
    return job


def env_names(job: dict) -> set[str]:
    return {e["name"] for e in _container(job).get("env") or []}


def assert_same_job(submitted: dict, rendered: dict) -> None:
    added = env_names(submitted) - env_names(rendered)
    assert added == set(WORKER_ENV), \
        f"the worker added {sorted(added)} to the flow run's environment; listed: {sorted(WORKER_ENV)}"
    left, right = (json.dumps(without_per_run_fields(j), indent=1, sort_keys=True).splitlines()
                   for j in (rendered, submitted))
    if left != right:
        diff = "\n".join(difflib.unified_diff(left, right, "build.py manifests", "submitted by the worker",
                                              lineterm=""))
        raise AssertionError(f"the Job the worker submitted is not the one slipway rendered:\n{diff}")


def strictly_valid(job: dict, kubernetes_version: str) -> None:
    from slipway.deploy.kubernetes import validate_manifest

    validate_manifest(job, kubernetes_version)  # raises ValueError naming the field


def assert_pinned_and_non_root(job: dict, reference: str) -> None:
    """The Job runs the release's digest reference, and its Pod may not run as root."""
    image = _container(job).get("image")
    assert image == reference, f"the Job runs {image!r}, not the release's {reference!r}"
    assert DIGEST_REFERENCE.match(image), image
    pod = job["spec"]["template"]["spec"].get("securityContext") or {}
    container = _container(job).get("securityContext") or {}
    non_root = container.get("runAsNonRoot", pod.get("runAsNonRoot"))
    uid = container.get("runAsUser", pod.get("runAsUser"))
    assert non_root is True and uid != 0, f"the Job's Pod may run as root (runAsNonRoot={non_root}, runAsUser={uid})"
