"""The real prefect-kubernetes worker as a process, started as the Helm chart starts it (helm.py), pointed
at a stand-in cluster's kubeconfig and a Prefect server.

The environment is this process's without its PREFECT_* and KUBERNETES_* variables (the worker must not load
the in-cluster config, nor a developer's Prefect profile), plus the chart's variables, PREFECT_API_URL, HOME
(a scratch directory, as the chart gives the worker one) and KUBECONFIG. PREFECT_HOME is left unset, as in the
chart: the worker copies every PREFECT_* setting of its own into each Job's environment.
"""
from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from tests.kit.kubernetes.helm import HelmWorker

START_SECONDS = 90


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, log: Path, argv: list[str]):
        self.process, self.log, self.argv = process, log, argv

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_worker(helm: HelmWorker, prefect: Path, api_url: str, kubeconfig: Path, workdir: Path) -> WorkerProcess:
    """Start `prefect worker start ...` and return once it says it started (it polls its pool from then on)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "KUBERNETES_"))}
    env.update(helm.env)
    env.update(PREFECT_API_URL=api_url, HOME=str(workdir / "worker-home"), KUBECONFIG=str(kubeconfig))
    (workdir / "worker-home").mkdir(parents=True, exist_ok=True)
    log = workdir / f"worker-{uuid.uuid4().hex[:6]}.log"
    argv = helm.argv(str(prefect))
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    worker = WorkerProcess(process, log, argv)
    deadline = time.monotonic() + START_SECONDS
    while "started!" not in worker.output(100_000):
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"the worker did not start: {' '.join(argv)}\n{worker.output()}")
        time.sleep(0.5)
    return worker
