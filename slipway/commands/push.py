"""Placeholder until this verb lands; see its issue."""
from slipway.errors import SlipwayError


def add_arguments(parser, verb):
    parser.add_argument("--env", default="local")


def run(args, reporter):
    raise SlipwayError(f"'{args.verb}' is not implemented yet")
