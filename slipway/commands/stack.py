"""`python build.py up` / `down`: the local registry (localhost:5000) and Prefect server (127.0.0.1:4200),
the server on SQLite (default) or PostgreSQL (`up --db postgres`)."""
from __future__ import annotations

from slipway.image.engine import docker_client
from slipway.project.config import load_project
from slipway.stack import DATABASES, stack_down, stack_up


def add_arguments(parser, verb):
    if verb == "up":
        parser.add_argument("--recreate", action="store_true",
                            help="replace the containers (e.g. after a base image change); data volumes are kept")
        parser.add_argument("--db", choices=DATABASES, default=None,
                            help="the Prefect server's database (default: the one the existing server uses, "
                                 "sqlite for a new one); switching keeps both databases' data, copies nothing")


def run(args, reporter):
    client = docker_client()
    if args.verb == "up":
        result = stack_up(client, load_project(args.root), reporter, recreate=args.recreate, database=args.db)
        prefect = result["prefect"]
        switched = f", switched from {prefect['switched_from']}" if prefect.get("switched_from") else ""
        human = (f"registry: {result['registry']['address']} ({result['registry']['status']})\n"
                 f"prefect:  {prefect['api_url']} ({prefect['status']}, on {prefect['database']}{switched})\n"
                 f"UI:       http://127.0.0.1:{prefect['port']}")
    else:
        result = stack_down(client, reporter)
        human = "\n".join(f"{role}: {status}" for role, status in result.items())
    reporter.result(result, human=human)
