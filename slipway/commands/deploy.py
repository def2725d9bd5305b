"""`python build.py deploy --env ENV [--json]`: register every deployment pinned to HEAD's image digest.

Order: read-only checks (Prefect answers, the registry answers), full validation of every deployment with
what the entry-point probe found in HEAD's image when it was built (its release layer), then the push when the registry does not hold HEAD's image yet, then the digest is read back
from the registry and the deployments are upserted with `job_variables.image = <repository>@sha256:...`
and `version = <Git SHA>`. A failure before the push leaves the registry and Prefect untouched.
"""
from __future__ import annotations

from slipway.config import load_project
from slipway.engine import docker_client
from slipway.git import read_git_facts
from slipway.registration import apply_release, human_summary, validate_head


def add_arguments(parser, verb):
    parser.add_argument("--env", default="local", help="environment in slipway.yaml (default: local)")
    parser.add_argument("--rollback", action="store_true",
                        help="allow deploying a commit older than the one the environment runs")


def run(args, reporter):
    project = load_project(args.root)
    facts = read_git_facts(project.root)
    client = docker_client()
    head, validated = validate_head(project, args.env, facts, reporter, client)
    if not args.rollback:
        from slipway.releases import refuse_downgrade

        refuse_downgrade(project, args.env, facts, head.digest)  # a stale CI job must not undo a newer release
    if head.digest is None:
        from slipway.push import push_head

        pushed = push_head(project, args.env, reporter, facts=facts, client=client)
        reference = pushed["reference"]
    else:
        reference = head.reference
        reporter.step(f"{reference} is in the registry: nothing to push")
    result = apply_release(validated, reference, facts, reporter)
    out = {"reference": result["reference"], "work_pool": result["work_pool"],
           "deployments": [{k: r[k] for k in ("name", "id", "action")} for r in result["deployments"]]}
    reporter.result(out, human=human_summary(result, "deploy"))
