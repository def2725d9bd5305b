"""`python build.py push --env ENV [--json]`: push HEAD's image and print the digest the registry holds."""
from __future__ import annotations

from slipway.config import LOCAL_ENVIRONMENT, load_project
from slipway.push import push_head


def add_arguments(parser, verb):
    parser.add_argument("--env", default=LOCAL_ENVIRONMENT,
                        help=f"environment in slipway.yaml (default: {LOCAL_ENVIRONMENT})")


def run(args, reporter):
    project = load_project(args.root)
    result = push_head(project, args.env, reporter)
    reporter.result(result, human=f"{result['reference']}\ntags: {', '.join(result['tags'])}")
