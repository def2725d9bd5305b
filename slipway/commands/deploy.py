"""`build.py deploy --env ENV`: register every deployment pinned to HEAD's image digest.

All checks first (the environment answers, every deployment validates against what the build-time probe
found in HEAD's image, the downgrade guard), then the push when the registry does not hold HEAD's release
yet, then only the deployments that differ are written. This environment's deployments the release no longer
declares are paused (`--prune`: deleted). The release is recorded in the environment's history (`--message`:
why). A failure before the push changes nothing.
"""
import anyio

from slipway import pipeline, results
from slipway.commands import (
    add_env_argument,
    add_message_argument,
    add_no_verify_argument,
    add_prune_argument,
    workspace,
)
from slipway.target import open_target


def add_arguments(parser, verb):
    add_env_argument(parser)
    parser.add_argument("--rollback", action="store_true",
                        help="allow deploying HEAD over a newer live release (rolling back from a checkout; "
                             "the rollback verb rolls back from the registry without one)")
    add_prune_argument(parser, verb)
    add_message_argument(parser)
    add_no_verify_argument(parser)


def run(args, reporter):
    ws = workspace(args, reporter)
    outcome = anyio.run(pipeline.deploy, ws, open_target(ws.project, args.env), args.rollback, args.prune,
                        args.message, args.verify)
    printed, human = results.deploy_outputs(outcome)
    reporter.result(printed, human=human)
