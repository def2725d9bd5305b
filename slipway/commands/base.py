"""`build.py base [--env ENV]`: build (or reuse) the runtime base image; `--os-only` stops at the OS base.
With --env, the base comes from (or is pushed to) that environment's build cache in its registry."""
from slipway.commands import workspace
from slipway.image.base import ensure_base, ensure_os_base
from slipway.target import open_target


def add_arguments(parser, verb):
    parser.add_argument("--os-only", action="store_true",
                        help="only make sure an OS base exists (pull BASE_IMAGE or bootstrap Debian)")
    parser.add_argument("--env", default=None, metavar="ENV",
                        help="use (and fill) this environment's build cache in its registry")


def run(args, reporter):
    ws = workspace(args, reporter)
    if args.os_only:
        ref = ensure_os_base(ws.engine, ws.project, reporter)
    else:
        cache = open_target(ws.project, args.env).build_cache() if args.env else None
        ref = ensure_base(ws.engine, ws.project, reporter, cache)
    reporter.result({"image": ref}, human=ref)
