"""`build.py base`: build (or reuse) the runtime base image; `--os-only` stops at the OS base."""
from slipway.build.base import ensure_base, ensure_os_base
from slipway.commands import workspace


def add_arguments(parser, verb):
    parser.add_argument("--os-only", action="store_true",
                        help="only make sure an OS base exists (pull BASE_IMAGE or bootstrap Debian)")


def run(args, reporter):
    ws = workspace(args, reporter)
    ensure = ensure_os_base if args.os_only else ensure_base
    ref = ensure(ws.engine, ws.project, reporter)
    reporter.result({"image": ref}, human=ref)
