"""`build.py image [--env ENV]`: build HEAD's release image (and its base, when the base's inputs changed).

With --env, the runtime base and the content image are taken from that environment's build cache (in its
registry) when this engine lacks them, and pushed there after a build; without it, they stay local.
"""
from slipway import pipeline, results
from slipway.commands import workspace
from slipway.target import open_target


def add_arguments(parser, verb):
    parser.add_argument("--allow-dirty", action="store_true",
                        help="build from a dirty tree; tags get -dirty and only `local` accepts them")
    parser.add_argument("--env", default=None, metavar="ENV",
                        help="pull the base and content images from this environment's build cache (push them "
                             "there after building them); default: build and keep them locally")


def run(args, reporter):
    ws = workspace(args, reporter)
    target = open_target(ws.project, args.env) if args.env else None
    built = pipeline.build(ws, allow_dirty=args.allow_dirty, target=target)
    reporter.result(results.image_json(built), human=results.image_human(built))
