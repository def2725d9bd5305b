"""Kubernetes' own rules for the values a Job carries, which its JSON schema does not hold: checked for every
deployment before anything is written, on the Job rendered by prefect-kubernetes (deploy/kubernetes.py).

kubernetes-validate checks types only: `cpu: lots` is a string, so it passes, and the API server refuses the
Job at the first flow run. Here, as the API server does (k8s.io/apimachinery):
- resource requests and limits parse as quantities, are not negative, and each request is at most its limit;
- the namespace is a DNS-1123 label, the service account a DNS-1123 subdomain, the Job's name prefix
  (`generateName`) a DNS-1123 subdomain prefix;
- label keys are qualified names and label values label values, on the Job and on its Pod; annotation keys
  too. The labels a deployment declares are checked as declared: the worker would otherwise "slugify" a
  wrong one into another label silently.

A problem is one SlipwayError naming the field it comes from: the job variable, and the file and key that set
it (`slipway.yaml: environments.kind.job_variables.cpu_request`), found through the placeholder the pool's
base job template has at that place of the Job.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from slipway.errors import SlipwayError

# --- quantities (resource.Quantity) ------------------------------------------------------------------------

# <sign><digits>[.<digits>]<suffix>, suffix one of the binary SI, decimal SI or an e/E exponent (integer).
_QUANTITY = re.compile(r"^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_MULTIPLIERS = {
    "": Decimal(1), "m": Decimal("0.001"), "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
QUANTITY_EXAMPLES = "a number with an optional suffix: 250m or 0.5 (CPU), 512Mi, 2Gi or 1G (memory)"


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("250m", "1.5", "512Mi", "1e3", 2) as an exact Decimal; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{value!r} is not a quantity")
    text = str(value) if not isinstance(value, float) else repr(value)
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    sign, number, suffix = match.group(1), match.group(2), match.group(3) or ""
    try:
        amount = Decimal(number)
    except InvalidOperation as exc:  # unreachable with the pattern above; kept for safety
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from exc
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        amount = amount.scaleb(int(suffix[1:]))
    else:
        amount *= _MULTIPLIERS[suffix]
    return -amount if sign == "-" else amount


# --- names -------------------------------------------------------------------------------------------------
# Each `*_rule` returns None for a valid value, else the rule it breaks, worded as the fix.

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_LABEL = "use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
DNS_SUBDOMAIN = ("use lowercase letters, digits, '-' and '.', each part starting and ending with a letter or "
                 "digit, at most 253 characters")
NAME = "use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"


def dns_label_rule(name: str) -> str | None:
    return DNS_LABEL if len(name) > 63 or not _DNS_LABEL.match(name) else None


def dns_subdomain_rule(name: str) -> str | None:
    return DNS_SUBDOMAIN if len(name) > 253 or not _DNS_SUBDOMAIN.match(name) else None


def name_prefix_rule(prefix: str) -> str | None:
    """The API server checks a name prefix with a trailing '-' allowed (and shortens a long one itself)."""
    masked = prefix[:-1] + "a" if prefix.endswith("-") else prefix
    return DNS_SUBDOMAIN.replace(", at most 253 characters", "") if not _DNS_SUBDOMAIN.match(masked) else None


def label_key_rule(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns_subdomain_rule(prefix)):
        return f"before the '/': {DNS_SUBDOMAIN}"
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return NAME if not slash else f"after the '/': {NAME}"
    return None


def label_value_rule(value: Any) -> str | None:
    if not isinstance(value, str):
        return "use a string (quote it)"
    if value and (len(value) > 63 or not _QUALIFIED_NAME.match(value)):
        return f"leave it empty or {NAME}"
    return None


# --- the checks --------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{\s*([\w.-]+)\s*\}\}")


class FieldNamer:
    """Names a place of a rendered Job after what set it: the job variable behind the template's placeholder
    there, and the file and key that set that variable; else the template itself."""

    def __init__(self, template: dict[str, Any], sources: dict[str, str], template_display: str,
                 deployment: str):
        self.manifest = (template.get("job_configuration") or {}).get("job_manifest") or {}
        self.sources = sources
        self.template_display = template_display
        self.deployment = deployment

    def variable(self, name: str, rest: str = "") -> str:
        where = self.sources.get(name) or f"{self.template_display}: variables.{name} (its default)"
        return where + rest

    def __call__(self, path: list[Any]) -> str:
        node: Any = self.manifest
        for depth, part in enumerate(path):
            if isinstance(node, str):  # a placeholder filled this whole subtree (`"labels": "{{ labels }}"`)
                return self._placeholder(node, path[depth:]) or self._literal(path)
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return self._literal(path)
        return (self._placeholder(node, []) if isinstance(node, str) else None) or self._literal(path)

    def _placeholder(self, text: str, rest: list[Any]) -> str | None:
        found = _PLACEHOLDER.search(text)
        return self.variable(found.group(1), "".join(f".{p}" for p in rest)) if found else None

    def _literal(self, path: list[Any]) -> str:
        return f"{self.template_display}: the Job of {self.deployment}: {'.'.join(str(p) for p in path)}"


def check_job(manifest: dict[str, Any], template: dict[str, Any], job_variables: dict[str, Any],
              sources: dict[str, str], template_display: str, deployment: str) -> None:
    """Raise one SlipwayError for the first value the Kubernetes API server would refuse."""
    name_of = FieldNamer(template, sources, template_display, deployment)
    for variable, kind in (("labels", "label"), ("annotations", "annotation")):  # as declared
        declared = job_variables.get(variable)
        for key, value in (declared.items() if isinstance(declared, dict) else ()):
            _check(label_key_rule(str(key)), name_of.variable(variable, f".{key}"), key, f"{kind} key")
            if kind == "label":
                _check(label_value_rule(value), name_of.variable(variable, f".{key}"), value, "label value")
    metadata = manifest.get("metadata") or {}
    for field, what, rule in (("namespace", "namespace", dns_label_rule),
                              ("generateName", "Job name prefix", name_prefix_rule),
                              ("name", "Job name", dns_subdomain_rule)):
        if field in metadata:
            _check(_string_rule(metadata[field], rule), name_of(["metadata", field]), metadata[field], what)
    pod = (manifest.get("spec") or {}).get("template") or {}
    for path, meta in ((["metadata"], metadata), (["spec", "template", "metadata"], pod.get("metadata") or {})):
        for key, value in (meta.get("labels") or {}).items():
            _check(label_key_rule(str(key)), name_of([*path, "labels", key]), key, "label key")
            _check(label_value_rule(value), name_of([*path, "labels", key]), value, "label value")
        for key in meta.get("annotations") or {}:
            _check(label_key_rule(str(key)), name_of([*path, "annotations", key]), key, "annotation key")
    pod_spec = pod.get("spec") or {}
    if "serviceAccountName" in pod_spec:
        value = pod_spec["serviceAccountName"]
        _check(_string_rule(value, dns_subdomain_rule), name_of(["spec", "template", "spec", "serviceAccountName"]),
               value, "service account name")
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(pod_spec.get(kind) or []):
            _check_resources(container.get("resources") or {}, ["spec", "template", "spec", kind, i, "resources"],
                             name_of)


def _string_rule(value: Any, rule) -> str | None:
    return rule(value) if isinstance(value, str) else "use a string (quote it)"


def _check(rule: str | None, where: str, value: Any, what: str) -> None:
    if rule is not None:
        raise SlipwayError(f"{where}: {value!r} is not a valid Kubernetes {what}", rule)


def _check_resources(resources: dict[str, Any], path: list, name_of: FieldNamer) -> None:
    parsed: dict[str, dict[str, Decimal]] = {}
    for group in ("requests", "limits"):
        for resource, value in (resources.get(group) or {}).items():
            where = name_of([*path, group, resource])
            try:
                amount = parse_quantity(value)
            except ValueError:
                raise SlipwayError(f"{where}: {value!r} is not a Kubernetes quantity (the container's {resource} "
                                   f"{group[:-1]})", f"use {QUANTITY_EXAMPLES}") from None
            if amount < 0:
                raise SlipwayError(f"{where}: {value!r} is negative (the container's {resource} {group[:-1]})",
                                   f"use {QUANTITY_EXAMPLES}")
            parsed.setdefault(group, {})[resource] = amount
    limits = parsed.get("limits") or {}
    for resource, request in (parsed.get("requests") or {}).items():
        if resource in limits and request > limits[resource]:
            raise SlipwayError(
                f"{name_of([*path, 'requests', resource])}: the {resource} request "
                f"{resources['requests'][resource]!r} is more than the limit {resources['limits'][resource]!r} "
                f"({name_of([*path, 'limits', resource])})",
                "make the request at most the limit (Kubernetes refuses the Job otherwise)")
