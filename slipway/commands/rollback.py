"""`python build.py rollback --env ENV --to <sha|short sha|tag> [--json]`: redeploy an older release.

The release's digest and its own configuration come from the registry (config blob and last layer, no
image pull); it is validated like a deploy and re-registered. No build, no push. This repository's
deployments that the release does not have are paused, not deleted.
"""
from __future__ import annotations

from slipway.config import load_project
from slipway.registration import human_summary
from slipway.releases import rollback


def add_arguments(parser, verb):
    parser.add_argument("--env", default="local", help="environment in slipway.yaml (default: local)")
    parser.add_argument("--to", required=True, metavar="REF", help="the release: Git SHA, short SHA or tag")


def run(args, reporter):
    project = load_project(args.root)
    result = rollback(project, args.env, args.to, reporter)
    out = {"reference": result["reference"], "revision": result["revision"],
           "deployments": [{k: r[k] for k in ("name", "id", "action")} for r in result["deployments"]],
           "paused": result["paused"]}
    human = human_summary(result, "rollback")
    if result["paused"]:
        human += "paused (not in this release): " + ", ".join(result["paused"]) + "\n"
    reporter.result(out, human=human)
