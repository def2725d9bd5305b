"""`build.py rollback --env ENV [--to REF]`: redeploy an older release from the registry.

The release's digest and its own configuration come from the registry (config blob and last layer, no
image pull); it is validated like a deploy and re-registered. No build, no push, no checkout of that commit.
This environment's deployments that the release does not have are paused, not deleted. Without `--to`, the
release that was live before the current one (from the environment's history), said before anything is done.
"""
import anyio

from slipway import pipeline, results
from slipway.commands import add_env_argument, add_message_argument, env_flag, workspace
from slipway.target import open_target


def add_arguments(parser, verb):
    add_env_argument(parser)
    parser.add_argument("--to", metavar="REF", help="the release: Git tag, SHA or short SHA (default: the release "
                                                    "live before the current one, from the history)")
    parser.add_argument("--verify", action="store_true", default=env_flag("SLIPWAY_VERIFY"),
                        help="then run the release's verify: smoke run and report it (no further rollback); "
                             "default: $SLIPWAY_VERIFY (`make rollback VERIFY=1`)")
    add_message_argument(parser)


def run(args, reporter):
    ws = workspace(args, reporter)
    done = anyio.run(pipeline.rollback, ws, open_target(ws.project, args.env), args.to, args.message,
                     args.verify)
    reporter.result(results.rollback_json(done.plan, done.release), human=results.plan_human(done.plan, "rollback"))
