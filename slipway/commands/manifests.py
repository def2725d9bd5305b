"""`python build.py manifests --env ENV`: each deployment's Kubernetes Job, as the worker would create it.

A YAML stream (one `---` document per deployment) rendered by prefect-kubernetes' own code from the work
pool's base job template and the deployment's job variables, pinned to the digest the environment's
registry holds for HEAD, and validated strictly for slipway.yaml's `kubernetes_version`. Reads only.
"""
from __future__ import annotations

import yaml

from slipway.config import load_project
from slipway.engine import docker_client
from slipway.errors import SlipwayError
from slipway.git import read_git_facts
from slipway.registration import inputs_from_working_tree, pool_state, validate_head


def add_arguments(parser, verb):
    parser.add_argument("--env", default="kind", help="a Kubernetes environment in slipway.yaml (default: kind)")


def run(args, reporter):
    project = load_project(args.root)
    env = project.environment(args.env)
    if env.work_pool.type != "kubernetes":
        raise SlipwayError(f"slipway.yaml: environments.{args.env}.work_pool.type is '{env.work_pool.type}': "
                           "its flow runs are not Kubernetes Jobs", "pick a Kubernetes environment (--env kind)")
    facts = read_git_facts(project.root)
    # The repo's template, not the live pool's: manifests reads nothing from Prefect.
    pool = pool_state(inputs_from_working_tree(project, args.env), None)
    head, validated = validate_head(project, args.env, facts, reporter, docker_client(), pool=pool)
    if head.reference is None:
        raise SlipwayError(f"HEAD's image ({head.tag}) is not in {head.repository}",
                           f"push it first: python build.py push --env {args.env}")
    documents = [validated.manifests[d.full_name] for d in validated.deployments]
    if reporter.json_mode:
        reporter.result({"reference": head.reference,
                         "manifests": {d.full_name: validated.manifests[d.full_name] for d in validated.deployments}})
    else:
        reporter.result(None, human=yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True))
