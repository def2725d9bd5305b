"""`build.py push --env ENV`: push HEAD's image and print the digest the registry holds."""
from slipway import pipeline, results
from slipway.commands import add_env_argument, workspace
from slipway.target import open_target


def add_arguments(parser, verb):
    add_env_argument(parser)


def run(args, reporter):
    ws = workspace(args, reporter)
    pushed = pipeline.push(ws, open_target(ws.project, args.env))
    reporter.result(results.push_json(pushed), human=results.push_human(pushed))
