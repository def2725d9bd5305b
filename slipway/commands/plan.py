"""`python build.py plan --env ENV [--json]`: what deploy would change in ENV's Prefect, writing nothing.

Every check deploy makes runs here too (entry points import in the image, parameters, job variables,
Kubernetes Jobs), then each deployment is compared with what Prefect holds: created / updated (with the
changed fields) / unchanged. Nothing is pushed, created or updated — not even the work pool.
"""
from __future__ import annotations

from slipway.config import load_project
from slipway.engine import docker_client
from slipway.git import read_git_facts
from slipway.registration import human_summary, plan_validated, validate_head


def add_arguments(parser, verb):
    parser.add_argument("--env", default="local", help="environment in slipway.yaml (default: local)")


def run(args, reporter):
    project = load_project(args.root)
    facts = read_git_facts(project.root)
    head, validated = validate_head(project, args.env, facts, reporter, docker_client())
    # Before the first push there is no digest yet: plan against a placeholder and say so.
    reference = head.reference or head.placeholder_reference
    result = plan_validated(validated, reference, facts)
    result["pushed"] = head.digest is not None
    if head.digest is None:
        result["reference"] = None
    human = human_summary({**result, "reference": head.reference or
                           f"{head.repository}:{head.tag} (not in the registry yet: deploy pushes it first)"},
                          "plan")
    reporter.result(result, human=human)
