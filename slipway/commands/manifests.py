"""`build.py manifests --env ENV`: each deployment's Kubernetes Job, as the worker would create it.

A YAML stream (one `---` document per deployment) rendered by prefect-kubernetes' own code from the work
pool's base job template and the deployment's job variables, pinned to the digest the environment's
registry holds for HEAD, and validated strictly for slipway.yaml's `kubernetes_version`. Reads only.
"""
import anyio
import yaml

from slipway import pipeline
from slipway.commands import add_env_argument, workspace
from slipway.target import open_target


def add_arguments(parser, verb):
    add_env_argument(parser, default="kind")


def run(args, reporter):
    ws = workspace(args, reporter)
    validated, reference = anyio.run(pipeline.manifests, ws, open_target(ws.project, args.env))
    documents = {d.full_name: validated.manifests[d.full_name] for d in validated.deployments}
    reporter.result({"reference": reference, "manifests": documents},
                    human=yaml.safe_dump_all(list(documents.values()), sort_keys=False, explicit_start=True))
