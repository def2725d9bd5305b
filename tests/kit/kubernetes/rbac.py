"""RBAC, checked after the fact: would the Roles in deploy/helm/rbac.yaml have allowed what a client did?

The stand-in enforces no authorization (apiserver.py). Instead, the requests it recorded from a client are
checked against the Role(s) a RoleBinding grants that client's service account, the way the API server's
RBAC authorizer decides: a request is the verb (get / list / watch / create / update / patch / delete) on a
resource (with its subresource, `pods/log`) in an API group, in a namespace or cluster-wide; a namespaced
Role allows only requests in its own namespace; discovery (`/api`, `/apis`, `/version`) is allowed to every
authenticated client, as Kubernetes' `system:discovery` role does. ClusterRoles and aggregated roles are not
read (rbac.yaml has none), nor are resourceNames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.kit.kubernetes.apiserver import Recorded


@dataclass(frozen=True)
class Access:
    verb: str
    group: str
    resource: str  # "pods", "pods/log"
    namespace: str | None  # None: cluster-wide

    def __str__(self) -> str:
        where = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.verb} {self.resource}{'.' + self.group if self.group else ''} {where}"


def access_of(request: Recorded) -> Access | None:
    """What RBAC authorizes for a request; None for discovery."""
    parts = [p for p in request.path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) > 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":  # else a cluster-wide request, or a Namespace itself
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = request.verb
    if verb == "get" and not named:
        verb = "list"
    return Access(verb, group, resource, namespace)


@dataclass(frozen=True)
class Rule:
    namespace: str
    groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]

    def allows(self, access: Access) -> bool:
        return (access.namespace == self.namespace and bool({access.group, "*"} & self.groups)
                and bool({access.resource, "*"} & self.resources) and bool({access.verb, "*"} & self.verbs))


def granted_rules(manifests: Path, service_account: str, namespace: str) -> list[Rule]:
    """The rules of every Role bound to `namespace/service_account` by a RoleBinding in `manifests`."""
    docs = [d for d in yaml.safe_load_all(Path(manifests).read_text()) if d]
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "Role"}
    rules = []
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        bound_ns = binding["metadata"]["namespace"]
        subjects = binding.get("subjects") or []
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == service_account
                   and s.get("namespace", bound_ns) == namespace for s in subjects):
            continue
        role = roles.get((bound_ns, binding["roleRef"]["name"])) if binding["roleRef"]["kind"] == "Role" else None
        for rule in (role or {}).get("rules") or []:
            rules.append(Rule(bound_ns, frozenset(rule.get("apiGroups") or []), frozenset(rule.get("resources") or []),
                              frozenset(rule.get("verbs") or [])))
    return rules


def forbidden(requests: list[Recorded], rules: list[Rule]) -> list[str]:
    """The requests no rule allows, each as '<verb> <resource> <where> (<method> <path>)', without repeats."""
    out: list[str] = []
    for request in requests:
        access = access_of(request)
        if access is None or any(rule.allows(access) for rule in rules):
            continue
        line = f"{access} ({request.method} {request.path})"
        if line not in out:
            out.append(line)
    return out
