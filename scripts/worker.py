"""`make worker [ENV=local]`: a Prefect worker serving the environment's work pool, in the foreground.

The example's `local` environment verifies every release with a flow run (slipway.yaml `verify:`), and a run
starts only when a worker serves the pool: run this in a second terminal before `make image deploy` (or
deploy with NO_VERIFY=1). `make demo` starts its own. Ctrl-C stops it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # slipway/ lives beside scripts/


def main(environment: str) -> None:
    from slipway.errors import SlipwayError
    from slipway.project.config import load_project

    try:
        env = load_project(ROOT).environment(environment)
    except SlipwayError as exc:
        sys.exit(f"error: {exc}")
    worker_env = {**os.environ, "PREFECT_API_URL": env.prefect.api_url}
    # The credential comes from the variable slipway.yaml names, through the environment (never argv).
    for name, setting in ((env.prefect.api_key_env, "PREFECT_API_KEY"),
                          (env.prefect.auth_string_env, "PREFECT_API_AUTH_STRING")):
        if name and os.environ.get(name):
            worker_env[setting] = os.environ[name]
    prefect = str(Path(sys.executable).parent / "prefect")
    print(f"==> a Prefect {env.work_pool.type} worker on pool {env.work_pool.name} ({env.prefect.api_url})",
          flush=True)
    os.execve(prefect, [prefect, "worker", "start", "--pool", env.work_pool.name, "--type", env.work_pool.type],
              worker_env)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "local")
