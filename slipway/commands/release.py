"""`build.py release --env ENV`: `make image deploy` in one process — HEAD's image (unless the registry
already holds HEAD's release), then deploy. `--json`: {"image": <image's JSON or null>, "deploy": <deploy's>}."""
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
    parser.add_argument("--allow-dirty", action="store_true",
                        help="build from a dirty tree (only the local environment accepts the -dirty image)")
    parser.add_argument("--rollback", action="store_true",
                        help="allow deploying HEAD over a newer live release")
    add_prune_argument(parser, verb)
    add_message_argument(parser)
    add_no_verify_argument(parser)


def run(args, reporter):
    ws = workspace(args, reporter)
    built, outcome = anyio.run(pipeline.release, ws, open_target(ws.project, args.env), args.allow_dirty,
                               args.rollback, args.prune, args.message, args.verify)
    if built is not None:
        reporter.record("image", results.image_json(built))
    printed, deployed = results.deploy_outputs(outcome)
    human = (results.image_human(built) + "\n" if built else "") + deployed
    reporter.result({"image": results.image_json(built) if built else None, "deploy": printed},
                    human=human, record_as=None)
    reporter.record("deploy", printed)
