"""`slipway init`: slipway's files for an existing repository (slipway.yaml, Dockerfile.base, the runtime
lock, CI workflows), read from what it has; never overwrites a file, and run twice changes nothing.
`--upgrade`: the files init wrote brought to this slipway's template, the team's edits kept (copier's
three-way merge). `--lock`: the runtime lock resolved again from requirements/runtime.in."""
from __future__ import annotations

import sys

from slipway import pipeline, results
from slipway.errors import SlipwayError
from slipway.init.answers import NO_DBT


def add_arguments(parser, verb):
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--upgrade", action="store_true",
                      help="bring the files init wrote forward to this slipway's template, keeping your edits")
    mode.add_argument("--lock", action="store_true",
                      help="resolve requirements/runtime.txt again from requirements/runtime.in")
    parser.add_argument("--yes", action="store_true",
                        help="answer every question with its default (for CI and scripts)")
    parser.add_argument("--name", help="the image's name (default: the repository folder's name)")
    parser.add_argument("--dbt", metavar="DIR", help=f"the dbt project to put in the image, or {NO_DBT} "
                        "(default: the one the repository has; asked when it has several)")
    parser.add_argument("--install-from", metavar="SPEC",
                        help="what the CI workflows install slipway from: a Git URL with a tag or a wheel URL "
                             "(default: slipway==<this version>)")


def asker(assume_yes: bool):
    """A question on a terminal, its default with --yes; elsewhere (CI) an error naming --yes."""
    def ask(question: str, choices: list[str], default: str) -> str:
        if assume_yes:
            return default
        if not sys.stdin.isatty():
            raise SlipwayError(f"{question} ({', '.join(choices)}) needs an answer and there is no terminal",
                               f"pass --yes to take the default ({default}), or --dbt")
        while True:
            sys.stderr.write(f"{question} [{'/'.join(choices)}] (default {default}): ")
            sys.stderr.flush()
            reply = sys.stdin.readline().strip() or default
            if reply in choices:
                return reply
    return ask


def run(args, reporter):
    root = args.root.resolve()
    if args.upgrade:
        done = pipeline.upgrade_repository(root, reporter)
        reporter.result(results.upgrade_json(done), human=results.upgrade_human(done))
        return 1 if done.conflicts else 0
    if args.lock:
        pipeline.relock(root, reporter)
        reporter.result({"lock": "requirements/runtime.txt"}, human="resolved requirements/runtime.txt")
        return 0
    done = pipeline.init_repository(root, asker(args.yes), reporter, name=args.name, dbt=args.dbt,
                                    install_from=args.install_from)
    reporter.result(results.init_json(done), human=results.init_human(done))
    return 0
