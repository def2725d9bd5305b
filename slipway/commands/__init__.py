"""One module per verb: `add_arguments(parser, verb)` and `run(args, reporter)`.

A verb is arguments → one pipeline call → print (slipway/results.py): no logic of its own.
"""
from __future__ import annotations

import argparse

from slipway.output import Reporter
from slipway.pipeline import Workspace
from slipway.project.config import LOCAL_ENVIRONMENT, load_project


def workspace(args: argparse.Namespace, reporter: Reporter) -> Workspace:
    return Workspace(load_project(args.root), reporter)


def add_env_argument(parser: argparse.ArgumentParser, default: str = LOCAL_ENVIRONMENT) -> None:
    parser.add_argument("--env", default=default, metavar="ENV",
                        help=f"an environment of slipway.yaml{_known_environments(parser)} (default: {default})")


def _known_environments(parser: argparse.ArgumentParser) -> str:
    """`: local, kind, staging, prod` from the slipway.yaml beside the working directory, for --help; nothing
    when it cannot be read (the verb itself reports that)."""
    import yaml

    try:
        with open("slipway.yaml") as fh:
            names = sorted((yaml.safe_load(fh) or {}).get("environments") or {})
    except (OSError, yaml.YAMLError, AttributeError):
        return ""
    return f": {', '.join(names)}" if names else ""
