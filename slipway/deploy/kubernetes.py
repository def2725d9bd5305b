"""The Kubernetes Job a deployment's flow run becomes, rendered by prefect-kubernetes' own code.

The manifest is produced exactly as the worker produces it — `KubernetesWorkerJobConfiguration
.from_template_and_values(base_job_template, job_variables)` then `prepare_for_flow_run(...)` with a
stand-in flow run — and validated with kubernetes-validate against the cluster's schema in strict mode
(an unknown field is an error: the API server would drop it silently, which is how a misspelt
`nodeSelector` ships). This runs before anything is written, for every deployment.

Two deliberate differences from a live worker, both so that rendering needs no cluster and prints no secret:
- the worker's own Prefect settings (`_base_environment`: whatever PREFECT_* the worker Pod has, its API key
  included) are replaced by PREFECT_API_URL alone;
- the flow run, flow and deployment are stand-ins with stable ids derived from the deployment name, so
  `manifests` prints the same text for the same release.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from slipway.errors import SlipwayError

WORKER_NAME = "prefect-worker"  # what the helm chart's worker is called (deploy/helm/values.yaml)
_NAMESPACE_UUID = uuid.UUID("7d1c3a55-3f54-4a8e-9b6e-5e7f3c0a9d21")


def load_job_template(path: Path, display: str) -> dict[str, Any]:
    """A work pool's base job template from a JSON file in the repository."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SlipwayError(f"{display} not found", "create it or fix work_pool.base_job_template in slipway.yaml") from exc
    except json.JSONDecodeError as exc:
        raise SlipwayError(f"{display}: line {exc.lineno} is not valid JSON ({exc.msg})", "fix the syntax") from exc
    if not isinstance(data, dict) or not isinstance(data.get("job_configuration"), dict) \
            or not isinstance(data.get("variables"), dict):
        raise SlipwayError(f"{display}: expected 'job_configuration' and 'variables' mappings",
                           "start from deploy/work-pools/kubernetes-job-template.json")
    return data


def _stable_id(*parts: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE_UUID, "/".join(parts))


def _configuration_class(api_url: str | None):
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    class RenderedJobConfiguration(KubernetesWorkerJobConfiguration):
        @classmethod
        def _base_environment(cls) -> dict[str, str]:
            # A live worker passes its own PREFECT_* settings here; we pass only the API URL (see module doc).
            return {"PREFECT_API_URL": api_url} if api_url else {}

    return RenderedJobConfiguration


async def render_job_manifest_async(base_job_template: dict[str, Any], job_variables: dict[str, Any], *,
                                    flow_name: str, deployment_name: str, work_pool_name: str,
                                    api_url: str | None = None) -> dict[str, Any]:
    """The Job manifest the Kubernetes worker would create for a run of this deployment."""
    from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse

    flow_id = _stable_id("flow", flow_name)
    deployment_id = _stable_id("deployment", flow_name, deployment_name)
    flow_run = FlowRun(id=_stable_id("flow-run", flow_name, deployment_name), name=f"{deployment_name}-run",
                       flow_id=flow_id, deployment_id=deployment_id)
    flow = Flow(id=flow_id, name=flow_name)
    deployment = DeploymentResponse(id=deployment_id, name=deployment_name, flow_id=flow_id)
    pool = WorkPool(id=_stable_id("work-pool", work_pool_name), name=work_pool_name, type="kubernetes",
                    base_job_template=base_job_template)
    cls = _configuration_class(api_url)
    # No template of ours references a block or a Prefect variable, so no API call is made here; a client
    # is passed so that `inject_client` does not build one from the ambient settings.
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=api_url or "http://127.0.0.1:9/api") as client:
        configuration = await cls.from_template_and_values(base_job_template, job_variables, client=client)
    configuration.prepare_for_flow_run(flow_run=flow_run, deployment=deployment, flow=flow, work_pool=pool,
                                       worker_name=WORKER_NAME)
    return configuration.job_manifest


async def render_job_manifests(base_job_template: dict[str, Any], deployments: list[tuple[Any, dict[str, Any]]],
                               *, work_pool_name: str, api_url: str | None, template_display: str
                               ) -> dict[str, dict]:
    """`<flow>/<deployment>` -> its Job, for (ResolvedDeployment, job variables) pairs. A template
    prefect-kubernetes cannot render is one error naming the template and the deployment."""
    out = {}
    for dep, job_variables in deployments:
        try:
            out[dep.full_name] = await render_job_manifest_async(
                base_job_template, job_variables, flow_name=dep.flow_name, deployment_name=dep.name,
                work_pool_name=work_pool_name, api_url=api_url)
        except (ValueError, KeyError, TypeError) as exc:  # prefect-kubernetes refuses the template
            raise SlipwayError(f"{template_display}: prefect-kubernetes cannot render the Job for "
                               f"{dep.full_name}: {' '.join(str(exc).split())}",
                               "start from deploy/work-pools/kubernetes-job-template.json") from exc
    return out


def validate_manifest(manifest: dict[str, Any], kubernetes_version: str) -> None:
    """Strict schema validation; raises ValueError('<field.path>: <problem>')."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(root)"
        message = exc.message
        if exc.validator == "additionalProperties":
            message = f"unknown field ({message})"
        raise ValueError(f"{path}: {message}") from exc
    except kubernetes_validate.VersionNotSupportedError as exc:
        raise ValueError(f"kubernetes-validate has no schema for Kubernetes {kubernetes_version}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise ValueError(exc.message) from exc
