"""`python build.py <verb>`: one module per verb under slipway/commands/, each with `add_arguments` and `run`.

Every verb shares --json and the exit contract: 0 on success, 1 with a single `error: ...` line on stderr
when a SlipwayError (bad input, unreachable service) stops it, before anything half-done is left behind.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from slipway.errors import SlipwayError
from slipway.output import Reporter

# verb -> (module under slipway.commands, one-line help). Order is the release's data flow.
VERBS = {
    "base": ("base", "build (or reuse) the runtime base image from Dockerfile.base"),
    "image": ("image", "build HEAD's release image, tagged with its Git SHA"),
    "push": ("push", "push HEAD's image to an environment's registry and print its digest"),
    "plan": ("plan", "show what deploy would change in an environment's Prefect, writing nothing"),
    "deploy": ("deploy", "register every deployment pinned to HEAD's image digest"),
    "manifests": ("manifests", "print each deployment's rendered Kubernetes Job manifest"),
    "releases": ("releases", "list the releases in an environment's registry and which one is live"),
    "rollback": ("rollback", "redeploy an older release's image and configuration, without a rebuild"),
    "up": ("stack", "start the local registry and Prefect server (the embedded default)"),
    "down": ("stack", "stop the local registry and Prefect server"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every verb; with `only`, just that verb's module is imported (the others stay unloaded:
    a release step should not pay for boto3 or prefect-kubernetes it does not use)."""
    parser = argparse.ArgumentParser(prog="build.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout (for CI)")
        p.add_argument("--root", default=os.environ.get("SLIPWAY_ROOT", "."), type=Path,
                       help="repository root holding slipway.yaml (default: current directory)")
        if only in (None, verb):
            module = importlib.import_module(f"slipway.commands.{module_name}")
            module.add_arguments(p, verb)
    return parser


def chosen_verb(argv: list[str]) -> str | None:
    """The verb named on the command line (the first word that is one), None for `--help` and typos."""
    return next((word for word in argv if word in VERBS), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = chosen_verb(argv)
    args = build_parser(verb if verb is not None and "-h" not in argv and "--help" not in argv else None
                        ).parse_args(argv)
    reporter = Reporter(json_mode=args.json, verb=args.verb, environment=getattr(args, "env", None))
    module = importlib.import_module(f"slipway.commands.{VERBS[args.verb][0]}")
    try:
        module.run(args, reporter)
    except SlipwayError as exc:
        sys.stderr.write(f"error: {exc.line()}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    return 0
