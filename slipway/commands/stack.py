"""`python build.py up` / `down`: the local registry (localhost:5000) and Prefect server (127.0.0.1:4200)."""
from __future__ import annotations

from slipway.build.engine import docker_client
from slipway.project.config import load_project
from slipway.stack import stack_down, stack_up


def add_arguments(parser, verb):
    if verb == "up":
        parser.add_argument("--recreate", action="store_true",
                            help="replace the containers (e.g. after a base image change); data volumes are kept")


def run(args, reporter):
    client = docker_client()
    if args.verb == "up":
        result = stack_up(client, load_project(args.root), reporter, recreate=args.recreate)
        human = (f"registry: {result['registry']['address']} ({result['registry']['status']})\n"
                 f"prefect:  {result['prefect']['api_url']} ({result['prefect']['status']})\n"
                 f"UI:       http://127.0.0.1:{result['prefect']['port']}")
    else:
        result = stack_down(client, reporter)
        human = "\n".join(f"{role}: {status}" for role, status in result.items())
    reporter.result(result, human=human)
