"""`build.py base`: build (or reuse) the runtime base image; `--os-only` stops at the OS base."""
from slipway.base import ensure_base, ensure_os_base
from slipway.config import load_project
from slipway.engine import docker_client


def add_arguments(parser, verb):
    parser.add_argument("--os-only", action="store_true",
                        help="only make sure an OS base exists (pull BASE_IMAGE or bootstrap Debian)")


def run(args, reporter):
    project = load_project(args.root)
    client = docker_client()
    ref = ensure_os_base(client, project, reporter) if args.os_only else ensure_base(client, project, reporter)
    reporter.result({"image": ref}, human=ref)
