"""One module per verb: `add_arguments(parser, verb)` and `run(args, reporter)`.

A verb is arguments → one pipeline call → print (slipway/results.py): no logic of its own.
"""
from __future__ import annotations

import argparse
import os

from slipway.output import Reporter
from slipway.pipeline import Workspace
from slipway.project.config import LOCAL_ENVIRONMENT, load_project


def workspace(args: argparse.Namespace, reporter: Reporter) -> Workspace:
    return Workspace(load_project(args.root), reporter)


def add_message_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--message", metavar="TEXT", default=os.environ.get("SLIPWAY_MESSAGE") or None,
                        help="why: recorded with the release in the environment's history (`releases --env ENV`); "
                             "default: $SLIPWAY_MESSAGE (`make deploy MESSAGE=...`)")


def env_flag(name: str) -> bool:
    """A yes/no setting from the environment (`make ... NO_VERIFY=1` exports it): 1, true or yes."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def add_no_verify_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        default=not env_flag("SLIPWAY_NO_VERIFY"),
                        help="skip the environment's verify: smoke run (recorded in the history as skipped); "
                             "default: run it when slipway.yaml has one ($SLIPWAY_NO_VERIFY=1, `NO_VERIFY=1`, skips)")


def add_prune_argument(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--prune", action="store_true",
                        help="delete this environment's deployments the release no longer declares (default: "
                             "pause them)" + (" — shown, nothing written" if verb == "plan" else ""))


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
