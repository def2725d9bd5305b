"""The stand-in's admission: what it refuses at creation, answered HTTP 422 `Invalid` as an API server does.

- `pinned_images_only`: every container of a Job's or a Pod's template must name its image by digest
  (`<repository>@sha256:<64 hex>`). A stock API server admits any image; clusters that pin images enforce
  this with an admission policy (Kyverno, Gatekeeper, a ValidatingAdmissionPolicy). slipway's promise is
  that the image is pinned, so the stand-in is such a cluster.
- `strictly_valid(version)`: a Job must validate strictly against that Kubernetes version's schema
  (slipway's own `validate_manifest`, kubernetes-validate): an unknown field is refused, as an API server
  does for a client asking for `fieldValidation=Strict` (by default it would drop the field with a warning).
"""
from __future__ import annotations

import re

from tests.kit.kubernetes.apiserver import ApiError, Resource

DIGEST_REFERENCE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def _pod_spec(resource: Resource, obj: dict) -> tuple[str, dict] | None:
    if resource.plural == "jobs":
        return "spec.template.spec", ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    if resource.plural == "pods":
        return "spec", obj.get("spec") or {}
    return None


def _invalid(resource: Resource, obj: dict, field: str, value, message: str) -> ApiError:
    name = obj.get("metadata", {}).get("name", "")
    return ApiError(422, "Invalid", f'{resource.kind}.{resource.group or "core"} "{name}" is invalid: {field}: '
                    f'Invalid value: {value!r}: {message}',
                    {"name": name, "group": resource.group, "kind": resource.plural,
                     "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]})


def pinned_images_only(resource: Resource, obj: dict, namespace: str | None) -> None:
    found = _pod_spec(resource, obj)
    if found is None:
        return
    where, spec = found
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(kind) or []):
            image = container.get("image")
            if not isinstance(image, str) or not DIGEST_REFERENCE.match(image):
                raise _invalid(resource, obj, f"{where}.{kind}[{i}].image", image,
                               "this cluster admits images pinned by digest only (<repository>@sha256:<digest>)")


def strictly_valid(kubernetes_version: str):
    from slipway.deploy.kubernetes import validate_manifest

    def admit(resource: Resource, obj: dict, namespace: str | None) -> None:
        if resource.plural != "jobs":
            return
        try:
            validate_manifest(obj, kubernetes_version)
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            raise _invalid(resource, obj, field, None, f"strict validation for Kubernetes {kubernetes_version}: "
                           f"{message}") from exc

    return admit
