"""`build.py image`: build HEAD's release image (and its base, when the base's inputs changed)."""
from slipway import pipeline, results
from slipway.commands import workspace


def add_arguments(parser, verb):
    parser.add_argument("--allow-dirty", action="store_true",
                        help="build from a dirty tree; tags get -dirty and only `local` accepts them")


def run(args, reporter):
    built = pipeline.build(workspace(args, reporter), allow_dirty=args.allow_dirty)
    reporter.result(results.image_json(built), human=results.image_human(built))
