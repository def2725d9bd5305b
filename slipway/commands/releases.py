"""`python build.py releases --env ENV [--json]`: the releases in ENV's registry, newest first, and which is live."""
from __future__ import annotations

from slipway.config import load_project
from slipway.registry import registry_client
from slipway.releases import list_releases, live_digests


def add_arguments(parser, verb):
    parser.add_argument("--env", default="local", help="environment in slipway.yaml (default: local)")


def run(args, reporter):
    project = load_project(args.root)
    env = project.environment(args.env)
    reporter.step(f"reading releases from {env.image_repository()}")
    releases = list_releases(registry_client(env, args.env))
    reporter.step(f"reading live deployments from {env.prefect.api_url}")
    live = live_digests(env, args.env)
    for release in releases:
        release.live = release.digest in live
    rows = [r.public() for r in releases]
    lines = [f"{'':2}{'revision':<13} {'created':<26} {'digest':<20} tags"]
    for r in rows:
        lines.append(f"{'*' if r['live'] else ' ':2}{(r['revision'] or '?')[:12]:<13} {r['created'] or '?':<26} "
                     f"{r['digest'][:19]:<20} {', '.join(r['tags'])}")
    if not rows:
        lines.append(f"  (no releases in {env.image_repository()})")
    lines.append("* live: pinned by the active deployments in " + env.prefect.api_url)
    reporter.result(rows, human="\n".join(lines))
