"""A Kubernetes API server stand-in: the REST and watch protocol over HTTP, objects kept in memory.

It serves what the prefect-kubernetes worker and its observer (kopf) call, read from their source:
discovery (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`), then for every resource in
RESOURCES: list (with `labelSelector` and `fieldSelector` equality), watch (`?watch=true`, from a
`resourceVersion` or from the current state, `timeoutSeconds`), get, create (`generateName`, uid,
resourceVersion, creationTimestamp; the namespace must exist; a name is unique), merge/JSON patch (also of
the `status` subresource), delete (a Job's Pods with it, unless orphaned), and `pods/<name>/log` from a log
source the pod runner registers. Errors are `Status` objects with the API server's codes and reasons.

Every request is recorded (`requests`), with its parsed JSON body and the status answered, so a test can
read the Job exactly as the worker sent it, before the server added anything.

What it is not: there is no authentication, no RBAC (every caller may do everything), no defaulting of
fields, no admission plugins beyond the `admission` callables a test passes (kit/kubernetes/admission.py),
no scheduler and no controllers (kit/kubernetes/kubelet.py plays the Job controller and the kubelet).
Strategic merge patch is applied as a JSON merge patch (no list merge keys).

The server runs on its own event loop in a background thread, on a random loopback port; objects are only
changed on that loop. `call(coro)` runs a coroutine there from another thread.
"""
from __future__ import annotations

import asyncio
import copy
import json
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonpatch
from aiohttp import web


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        return f"{self.group or 'core'}/{self.plural}"


RESOURCES = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, subresources=("status",)),
    Resource("", "v1", "pods", "Pod", subresources=("log", "status")),
    Resource("", "v1", "events", "Event"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("batch", "v1", "jobs", "Job", subresources=("status",)),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
)
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
_NAME_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes' generateName draws from


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An API error, answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details, "code": self.code}


@dataclass
class Recorded:
    """One request as it arrived, and what it was answered."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # parsed JSON, or None
    status: int | None = None  # None while it is being answered (a watch: until the stream ends)

    @property
    def verb(self) -> str:
        watching = parse_bool(self.query.get("watch"))
        return {"GET": "watch" if watching else "get", "POST": "create", "PATCH": "patch", "PUT": "update",
                "DELETE": "delete"}.get(self.method, self.method.lower())


# An admission callable sees (resource, object, namespace) before an object is created and raises
# ApiError to refuse it.
Admission = Callable[[Resource, dict, str | None], None]
# Called on the server's loop after every change: (event type, resource, object).
Listener = Callable[[str, Resource, dict], Awaitable[None] | None]
# (namespace, pod, container, tail_lines) -> the container's log, or None when it has none.
LogSource = Callable[[str, str, str | None, int | None], str | None]


@dataclass
class _Event:
    version: int
    type: str
    resource: Resource
    obj: dict


@dataclass
class ApiServer:
    admission: list[Admission] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    log_source: LogSource | None = None

    def __post_init__(self):
        self._objects: dict[tuple[str, str | None, str], dict] = {}  # (resource key, namespace, name)
        self._events: list[_Event] = []
        self._version = 0
        self._listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        """Serve on a random loopback port from a background thread; returns once it listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve():
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

        self._thread = threading.Thread(target=serve, name="kubernetes-api-stand-in", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self

    async def _start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A watch stream stays open: shutdown must not wait for it.
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Close the listener and every open watch, cancel what still runs on the loop, end the thread."""
        if self._loop is None or not self._loop.is_running():
            return

        async def shutdown():
            await self._runner.cleanup()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(shutdown(), timeout=20)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(20)

    def call(self, coro: Awaitable, timeout: float = 30):
        """Run a coroutine on the server's loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- reading state from tests (any thread) ---------------------------------------------------------------

    def objects(self, plural: str, namespace: str | None = None) -> list[dict]:
        async def read():
            return [copy.deepcopy(o) for (key, ns, _), o in sorted(self._objects.items())
                    if key.endswith("/" + plural) and (namespace is None or ns == namespace)]
        return self.call(read())

    def created(self, plural: str) -> list[Recorded]:
        """The answered create requests for a resource, in order, refused ones included."""
        return [r for r in list(self.requests) if r.method == "POST" and r.status is not None
                and r.path.rstrip("/").endswith("/" + plural)]

    # -- the store (server loop only) ------------------------------------------------------------------------

    async def create(self, resource: Resource, namespace: str | None, body: dict) -> dict:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was not a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            if meta.get("namespace") not in (None, namespace):
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            if ("core/namespaces", None, namespace) not in self._objects:
                raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                               {"name": namespace, "kind": "namespaces"})
            meta["namespace"] = namespace
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f"{resource.kind} is invalid: metadata.name: Required value: "
                               "name or generateName is required")
            meta["name"] = meta["generateName"] + "".join(secrets.choice(_NAME_SUFFIX) for _ in range(5))
        obj.setdefault("apiVersion", resource.group_version)
        obj.setdefault("kind", resource.kind)
        for admit in self.admission:
            admit(resource, obj, namespace)
        key = (resource.key, namespace if resource.namespaced else None, meta["name"])
        if key in self._objects:
            raise ApiError(409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists',
                           {"name": meta["name"], "kind": resource.plural})
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        if resource.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        await self._store("ADDED", resource, key, obj)
        if resource.plural == "namespaces":  # the service-account controller's part
            await self.create(BY_PATH[("", "v1", "serviceaccounts")], meta["name"], {"metadata": {"name": "default"}})
        return copy.deepcopy(obj)

    async def patch(self, resource: Resource, namespace: str | None, name: str, patch: Any,
                    content_type: str = "application/merge-patch+json") -> dict:
        key = self._key(resource, namespace, name)
        current = self._objects[key]
        if content_type.startswith("application/json-patch"):
            updated = jsonpatch.apply_patch(current, patch)
        else:  # merge patch; a strategic merge patch is treated as one (no list merge keys here)
            updated = merge_patch(current, patch)
        updated["metadata"]["uid"] = current["metadata"]["uid"]
        await self._store("MODIFIED", resource, key, updated)
        return copy.deepcopy(updated)

    async def delete(self, resource: Resource, namespace: str | None, name: str, propagation: str | None) -> dict:
        key = self._key(resource, namespace, name)
        obj = self._objects.pop(key)
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        await self._publish("DELETED", resource, obj)
        if resource.plural == "jobs" and propagation != "Orphan":  # the garbage collector's part
            pods = BY_PATH[("", "v1", "pods")]
            uid = obj["metadata"]["uid"]
            for (rkey, ns, pod_name), pod in list(self._objects.items()):
                owners = pod["metadata"].get("ownerReferences") or []
                if rkey == pods.key and any(o.get("uid") == uid for o in owners):
                    await self.delete(pods, ns, pod_name, None)
        return copy.deepcopy(obj)

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict:
        return copy.deepcopy(self._objects[self._key(resource, namespace, name)])

    def _key(self, resource: Resource, namespace: str | None, name: str):
        key = (resource.key, namespace if resource.namespaced else None, name)
        if key not in self._objects:
            raise ApiError(404, "NotFound", f'{resource.plural} "{name}" not found',
                           {"name": name, "kind": resource.plural})
        return key

    async def _store(self, kind: str, resource: Resource, key, obj: dict) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self._objects[key] = obj
        await self._publish(kind, resource, obj)

    async def _publish(self, kind: str, resource: Resource, obj: dict) -> None:
        self._events.append(_Event(self._version, kind, resource, copy.deepcopy(obj)))
        async with self._changed:
            self._changed.notify_all()
        for listener in self._listeners:
            result = listener(kind, resource, copy.deepcopy(obj))
            if asyncio.iscoroutine(result):
                await result

    def _matching(self, resource: Resource, namespace: str | None, query) -> list[dict]:
        return [copy.deepcopy(o) for (key, ns, _), o in sorted(self._objects.items())
                if key == resource.key and (namespace is None or ns == namespace) and selected(o, query)]

    # -- HTTP ----------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = Recorded(request.method, request.path, dict(request.query), body)
        self.requests.append(record)
        try:
            response = await self._route(request, body)
        except ApiError as exc:
            response = web.json_response(exc.status(), status=exc.code)
        except jsonpatch.JsonPatchException as exc:
            response = web.json_response(ApiError(422, "Invalid", str(exc)).status(), status=422)
        record.status = response.status
        return response

    async def _route(self, request: web.Request, body: Any) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        discovery = parts == ["version"] or parts[:1] == ["api"] and len(parts) <= 2 \
            or parts[:1] == ["apis"] and len(parts) <= 3
        if request.method == "GET" and discovery:
            return web.json_response(self._discovery(parts))
        resource, namespace, name, sub = self._parse(parts)
        query = request.query
        if request.method == "GET" and parse_bool(query.get("watch")):
            return await self._watch(request, resource, namespace, name)
        if request.method == "GET" and name is None:
            items = self._matching(resource, namespace, query)
            return web.json_response({"kind": f"{resource.kind}List", "apiVersion": resource.group_version,
                                      "metadata": {"resourceVersion": str(self._version)}, "items": items})
        if request.method == "GET" and sub == "log":
            return self._log(resource, namespace, name, query)
        if request.method == "GET":
            return web.json_response(self.get(resource, namespace, name))
        if request.method == "POST" and name is None:
            return web.json_response(await self.create(resource, namespace, body), status=201)
        if request.method == "PATCH" and name is not None:
            return web.json_response(await self.patch(resource, namespace, name, body,
                                                      request.headers.get("Content-Type", "")))
        if request.method == "DELETE" and name is not None:
            propagation = query.get("propagationPolicy") or (body or {}).get("propagationPolicy")
            return web.json_response(await self.delete(resource, namespace, name, propagation))
        raise ApiError(405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}")

    @staticmethod
    def _parse(parts: list[str]) -> tuple[Resource, str | None, str | None, str | None]:
        if parts[:1] == ["api"]:
            group, version, rest = "", parts[1] if len(parts) > 1 else "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) > 2:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":  # /namespaces/<ns>/<plural>...
            namespace, rest = rest[1], rest[2:]
        resource = BY_PATH.get((group, version, rest[0] if rest else ""))
        if resource is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in resource.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return resource, namespace, name, sub

    def _discovery(self, parts: list[str]) -> dict:
        if parts == ["version"]:
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.0-slipway-stand-in", "gitCommit": "",
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "none",
                    "compiler": "none", "platform": "linux/amd64"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        groups = sorted({r.group for r in RESOURCES if r.group})
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group(g) for g in groups]}
        if parts[0] == "apis" and len(parts) == 2:
            if parts[1] not in groups:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(parts[1])}
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        listed = [r for r in RESOURCES if r.group == group and r.version == version]
        if not listed:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        resources = []
        for r in listed:
            resources.append({"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                              "kind": r.kind, "verbs": VERBS})
            resources += [{"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced,
                           "kind": r.kind, "verbs": ["get", "patch", "update"]} for s in r.subresources]
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": listed[0].group_version,
                "resources": resources}

    @staticmethod
    def _group(name: str) -> dict:
        version = {"groupVersion": f"{name}/v1", "version": "v1"}
        return {"name": name, "versions": [version], "preferredVersion": version}

    def _log(self, resource: Resource, namespace: str | None, name: str, query) -> web.Response:
        self.get(resource, namespace, name)  # 404 for a pod that does not exist
        if parse_bool(query.get("previous")):  # no container here is ever restarted
            raise ApiError(400, "BadRequest", f'previous terminated container "{query.get("container")}" in pod '
                           f'"{name}" not found')
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        text = self.log_source(namespace, name, query.get("container"), tail) if self.log_source else None
        if text is None:
            raise ApiError(400, "BadRequest", f'container in pod "{name}" is waiting to start')
        return web.Response(text=text, content_type="text/plain")

    async def _watch(self, request: web.Request, resource: Resource, namespace: str | None,
                     name: str | None) -> web.StreamResponse:
        query = dict(request.query)
        if name is not None:
            query["fieldSelector"] = f"metadata.name={name}"
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        since = request.query.get("resourceVersion")
        timeout = float(request.query["timeoutSeconds"]) if request.query.get("timeoutSeconds") else None
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        if since in (None, "", "0"):  # the current state first, as ADDED events
            position = len(self._events)
            for obj in self._matching(resource, namespace, query):
                await response.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
        else:
            position = next((i for i, e in enumerate(self._events) if e.version > int(since)), len(self._events))
        try:
            while True:
                for event in self._events[position:]:
                    position += 1
                    if event.resource == resource and (namespace is None or event.obj["metadata"].get(
                            "namespace") == namespace) and selected(event.obj, query):
                        await response.write(json.dumps({"type": event.type, "object": event.obj}).encode() + b"\n")
                wait = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if wait is not None and wait <= 0:
                    break
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait_for(lambda seen=position: len(self._events) > seen), wait)
                    except TimeoutError:
                        break
        except (ConnectionError, asyncio.CancelledError):  # the client went away, or shutdown
            return response
        await response.write_eof()
        return response


# -- query parameters, selectors and patches ------------------------------------------------------------

def parse_bool(value: str | None) -> bool:
    """A boolean query parameter as the API server (Go's strconv.ParseBool) reads it: clients send
    `true` (kopf) or `True` (kubernetes-asyncio)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def selected(obj: dict, query) -> bool:
    """Does the object match the request's labelSelector and fieldSelector (equality, inequality, existence)?"""
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (query.get("labelSelector") or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term.strip() not in labels:
            return False
    for term in filter(None, (query.get("fieldSelector") or "").split(",")):
        negate = "!=" in term
        path, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        found: Any = obj
        for part in path.strip().split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if (str(found) == value.strip()) == negate:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
