"""A Kubernetes stand-in for running the real prefect-kubernetes worker without a cluster.

No Kubernetes API server can be installed on the machines this project runs on (none is packaged in Debian,
on PyPI or on npm), so the Kubernetes path is exercised against:

- `apiserver`: an HTTP server speaking the Kubernetes REST and watch protocol for the resources the worker
  and its observer use, keeping objects in memory and recording every request;
- `admission`: what it refuses with HTTP 422 (an image not pinned by digest, a Job that fails strict schema
  validation);
- `kubelet`: the pod runner, playing the Job controller and the kubelet with the Docker engine;
- `helm`: the worker's command line and environment rendered from deploy/helm/values*.yaml as the
  prefect-worker chart renders them;
- `worker`: the real `prefect worker start --type kubernetes` as a process, from those values;
- `cluster`: the API, its admission and the pod runner started together, with a kubeconfig.

What this proves: the worker, from the chart's values, picks up slipway's flow runs, renders the pool's
template with its own code, sends a Job the API accepts, and the Pod made from it runs the flow from the
pinned digest as the template's user. What it does not prove: authentication, RBAC (deploy/helm/rbac.yaml is
created, never enforced), the real admission chain (Pod Security, quotas, webhooks), scheduling and node
placement, image pulls by a node's container runtime (containerd, pull secrets), networking between Pods
and Services, or the real API server's defaulting and field semantics.
"""
