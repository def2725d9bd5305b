"""`build.py promote --from A --to B [--ref REF] [--any]`: copy a release from A's registry to B's by digest.

The release (default: the one live in A, read from A's Prefect) goes over the registries' API only — no
Docker engine, no build, no pull — and gets the same tags in B (full SHA, short SHA, Git tag); then
`deploy --env B` at that commit finds it in B and pins the same digest A ran.
"""
import anyio

from slipway import pipeline, results
from slipway.commands import workspace
from slipway.target import open_target


def add_arguments(parser, verb):
    parser.add_argument("--from", dest="source", required=True, metavar="ENV",
                        help="the environment whose registry holds the release")
    parser.add_argument("--to", dest="destination", required=True, metavar="ENV",
                        help="the environment whose registry receives it")
    parser.add_argument("--ref", metavar="REF", default=None,
                        help="the release: Git tag, SHA, short SHA or digest (default: the one live in --from)")
    parser.add_argument("--any", dest="any_release", action="store_true",
                        help="promote --ref even if it is not live in --from")


def run(args, reporter):
    ws = workspace(args, reporter)
    source = open_target(ws.project, args.source)
    destination = open_target(ws.project, args.destination)
    done = anyio.run(pipeline.promote, ws, source, destination, args.ref, args.any_release)
    reporter.result(results.promote_json(done), human=results.promote_human(done))
