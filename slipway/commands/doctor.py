"""`slipway doctor [--env ENV]`: every check a release makes that needs no registry and no Prefect, one line
per finding (`error: <cause>; <fix>` or `warning: ...`), then `ok`; exit 1 when a release would fail.
`--json`: {"ok": bool, "findings": [{"level", "check", "message", "fix"}, ...]}. Writes nothing."""
from slipway import pipeline, results
from slipway.commands import add_env_argument


def add_arguments(parser, verb):
    add_env_argument(parser)


def run(args, reporter):
    findings = pipeline.doctor(args.root, args.env, reporter)
    reporter.result(results.doctor_json(findings), human=results.doctor_human(findings))
    return 1 if any(f.level == "error" for f in findings) else 0
