"""`build.py releases --env ENV`: the releases in ENV's registry, newest first, and which one is live; then the
environment's release history (who released what, when, why), newest first.
`--json`: {"releases": [...], "history": [...]}."""
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
    reporter.step(f"reading live deployments and the release history from {target.prefect.api_url}")

    async def read():
        return await pipeline.live_digests(target), await pipeline.release_history(target)

    live, history = anyio.run(read)
    reporter.result(results.releases_json(found, live, history),
                    human=results.releases_human(found, live, target.repository, target.prefect.api_url, history))
