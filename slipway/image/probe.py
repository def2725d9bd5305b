"""The entry-point probe: every deployment's entry point imported INSIDE the image, in one container.

One throw-away container (no network) runs a script that loads each distinct entry point once with
Prefect's `load_flow_from_entrypoint` and reports, per declared deployment, the flow's name and parameter
schema, and whether the declared parameters pass `flow.validate_parameters` (each distinct parameter set of a
flow checked once). The image is the truth: a flow that imports on a laptop but
misses a package in the image is found here. The build runs it once and records the result in the release
layer (image/release_layer.py); deploy, plan and rollback read that instead of importing the flows again.

The container is started before its questions are known (`start_probe`): importing Prefect is most of its
time (≈ 1.3 s here), and the host needs as long to read deployments.yaml, whose schedules Prefect's own
models check. So the script comes first and imports Prefect at once; the requests follow on the next line
(`RunningProbe.ask`). Both travel on stdin, so nothing about the deployments shows in a process list.
"""
from __future__ import annotations

import json
import socket
import time
from typing import Any

from requests.exceptions import ConnectionError as HttpConnectionError

from slipway.errors import SlipwayError
from slipway.invocation import command
from slipway.project.declarations import Declarations

PROBE_MARKER = "SLIPWAY-PROBE-RESULT "
PROBE_TIMEOUT_SECONDS = 300
PROBE_LABEL = "io.slipway.purpose"
PROBE_PURPOSE = "entrypoint-probe"  # PROBE_LABEL's value on the probe's container and its candidate image
# Prefect without an API URL starts a temporary server of its own for a client call (its "ephemeral mode"):
# in the probe's container (no network, a read-only home) that fails after ~30 s. Off, a module that calls
# the API at import time (a Block.load at module level) fails at once, with Prefect's own message.
PROBE_ENVIRONMENT = {"PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false", "PREFECT_SERVER_EPHEMERAL_ENABLED": "false"}
# What an import error says when the module does work at import time that needs the network (see
# import_time_hint): Prefect's API (a block loaded, a variable read) or any other connection.
_PREFECT_API_SIGNS = ("no prefect api url", "ephemeral prefect api", "prefect_api_url", "block document",
                      "unable to find block")
_CONNECTION_SIGNS = ("connection refused", "connecterror", "connectionerror", "name or service not known",
                     "temporary failure in name resolution", "network is unreachable", "could not connect",
                     "operationalerror", "timed out", "nodename nor servname")

# The container's command: it runs the script that arrives as the first line of stdin (a JSON string), so
# the command line holds nothing but this.
PROBE_BOOTSTRAP = "import json, sys; exec(json.loads(sys.stdin.readline()))"

# Runs inside the image with its own Python (the first `python` on its PATH), in the app directory.
# Flow modules may print on import: stdout of imports is sent to stderr and the result is one marked line.
_PROBE_SCRIPT = r'''
import contextlib, json, os, sys, traceback
sys.path.insert(0, os.getcwd())
try:  # while the host still works out the requests; an image without Prefect is reported per entry point
    with contextlib.redirect_stdout(sys.stderr):
        import prefect.flows
except Exception:
    pass
REQUESTS = json.loads(sys.stdin.readline())


def summarize(exc):
    inner = getattr(exc, "user_exc", None) or exc.__cause__ or exc
    text = f"{type(inner).__name__}: {inner}"
    return " ".join(text.split())[:500]


def load(entrypoint):
    """The flow at `entrypoint` and its schema, or the import error: each file runs once, however many
    deployments declare it (a thousand deployments over three flows import three files)."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            from prefect.flows import load_flow_from_entrypoint
            flow = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
        return flow, flow.parameters.model_dump(mode="json", exclude_unset=True), None
    except BaseException as exc:
        traceback.print_exc(file=sys.stderr)
        return None, None, summarize(exc)


def check(flow, params):
    try:
        with contextlib.redirect_stdout(sys.stderr):
            flow.validate_parameters(params)
        return ""
    except Exception as exc:
        return summarize(exc)


loaded, checked, results = {}, {}, []
for request in REQUESTS:
    entrypoint = request["entrypoint"]
    if entrypoint not in loaded:
        loaded[entrypoint] = load(entrypoint)
    flow, schema, error = loaded[entrypoint]
    result = {"entrypoint": entrypoint}
    if error is not None:
        result["error"] = error
        results.append(result)
        continue
    result["flow_name"] = flow.name
    result["parameter_schema"] = schema
    checks = []
    required = set(schema.get("required") or [])
    for params in request["parameter_sets"]:
        if not required <= set(params):
            checks.append(None)  # required parameters arrive with the run: the schema check covers the rest
            continue
        key = (entrypoint, json.dumps(params, sort_keys=True, default=str))
        if key not in checked:  # deployments that share a flow usually share their parameters too
            checked[key] = check(flow, params)
        checks.append(checked[key])
    result["parameter_checks"] = checks
    results.append(result)
print("__MARKER__" + json.dumps(results), flush=True)
'''


def import_time_hint(error: str) -> str | None:
    """The fix for an entry point that fails to import because its module does work at import time that
    needs Prefect's API or the network (the probe imports it with neither, as a deploy without them would);
    None when the error does not look like that."""
    lowered = error.lower()
    if any(sign in lowered for sign in _PREFECT_API_SIGNS):
        return ("the module calls Prefect's API at import time (a Block.load or Variable.get at module level?), "
                "and the probe imports it without one: move that call into the flow function or a task, which "
                "run with the API")
    if any(sign in lowered for sign in _CONNECTION_SIGNS):
        return ("the module opens a connection at import time (a database, an HTTP client), and the probe imports "
                "it without a network: open it inside the flow function or a task")
    return None


def script_line() -> bytes:
    """The first line the probe reads: its script (run by PROBE_BOOTSTRAP)."""
    return (json.dumps(_PROBE_SCRIPT.replace("__MARKER__", PROBE_MARKER)) + "\n").encode()


def requests_line(items: list[dict[str, Any]]) -> bytes:
    """The second line: what to ask (probe_requests)."""
    return (json.dumps(items) + "\n").encode()


def start_probe(client, image: str, app_dir: str) -> RunningProbe:
    """Start the probe container of `image` (no network, in `app_dir`: entry points are relative to it) and
    send it the script; it imports Prefect while the caller works out the requests."""
    import docker

    try:
        created = client.api.create_container(
            image, command=["-c", PROBE_BOOTSTRAP], entrypoint=["python"], stdin_open=True, network_disabled=True,
            working_dir=app_dir, labels={PROBE_LABEL: PROBE_PURPOSE}, environment=PROBE_ENVIRONMENT,
        )
    except docker.errors.ImageNotFound as exc:
        raise SlipwayError(f"image {image} is not in the local Docker engine",
                           f"run `{command('image')}` first") from exc
    except docker.errors.APIError as exc:
        raise SlipwayError(f"cannot start a container of {image}: {exc.explanation or exc}",
                           "check the Docker engine (`docker info`) and its free disk space") from exc
    probe = RunningProbe(client, image, app_dir, created["Id"])
    try:
        sock = client.api.attach_socket(probe.cid, params={"stdin": 1, "stream": 1})
        probe.stdin = getattr(sock, "_sock", sock)
        client.api.start(probe.cid)
        probe.send(script_line())
    except docker.errors.APIError as exc:  # e.g. no `python` on the image's PATH
        probe.close()
        raise SlipwayError(f"the entry-point probe cannot start in {image}: {exc.explanation or exc}",
                           f"the image needs a Python with prefect first on its PATH, and its content in "
                           f"{app_dir}") from exc
    except BaseException:
        probe.close()
        raise
    return probe


class RunningProbe:
    """A started probe container: `ask` once, or `close` (ask closes it too). Closing removes the container."""

    def __init__(self, client, image: str, app_dir: str, cid: str):
        self.client, self.image, self.app_dir, self.cid = client, image, app_dir, cid
        self.stdin: socket.socket | None = None
        self.closed = False

    def send(self, data: bytes) -> None:
        """To the container's stdin. A container that already exited (no Python in the image) is not an error
        here: its exit status and stderr say what happened, in `ask`."""
        try:
            assert self.stdin is not None
            self.stdin.sendall(data)
        except OSError:
            pass

    def ask(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the requests, wait for the container, and return one result per request."""
        try:
            self.send(requests_line(items))
            self._close_stdin()
            return self._answer()
        finally:
            self.close()

    def _answer(self) -> list[dict[str, Any]]:
        client, cid, image = self.client, self.cid, self.image
        try:
            status = client.api.wait(cid, timeout=PROBE_TIMEOUT_SECONDS)
        except HttpConnectionError as exc:  # docker-py's read timeout (requests' ReadTimeout)
            raise SlipwayError(f"importing the flows in {image} took longer than {PROBE_TIMEOUT_SECONDS}s",
                               "check for flow modules that do work at import time") from exc
        stdout = client.api.logs(cid, stdout=True, stderr=False).decode(errors="replace")
        deadline = time.monotonic() + 5
        while PROBE_MARKER not in stdout and status.get("StatusCode") == 0 and time.monotonic() < deadline:
            # dockerd 20.10 can answer `wait` before a short-lived container's output reaches its log.
            time.sleep(0.05)
            stdout = client.api.logs(cid, stdout=True, stderr=False).decode(errors="replace")
        stderr = client.api.logs(cid, stdout=False, stderr=True).decode(errors="replace")
        for line in stdout.splitlines():
            if line.startswith(PROBE_MARKER):
                return json.loads(line[len(PROBE_MARKER):])
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit status {status.get('StatusCode')}"
        raise SlipwayError(f"the entry-point probe failed in {image}: {last}",
                           f"the image needs a Python with prefect first on its PATH, and its content in "
                           f"{self.app_dir}")

    def _close_stdin(self) -> None:
        if self.stdin is None:
            return
        try:
            self.stdin.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.stdin.close()
        self.stdin = None

    def close(self) -> None:
        """Remove the container (a probe never asked ends here too: its stdin closes, its script stops)."""
        import docker

        if self.closed:
            return
        self.closed = True
        self._close_stdin()
        try:
            self.client.api.remove_container(self.cid, force=True)
        except docker.errors.APIError:
            pass


def probe_requests(declarations: Declarations) -> list[dict]:
    """What to ask the probe, per declared deployment: its entry point, and the parameter sets to check
    with the flow's own validation (the deployment's parameters, then each schedule's over them)."""
    return [{"entrypoint": d.entrypoint,
             "parameter_sets": [d.parameters] + [{**d.parameters, **s.parameters} for s in d.all_schedules
                                                 if s.parameters]}
            for d in declarations.deployments]


