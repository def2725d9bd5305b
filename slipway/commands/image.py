"""`build.py image [--env ENV]`: build HEAD's release image (and its base, when the base's inputs changed).

With --env, the runtime base is taken from that environment's registry cache when this engine lacks it (and
pushed there after a build); without it, the base is built and kept locally only.
"""
from slipway import pipeline, results
from slipway.commands import workspace
from slipway.target import open_target


def add_arguments(parser, verb):
    parser.add_argument("--allow-dirty", action="store_true",
                        help="build from a dirty tree; tags get -dirty and only `local` accepts them")
    parser.add_argument("--env", default=None, metavar="ENV",
                        help="pull the runtime base from this environment's registry cache (push it there after "
                             "building it); default: build it locally")


def run(args, reporter):
    ws = workspace(args, reporter)
    target = open_target(ws.project, args.env) if args.env else None
    built = pipeline.build(ws, allow_dirty=args.allow_dirty, target=target)
    reporter.result(results.image_json(built), human=results.image_human(built))
