"""Everything checked before the first write, for every deployment at once.

1. Entry points import INSIDE the release image: one throw-away container (no network) runs a probe on
   stdin that loads every entry point with Prefect's `load_flow_from_entrypoint` and reports each flow's
   name and parameter schema, and whether the declared parameters pass `flow.validate_parameters`.
   The image is the truth: a flow that imports on a laptop but misses a package in the image fails here.
2. Parameters (the deployment's and each schedule's) validate against the flow's schema, with the rules
   the Prefect server applies (`prefect.utilities.schema_tools.validate`, required ones may come at run time).
3. Schedules were already checked by Prefect's own validators when deployments.yaml was loaded.
4. Every job-variable key exists in the work pool's `variables.properties` (Prefect would ignore an unknown
   key silently) and every value validates against it, the way the server checks a deployment.
5. Kubernetes pools: the Job manifest, rendered by prefect-kubernetes' own code, validates strictly for
   slipway.yaml's `kubernetes_version`.

Each failure is a SlipwayError naming the file and field it comes from.
"""
from __future__ import annotations

import json
import socket
from typing import Any

from requests.exceptions import ConnectionError as HttpConnectionError

from slipway.deployments import Declarations, ResolvedDeployment
from slipway.errors import SlipwayError

PROBE_MARKER = "SLIPWAY-PROBE-RESULT "
PROBE_TIMEOUT_SECONDS = 300
PROBE_LABEL = "io.slipway.purpose"

# Runs inside the image with its own Python (PATH -> /opt/venv) in its WORKDIR (/opt/prefect).
# Flow modules may print on import: stdout of imports is sent to stderr and the result is one marked line.
_PROBE_SCRIPT = r'''
import contextlib, json, os, sys, traceback
REQUESTS = json.loads(__REQUESTS__)
sys.path.insert(0, os.getcwd())


def summarize(exc):
    inner = getattr(exc, "user_exc", None) or exc.__cause__ or exc
    text = f"{type(inner).__name__}: {inner}"
    return " ".join(text.split())[:500]


results = []
for request in REQUESTS:
    result = {"entrypoint": request["entrypoint"]}
    try:
        with contextlib.redirect_stdout(sys.stderr):
            from prefect.flows import load_flow_from_entrypoint
            flow = load_flow_from_entrypoint(request["entrypoint"], use_placeholder_flow=False)
        schema = flow.parameters.model_dump(mode="json", exclude_unset=True)
        result["flow_name"] = flow.name
        result["parameter_schema"] = schema
        checks = []
        required = set(schema.get("required") or [])
        for params in request["parameter_sets"]:
            if not required <= set(params):
                checks.append(None)  # required parameters arrive with the run: the schema check covers the rest
                continue
            try:
                with contextlib.redirect_stdout(sys.stderr):
                    flow.validate_parameters(params)
                checks.append("")
            except Exception as exc:
                checks.append(summarize(exc))
        result["parameter_checks"] = checks
    except BaseException as exc:
        result["error"] = summarize(exc)
        traceback.print_exc(file=sys.stderr)
    results.append(result)
print("__MARKER__" + json.dumps(results), flush=True)
'''


def probe_script(items: list[dict[str, Any]]) -> str:
    return (_PROBE_SCRIPT.replace("__REQUESTS__", repr(json.dumps(items)))
            .replace("__MARKER__", PROBE_MARKER))


def run_probe(client, image: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the probe in ONE container of `image` for all entry points; return one result per request.

    The script goes in on stdin (`python -`), so nothing about the deployments shows in a process list;
    the container has no network and is removed afterwards.
    """
    import docker

    try:
        created = client.api.create_container(
            image, command=["-"], entrypoint=["python"], stdin_open=True, network_disabled=True,
            labels={PROBE_LABEL: "entrypoint-probe"},
        )
    except docker.errors.ImageNotFound:
        raise SlipwayError(f"image {image} is not in the local Docker engine",
                           "run `make image` (python build.py image) first") from None
    except docker.errors.APIError as exc:
        raise SlipwayError(f"cannot start a container of {image}: {exc.explanation or exc}") from None
    cid = created["Id"]
    try:
        sock = client.api.attach_socket(cid, params={"stdin": 1, "stream": 1})
        client.api.start(cid)
        raw = getattr(sock, "_sock", sock)
        raw.sendall(probe_script(items).encode())
        try:
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        raw.close()
        try:
            status = client.api.wait(cid, timeout=PROBE_TIMEOUT_SECONDS)
        except HttpConnectionError:  # docker-py's read timeout (requests' ReadTimeout)
            raise SlipwayError(f"importing the flows in {image} took longer than {PROBE_TIMEOUT_SECONDS}s",
                               "check for flow modules that do work at import time") from None
        stdout = client.api.logs(cid, stdout=True, stderr=False).decode(errors="replace")
        stderr = client.api.logs(cid, stdout=False, stderr=True).decode(errors="replace")
    finally:
        try:
            client.api.remove_container(cid, force=True)
        except docker.errors.APIError:
            pass
    for line in stdout.splitlines():
        if line.startswith(PROBE_MARKER):
            return json.loads(line[len(PROBE_MARKER):])
    last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {status.get('StatusCode')}"
    raise SlipwayError(f"the entry-point probe failed in {image}: {last}",
                       "the image needs Python with prefect on PATH and WORKDIR /opt/prefect")


def probe_requests(declarations: Declarations, parameter_sets: list[list[dict[str, Any]]]) -> list[dict]:
    return [{"entrypoint": d.entrypoint, "parameter_sets": sets}
            for d, sets in zip(declarations.deployments, parameter_sets)]


def check_probe(declarations: Declarations, results: list[dict[str, Any]], image: str) -> list[str]:
    """Flow names by declaration, or the first import failure as a SlipwayError."""
    names = []
    for i, (decl, result) in enumerate(zip(declarations.deployments, results)):
        if "error" in result:
            raise SlipwayError(
                f"{declarations.filename}: deployments[{i}].entrypoint: {decl.entrypoint} does not load in "
                f"image {image}: {result['error']}",
                "fix the entry point (path relative to /opt/prefect, then ':' and the flow function) or the flow")
        names.append(result["flow_name"])
    return names


_CHECKED_SCHEMAS: set[str] = set()


def schema_problem(obj: dict[str, Any], schema: dict[str, Any], where: str) -> tuple[list[str], str] | None:
    """(path, message) of the error Prefect's `schema_tools.validate(..., raise_on_error=True)` would raise
    (jsonschema's best match), or None when `obj` is valid. Prefect's raising path checks the schema itself against the JSON Schema meta-schema on
    every call (~20 ms; 200 calls for 100 deployments); here each distinct schema is checked once."""
    import json

    from jsonschema.exceptions import best_match
    from prefect.utilities.schema_tools import is_valid_schema, validate

    key = json.dumps(schema, sort_keys=True, default=str)
    if key not in _CHECKED_SCHEMAS:
        try:
            is_valid_schema(schema)
        except ValueError as exc:
            raise SlipwayError(f"{where}: {' '.join(str(exc).split())}") from None
        _CHECKED_SCHEMAS.add(key)
    error = best_match(validate(obj, schema, raise_on_error=False, ignore_required=True))
    if error is None:
        return None
    return [str(p) for p in error.path], " ".join(error.message.split())


# --- parameters --------------------------------------------------------------------------------------------

def parameter_sets(deployment: ResolvedDeployment) -> list[tuple[str, dict[str, Any]]]:
    """(field, parameters) for the deployment and for each schedule (schedule values override)."""
    sets = [(f"deployments[{deployment.index}].parameters", deployment.parameters)]
    for j, schedule in enumerate(deployment.schedules):
        if schedule.parameters:
            sets.append((f"{deployment.schedules_field.split(': ', 1)[1]}[{j}].parameters",
                         {**deployment.parameters, **schedule.parameters}))
    return sets


def validate_parameters(deployment: ResolvedDeployment, schema: dict[str, Any], probe_checks: list,
                        filename: str) -> None:
    sets = parameter_sets(deployment)
    for k, (where, params) in enumerate(sets):
        unknown = sorted(set(params) - set(schema.get("properties") or {}))
        if unknown:
            raise SlipwayError(
                f"{filename}: {where}.{unknown[0]}: flow '{deployment.flow_name}' has no parameter '{unknown[0]}'",
                f"use one of: {', '.join(sorted(schema.get('properties') or {})) or '(none)'}")
        problem = schema_problem(params, schema, f"the parameter schema of flow '{deployment.flow_name}'")
        if problem is not None:
            path, message = problem
            raise SlipwayError(f"{filename}: {where}{'.' + '.'.join(path) if path else ''}: {message}",
                               "match the type of the flow's parameter")
        check = probe_checks[k] if k < len(probe_checks) else None
        if check:
            raise SlipwayError(f"{filename}: {where}: rejected by flow '{deployment.flow_name}': {check}",
                               "match the types of the flow's parameters")


# --- job variables -----------------------------------------------------------------------------------------

def validate_job_variables(deployment: ResolvedDeployment, job_variables: dict[str, Any],
                           base_job_template: dict[str, Any], pool_display: str) -> None:
    """Keys must exist in the pool's variables; values must match their schema (as the server checks)."""
    variables = base_job_template.get("variables") or {}
    known = set(variables.get("properties") or {})
    for key in job_variables:
        top = key.split(".", 1)[0]  # Prefect accepts dotted keys ("env.FOO") for nested values
        if top not in known:
            where = deployment.job_variables_source.get(key, f"job_variables.{key}")
            raise SlipwayError(
                f"{where}: unknown job variable for work pool {pool_display} (Prefect would ignore it)",
                f"use one of: {', '.join(sorted(known))}")
    problem = schema_problem(job_variables, variables, f"{pool_display}: variables")
    if problem is not None:
        path, message = problem
        key = path[0] if path else ""
        where = deployment.job_variables_source.get(key, f"job_variables.{key}")
        rest = "".join(f".{p}" for p in path[1:])
        raise SlipwayError(f"{where}{rest}: {message} (work pool {pool_display})",
                           "fix the value to match the pool's base job template")


def validate_kubernetes_manifest(deployment: ResolvedDeployment, manifest: dict[str, Any],
                                 kubernetes_version: str, template_display: str) -> None:
    from slipway.kubernetes import validate_manifest

    try:
        validate_manifest(manifest, kubernetes_version)
    except ValueError as exc:
        raise SlipwayError(
            f"{template_display}: the Job rendered for {deployment.full_name} is not a valid Kubernetes "
            f"{kubernetes_version} Job: {exc}",
            "fix the base job template or the job variables that fill it") from None
