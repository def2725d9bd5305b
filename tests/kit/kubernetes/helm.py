"""The worker as the prefect-worker Helm chart would start it, from the repository's values files.

`worker_from_values(values-files)` merges the files the way Helm does (maps deep-merged, the later file
winning; lists and scalars replaced) over the chart's defaults, then builds the worker container's command
line and environment the way the chart's `templates/deployment.yaml` does: `prefect worker start --type
<config.type> --pool <config.workPool> [--work-queue <q>]... --install-policy <config.installPolicy>
[--limit] [--name] [extraArgs]`, with PREFECT_WORKER_QUERY_SECONDS, PREFECT_WORKER_PREFETCH_SECONDS,
PREFECT_API_ENABLE_HTTP2, PREFECT_DEBUG_MODE, PREFECT_KUBERNETES_CLUSTER_UID and `extraEnvVars` (plain
values). So a drift between deploy/helm/values*.yaml and slipway.yaml (the pool the worker polls, its
queues) shows when the worker started from them picks up slipway's flow runs, or does not.

Not taken from the values, and said by the caller instead: the API URL and key (the test's own server),
the worker image (the worker runs from this venv), and the rest of the worker's Pod (resources, security
context: the worker runs as a process here, not in a Pod). Its service account is read, so that the worker's
requests can be checked against the RBAC granted to it (rbac.py).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# The chart's defaults for the values read here (prefect-worker chart, values.yaml).
CHART_DEFAULTS = {"fullnameOverride": "prefect-worker", "serviceAccount": {"create": True, "name": ""}, "worker": {
    "clusterUid": "",
    "image": {"debug": False},
    "config": {"type": "kubernetes", "workPool": "", "workQueues": [], "queryInterval": 5, "prefetchSeconds": 10,
               "http2": True, "installPolicy": "prompt", "limit": None, "name": None},
    "extraArgs": [],
    "extraEnvVars": [],
}}


def merge_values(base: dict, override: dict) -> dict:
    """Helm's values merge: maps deep-merged, anything else replaced by the later file."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        out[key] = merge_values(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def load_values(*files: Path) -> dict:
    values = CHART_DEFAULTS
    for path in files:
        values = merge_values(values, yaml.safe_load(Path(path).read_text()) or {})
    return values


@dataclass
class HelmWorker:
    """The worker container's arguments and environment, as the chart renders them."""

    type: str
    pool: str
    queues: list[str]
    install_policy: str
    limit: int | None = None
    name: str | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    service_account: str = "prefect-worker"  # the worker Pod's: whose RBAC its requests are checked against

    def argv(self, prefect: str = "prefect") -> list[str]:
        args = [prefect, "worker", "start", "--type", self.type, "--pool", self.pool]
        for queue in self.queues:
            args += ["--work-queue", queue]
        args += ["--install-policy", self.install_policy]
        if self.limit:
            args += ["--limit", str(self.limit)]
        if self.name:
            args += ["--name", self.name]
        return args + [str(a) for a in self.extra_args]


def worker_from_values(*files: Path) -> HelmWorker:
    chart = load_values(*files)
    values = chart["worker"]
    config = values["config"]
    if not config.get("workPool"):
        raise ValueError(f"{', '.join(str(f) for f in files)}: worker.config.workPool is required by the chart")
    env = {
        "PREFECT_WORKER_PREFETCH_SECONDS": str(config["prefetchSeconds"]),
        "PREFECT_WORKER_QUERY_SECONDS": str(config["queryInterval"]),
        "PREFECT_API_ENABLE_HTTP2": str(config["http2"]).lower(),
        "PREFECT_DEBUG_MODE": str(values["image"]["debug"]).lower(),
        **({"PREFECT_KUBERNETES_CLUSTER_UID": str(values["clusterUid"])} if values.get("clusterUid") else {}),
    }
    for item in values.get("extraEnvVars") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return HelmWorker(type=config["type"], pool=config["workPool"], queues=list(config.get("workQueues") or []),
                      install_policy=config["installPolicy"], limit=config.get("limit"), name=config.get("name"),
                      extra_args=list(values.get("extraArgs") or []), env=env,
                      service_account=chart["serviceAccount"].get("name") or chart["fullnameOverride"])
