"""`build.py releases --env ENV`: the releases in ENV's registry, newest first, and which one is live."""
import anyio

from slipway import pipeline, results
from slipway.commands import add_env_argument, workspace
from slipway.registry.releases import list_releases
from slipway.target import open_target


def add_arguments(parser, verb):
    add_env_argument(parser)


def run(args, reporter):
    ws = workspace(args, reporter)
    target = open_target(ws.project, args.env)
    reporter.step(f"reading releases from {target.repository}")
    found = list_releases(target.registry)
    reporter.step(f"reading live deployments from {target.prefect.api_url}")
    live = anyio.run(pipeline.live_digests, target)
    reporter.result(results.releases_json(found, live),
                    human=results.releases_human(found, live, target.repository, target.prefect.api_url))
