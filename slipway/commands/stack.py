"""`slipway up` / `down`: the local registry and Prefect server on the ports of slipway.yaml's `local`
environment (localhost:5000 and 127.0.0.1:4200 in the example), the server on SQLite (default) or PostgreSQL
(`up --db postgres`)."""
from __future__ import annotations

from slipway.image.engine import docker_client
from slipway.project.config import load_project
from slipway.stack import DATABASES, local_stack, stack_down, stack_up


def add_arguments(parser, verb):
    if verb == "up":
        parser.add_argument("--recreate", action="store_true",
                            help="replace the containers (e.g. after a base image change); data volumes are kept")
        parser.add_argument("--db", choices=DATABASES, default=None,
                            help="the Prefect server's database (default: the one the existing server uses, "
                                 "sqlite for a new one); switching keeps both databases' data, copies nothing")


def run(args, reporter):
    if args.verb == "up":
        project = load_project(args.root)
        stack = local_stack(project)  # a slipway.yaml `up` cannot serve fails before the engine is touched
        result = stack_up(docker_client(), project, reporter, recreate=args.recreate, database=args.db,
                          stack=stack)
        prefect = result["prefect"]
        switched = f", switched from {prefect['switched_from']}" if prefect.get("switched_from") else ""
        human = (f"registry: {result['registry']['address']} ({result['registry']['status']})\n"
                 f"prefect:  {prefect['api_url']} ({prefect['status']}, on {prefect['database']}{switched})\n"
                 f"UI:       http://127.0.0.1:{prefect['port']}")
    else:
        result = stack_down(docker_client(), reporter)
        human = "\n".join(f"{role}: {status}" for role, status in result.items())
    reporter.result(result, human=human)
