"""The pod runner: plays the Job controller and the kubelet of the stand-in API with the Docker engine.

For each Job created in the API (kit/kubernetes/apiserver.py):
1. the Job controller's part: the Pod is created from the Job's template (`generateName: <job>-`, the
   `job-name` / `controller-uid` labels, an owner reference), through the API's own create, so admission
   applies; a template whose service account does not exist in the namespace gets no Pod, only a
   `FailedCreate` event, as the ServiceAccount admission plugin would have it;
2. the kubelet's part: the image is pulled by exactly the reference given, as a fresh node would (an image
   counts as present only once this runner pulled it, so `IfNotPresent` still pulls on first use), the
   user is resolved from the security context (container over pod, else the image's USER) and a
   `runAsNonRoot` pod that would run as uid 0 is not started (`CreateContainerConfigError`, the kubelet's
   own message); then one Docker container is started with the container's command (entrypoint), args,
   env (plain values, Secret references), working directory, uid:gid, fsGroup, dropped capabilities,
   no-new-privileges, read-only root, emptyDir volumes (tmpfs), CPU and memory limits;
3. the Pod's phase (Pending, Running, Succeeded/Failed with the container state) and the Job's status
   (active, then succeeded or failed with its Complete/Failed condition) are written back, each change a
   watch event, so the worker's observer sees the run start and finish as on a cluster.

Not modelled: scheduling (every Pod lands at once on one node), retries (`backoffLimit` beyond the first
Pod; the repo's template sets 0), restarts, init and sidecar containers (a Pod must have one container),
probes, `ttlSecondsAfterFinished`, node selectors, tolerations, resource *requests* (limits are applied).

`network_mode` is the container's network: "host" lets the flow run reach a Prefect server and registry
listening on this machine's loopback, as the worker's PREFECT_API_URL names them.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from tests.kit.kubernetes.apiserver import BY_PATH, ApiError, ApiServer, now

log = logging.getLogger(__name__)

JOBS = BY_PATH[("batch", "v1", "jobs")]
PODS = BY_PATH[("", "v1", "pods")]
EVENTS = BY_PATH[("", "v1", "events")]
SECRETS = BY_PATH[("", "v1", "secrets")]
SERVICE_ACCOUNTS = BY_PATH[("", "v1", "serviceaccounts")]
NODE = "stand-in-node"
POD_LABEL = "io.slipway.kit.pod"  # <namespace>/<pod> of the container that runs it


class ContainerConfigError(Exception):
    """What the kubelet reports as CreateContainerConfigError: the container is not started."""


@dataclass
class StartedContainer:
    """A container the runner started for a Pod, as the engine created it."""

    namespace: str
    pod: str
    job: str
    container_id: str
    image: str  # exactly the reference the engine was asked to run
    user: str | None
    exit_code: int | None = None


def parse_quantity(value: Any) -> float:
    """A Kubernetes resource quantity ('250m', '1', '512Mi', '2Gi', '1G') as a number."""
    text = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9,
                "T": 1e12}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", text)
    if not match or match.group(2) not in ("", *suffixes):
        raise ContainerConfigError(f"invalid quantity {text!r}")
    return float(match.group(1)) * suffixes.get(match.group(2), 1)


def run_as(pod_spec: dict, container: dict, image_user: str) -> str | None:
    """The Docker `user` for the container (None: the image's own).

    The kubelet's rules: the container's securityContext wins over the pod's; without runAsUser the image's
    USER applies; with runAsNonRoot a uid 0 (or a user name it cannot check) is refused."""
    pod_sc, sc = pod_spec.get("securityContext") or {}, container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    if uid is not None:
        if non_root and uid == 0:
            raise ContainerConfigError("container's runAsUser breaks non-root policy")
        return f"{uid}:{gid}" if gid is not None else str(uid)
    name, _, group = (image_user or "0").partition(":")
    if not name.isdigit():
        if non_root:
            raise ContainerConfigError(f"container has runAsNonRoot and image has non-numeric user ({name}), "
                                       "cannot verify user is non-root")
        return f"{name}:{gid}" if gid is not None else None
    if non_root and int(name) == 0:
        raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    group = str(gid) if gid is not None else group
    return f"{name}:{group}" if group else name


class PodRunner:
    def __init__(self, api: ApiServer, engine, network_mode: str = "host", labels: dict[str, str] | None = None):
        self.api, self.engine, self.network_mode = api, engine, network_mode
        self.labels = dict(labels or {})  # on every container it starts (the kit's clean-up labels)
        self.started: list[StartedContainer] = []
        self.pulled: list[str] = []  # image references pulled, in order
        self.errors: list[str] = []  # the runner's own failures (a stand-in bug, not a cluster outcome)
        self._containers: dict[tuple[str, str], str] = {}  # (namespace, pod) -> container id
        self._tasks: set[asyncio.Task] = set()
        api.on_change(self._on_change)
        api.log_source = self._log

    # -- reacting to the API -------------------------------------------------------------------------------

    def _on_change(self, kind: str, resource, obj: dict) -> None:
        if resource is JOBS and kind == "ADDED":
            self._spawn(self._run_job(obj))
        elif resource is PODS and kind == "DELETED":
            container_id = self._containers.get((obj["metadata"]["namespace"], obj["metadata"]["name"]))
            if container_id:
                self._spawn(asyncio.to_thread(self._stop, container_id))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_job(self, job: dict) -> None:
        meta = job["metadata"]
        try:
            pod = await self._create_pod(job)
            if pod is not None:
                await self._run_pod(job, pod)
        except ApiError as exc:
            if exc.code != 404:  # 404: the Job or Pod was deleted meanwhile (a cancelled flow run)
                self.errors.append(f"{meta['namespace']}/{meta['name']}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - recorded for the test to show, never swallowed silently
            log.exception("pod runner failed on Job %s/%s", meta["namespace"], meta["name"])
            self.errors.append(f"{meta['namespace']}/{meta['name']}: {type(exc).__name__}: {exc}")

    # -- the Job controller ----------------------------------------------------------------------------------

    async def _create_pod(self, job: dict) -> dict | None:
        meta, template = job["metadata"], copy.deepcopy(job["spec"]["template"])
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        spec = template.get("spec") or {}
        account = spec.get("serviceAccountName") or "default"
        try:
            self.api.get(SERVICE_ACCOUNTS, namespace, account)
        except ApiError:
            await self._event(job, "Warning", "FailedCreate",
                              f'Error creating: pods "{name}-" is forbidden: error looking up service account '
                              f'{namespace}/{account}: serviceaccount "{account}" not found')
            return None
        tmeta = template.get("metadata") or {}
        labels = {**(tmeta.get("labels") or {}), "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid,
                  "batch.kubernetes.io/job-name": name, "job-name": name}
        body = {"metadata": {"generateName": f"{name}-", "labels": labels,
                             "annotations": tmeta.get("annotations") or {},
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                                                  "controller": True, "blockOwnerDeletion": True}]},
                "spec": {**spec, "nodeName": NODE}, "status": {"phase": "Pending"}}
        try:
            pod = await self.api.create(PODS, namespace, body)
        except ApiError as exc:
            await self._event(job, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            return None
        await self._event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        await self.api.patch(JOBS, namespace, name, {"status": {"active": 1, "ready": 0, "startTime": now()}})
        return pod

    async def _finish_job(self, job: dict, succeeded: bool) -> None:
        meta = job["metadata"]
        status: dict[str, Any] = {"active": None, "ready": 0}
        if succeeded:
            status.update(succeeded=1, completionTime=now(),
                          conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": now()}])
        else:
            status.update(failed=1, conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                 "message": "Job has reached the specified backoff limit",
                                                 "lastTransitionTime": now()}])
        await self.api.patch(JOBS, meta["namespace"], meta["name"], {"status": status})
        await self._event(job, "Normal" if succeeded else "Warning",
                          "Completed" if succeeded else "BackoffLimitExceeded",
                          "Job completed" if succeeded else "Job has reached the specified backoff limit")

    # -- the kubelet -----------------------------------------------------------------------------------------

    async def _run_pod(self, job: dict, pod: dict) -> None:
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        spec = pod["spec"]
        containers = spec.get("containers") or []
        container = containers[0]
        image = container["image"]

        async def waiting(reason: str, message: str) -> None:
            await self._pod_status(pod, "Pending", {"waiting": {"reason": reason, "message": message}}, image)
            await self._event(pod, "Warning", "Failed", f"Error: {message}" if reason != "ErrImagePull" else message)

        await self._pod_status(pod, "Pending", {"waiting": {"reason": "ContainerCreating"}}, image)
        await self._event(pod, "Normal", "Scheduled", f"Successfully assigned {namespace}/{name} to {NODE}")
        if len(containers) != 1 or spec.get("initContainers"):
            return await waiting("CreateContainerConfigError", "the stand-in kubelet runs single-container pods only")
        await self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
        try:
            pulled = await asyncio.to_thread(self._ensure_image, image, container.get("imagePullPolicy"))
        except DockerException as exc:
            return await waiting("ErrImagePull", f'Failed to pull image "{image}": {exc}')
        try:
            create = self._create_arguments(namespace, job, pod, container, pulled.attrs["Config"].get("User") or "")
        except ContainerConfigError as exc:
            return await waiting("CreateContainerConfigError", str(exc))
        created = await asyncio.to_thread(self.engine.containers.create, **create)
        self._containers[(namespace, name)] = created.id
        started = StartedContainer(namespace, name, job["metadata"]["name"], created.id, image, create.get("user"))
        self.started.append(started)
        await asyncio.to_thread(created.start)
        started_at = now()
        await self._event(pod, "Normal", "Started", f"Started container {container['name']}")
        await self._pod_status(pod, "Running", {"running": {"startedAt": started_at}}, image, created.id, ready=True)
        await self.api.patch(JOBS, namespace, job["metadata"]["name"], {"status": {"ready": 1}})
        result = await asyncio.to_thread(created.wait)
        started.exit_code = code = result.get("StatusCode", -1)
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started_at,
                      "finishedAt": now(), "containerID": f"docker://{created.id}"}
        await self._pod_status(pod, "Succeeded" if code == 0 else "Failed", {"terminated": terminated}, image,
                               created.id)
        await self._finish_job(job, code == 0)

    def _ensure_image(self, reference: str, policy: str | None):
        """The image by exactly `reference`, pulled unless this node already pulled it (or policy Never)."""
        if policy == "Never" or (policy != "Always" and reference in self.pulled):
            try:
                return self.engine.images.get(reference)
            except ImageNotFound as exc:
                if policy == "Never":
                    raise DockerException(f'Container image "{reference}" is not present with pull policy of '
                                          "Never") from exc
        image = self.engine.images.pull(reference)
        self.pulled.append(reference)
        return image

    def _create_arguments(self, namespace: str, job: dict, pod: dict, container: dict, image_user: str) -> dict:
        spec = pod["spec"]
        user = run_as(spec, container, image_user)
        pod_sc, sc = spec.get("securityContext") or {}, container.get("securityContext") or {}
        groups = [str(g) for g in ([pod_sc["fsGroup"]] if "fsGroup" in pod_sc else []) +
                  list(pod_sc.get("supplementalGroups") or [])]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        tmpfs = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None or "emptyDir" not in volume:
                raise ContainerConfigError(f"volume {mount['name']!r}: the stand-in kubelet mounts emptyDir only")
            tmpfs[mount["mountPath"]] = "mode=1777"
        capabilities = sc.get("capabilities") or {}
        limits = (container.get("resources") or {}).get("limits") or {}
        create: dict[str, Any] = {
            "image": container["image"], "entrypoint": container.get("command"), "command": container.get("args"),
            "environment": self._environment(namespace, container), "working_dir": container.get("workingDir"),
            "user": user, "group_add": groups or None, "network_mode": self.network_mode, "tmpfs": tmpfs or None,
            "cap_drop": capabilities.get("drop"), "cap_add": capabilities.get("add"),
            "security_opt": ["no-new-privileges"] if sc.get("allowPrivilegeEscalation") is False else None,
            "read_only": bool(sc.get("readOnlyRootFilesystem")), "privileged": bool(sc.get("privileged")),
            "name": f"k8s-{pod['metadata']['name']}-{uuid.uuid4().hex[:6]}", "detach": True,
            "labels": {**self.labels, POD_LABEL: f"{namespace}/{pod['metadata']['name']}",
                       "io.slipway.kit.job": job["metadata"]["name"]},
        }
        if "memory" in limits:
            create["mem_limit"] = int(parse_quantity(limits["memory"]))
        if "cpu" in limits:
            create["nano_cpus"] = int(parse_quantity(limits["cpu"]) * 1e9)
        return {k: v for k, v in create.items() if v is not None}

    def _environment(self, namespace: str, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref is None:
                raise ContainerConfigError("envFrom: the stand-in kubelet reads Secrets only")
            data = self._secret(namespace, ref["name"], ref.get("optional"))
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            if "valueFrom" in item:
                ref = item["valueFrom"].get("secretKeyRef")
                if ref is None:
                    raise ContainerConfigError(f"env {item['name']}: the stand-in kubelet reads secretKeyRef only")
                data = self._secret(namespace, ref["name"], ref.get("optional"))
                if ref["key"] in data:
                    env[item["name"]] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise ContainerConfigError(f'couldn\'t find key {ref["key"]} in Secret {namespace}/{ref["name"]}')
            else:
                env[item["name"]] = item.get("value") or ""
        return env

    def _secret(self, namespace: str, name: str, optional: bool | None) -> dict[str, str]:
        try:
            secret = self.api.get(SECRETS, namespace, name)
        except ApiError:
            if optional:
                return {}
            raise ContainerConfigError(f'secret "{name}" not found') from None
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return {**data, **(secret.get("stringData") or {})}

    # -- writing status --------------------------------------------------------------------------------------

    async def _pod_status(self, pod: dict, phase: str, state: dict, image: str, container_id: str | None = None,
                          ready: bool = False) -> None:
        meta = pod["metadata"]
        status = {"phase": phase, "hostIP": "127.0.0.1", "startTime": meta["creationTimestamp"],
                  "conditions": [{"type": "PodScheduled", "status": "True"},
                                 {"type": "Ready", "status": "True" if ready else "False"}],
                  "containerStatuses": [{"name": pod["spec"]["containers"][0]["name"], "image": image,
                                         "imageID": image, "ready": ready, "restartCount": 0, "started": ready,
                                         "state": state,
                                         **({"containerID": f"docker://{container_id}"} if container_id else {})}]}
        await self.api.patch(PODS, meta["namespace"], meta["name"], {"status": status})

    async def _event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        await self.api.create(EVENTS, meta["namespace"], {
            "metadata": {"generateName": f"{meta['name']}."},
            "involvedObject": {"kind": obj.get("kind"), "apiVersion": obj.get("apiVersion"),
                               "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
            "type": type_, "reason": reason, "message": message, "count": 1,
            "firstTimestamp": now(), "lastTimestamp": now(), "source": {"component": "slipway-stand-in"}})

    # -- logs and clean-up -----------------------------------------------------------------------------------

    def _log(self, namespace: str, pod: str, container: str | None, tail: int | None) -> str | None:
        container_id = self._containers.get((namespace, pod))
        if container_id is None:
            return None
        with contextlib.suppress(NotFound, APIError):
            return self.engine.containers.get(container_id).logs(tail=tail or "all").decode(errors="replace")
        return None

    def _stop(self, container_id: str) -> None:
        with contextlib.suppress(NotFound, APIError):
            self.engine.containers.get(container_id).stop(timeout=5)

    def stop_containers(self) -> None:
        """Stop the containers still running (a Pod's container outliving its test)."""
        for started in self.started:
            if started.exit_code is None:
                self._stop(started.container_id)

    def remove_containers(self) -> None:
        """Remove every container this runner started (the kit's label clean-up also does, at session end)."""
        for started in self.started:
            with contextlib.suppress(NotFound, APIError):
                self.engine.containers.get(started.container_id).remove(force=True)
