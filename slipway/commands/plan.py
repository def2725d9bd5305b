"""`build.py plan --env ENV`: what deploy would change in ENV's Prefect, writing nothing.

Every check deploy makes runs here too (entry points in the image, parameters, job variables, Kubernetes
Jobs, the downgrade guard), then each deployment is compared with what Prefect holds. `--exit-code` exits 2
when something would change, for drift checks in CI.
"""
import anyio

from slipway import pipeline, results
from slipway.commands import add_env_argument, add_prune_argument, workspace
from slipway.deploy.unchanged import Unchanged
from slipway.target import open_target

CHANGES_EXIT_CODE = 2


def add_arguments(parser, verb):
    add_env_argument(parser)
    parser.add_argument("--exit-code", action="store_true",
                        help=f"exit {CHANGES_EXIT_CODE} when deploy would write anything (0: nothing to do)")
    add_prune_argument(parser, verb)


def run(args, reporter):
    ws = workspace(args, reporter)
    target = open_target(ws.project, args.env)
    outcome = anyio.run(pipeline.plan, ws, target, args.prune)
    if isinstance(outcome, Unchanged):  # told from what a full run found: nothing would change
        printed, human, writes = *results.plan_outputs(outcome), 0
    else:
        plan, head = outcome
        reference = plan.reference or f"{head.image} (not in the registry yet: deploy pushes it first)"
        printed, human = results.plan_outputs(plan, head.pushed is not None, reference)
        writes = plan.writes
    reporter.result(printed, human=human)
    return CHANGES_EXIT_CODE if args.exit_code and writes else 0
