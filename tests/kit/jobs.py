"""Kubernetes Jobs as slipway renders them, for tests that call the renderer directly (outside an event loop)."""
from __future__ import annotations

import anyio

from slipway.deploy.kubernetes import render_job_manifest_async


def render_job_manifest(template: dict, job_variables: dict, **kwargs) -> dict:
    """The Job prefect-kubernetes renders from `template` and `job_variables` (slipway's renderer, in its own
    event loop)."""
    return anyio.run(lambda: render_job_manifest_async(template, job_variables, **kwargs))


def manifest_image(manifest: dict) -> str | None:
    return manifest["spec"]["template"]["spec"]["containers"][0].get("image")
