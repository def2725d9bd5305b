"""slipway: one commit of this repository -> one release (an image pinned by digest in Prefect deployments).

The release flow, one verb per step:
  image     build HEAD's image, tagged with its Git SHA (the base image first, when its inputs changed)
  push      push it to the environment's registry; the registry's digest is read back
  deploy    validate every deployment, push if needed, register them pinned to the digest
  release   image + deploy in one process (what `make image deploy ENV=...` runs)
  rollback  re-register an older release from the registry: no checkout, no build, no push
  promote   copy a release from one environment's registry to another's, by digest: no engine, no build
  init      slipway's files for an existing repository, from what it has (--upgrade keeps your edits)
  doctor    every check a release makes that needs no registry and no Prefect, one line per finding

Configuration lives in slipway.yaml (the image and the environments: registry, Prefect, work pool) and
deployments.yaml (the deployments, in prefect.yaml's schema); see README.md.

Exit codes: 0 done; 1 an `error: <cause>; <fix>` line on stderr (doctor: on stdout, one per finding), nothing changed unless it says what was
written; 2 a usage error (or `plan --exit-code` with changes); 130 interrupted.

Examples:
  slipway release --env staging            # build HEAD, push, deploy
  slipway rollback --env prod --to v1.4.2  # back to a release the registry holds
  slipway promote --from staging --to prod # the image staging runs, copied into prod's registry
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from slipway import __version__
from slipway.errors import first_slipway_error
from slipway.invocation import program_name
from slipway.output import Reporter

# verb -> (module under slipway.commands, one-line help). Order is the release's data flow.
VERBS = {
    "base": ("base", "build (or reuse) the runtime base image from Dockerfile.base"),
    "image": ("image", "build HEAD's release image, tagged with its Git SHA"),
    "push": ("push", "push HEAD's image to an environment's registry and print its digest"),
    "plan": ("plan", "show what deploy would change in an environment, writing nothing"),
    "deploy": ("deploy", "register every deployment pinned to HEAD's image digest (pushes first if needed)"),
    "release": ("release", "image + deploy in one process (make image deploy)"),
    "manifests": ("manifests", "print each deployment's rendered Kubernetes Job manifest"),
    "releases": ("releases", "list the releases in an environment's registry and which one is live"),
    "rollback": ("rollback", "redeploy an older release from the registry, without a rebuild"),
    "promote": ("promote", "copy a release from one environment's registry to another's by digest (no build)"),
    "init": ("init", "write slipway's files into an existing repository (--upgrade: bring them forward)"),
    "doctor": ("doctor", "check what a release needs without a registry or Prefect: Git, dbt, imports, job variables"),
    "up": ("stack", "start the local registry and Prefect server (the embedded default)"),
    "down": ("stack", "stop the local registry and Prefect server"),
}
USAGE_EXIT_CODE = 2


class Parser(argparse.ArgumentParser):
    """argparse with slipway's one-line errors: `error: <cause>; <fix>`, exit 2."""

    verb: str | None = None  # the verb on the command line, for the pointer to its help

    def error(self, message: str):
        where = f"{self.verb} " if self.verb else ""
        self.exit(USAGE_EXIT_CODE, f"error: {message}; see `{program_name()} {where}--help`\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser for every verb; with `only`, just that verb's module is imported (the others stay unloaded:
    a release step should not pay for boto3 or prefect-kubernetes it does not use)."""
    doc = __doc__.split("\n\n", 1)
    parser = Parser(prog=program_name(), description=doc[0], epilog=doc[1],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"slipway {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=Parser)
    for verb, (module_name, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout (for CI)")
        p.add_argument("--verbose", action="store_true",
                       help="show the build and push output as it happens (also SLIPWAY_VERBOSE=1)")
        p.add_argument("--root", default=os.environ.get("SLIPWAY_ROOT", "."), type=Path,
                       help="repository root holding slipway.yaml (default: current directory)")
        if only in (None, verb):
            module = importlib.import_module(f"slipway.commands.{module_name}")
            module.add_arguments(p, verb)
    return parser


def chosen_verb(argv: list[str]) -> str | None:
    """The verb named on the command line (the first word that is one), None for `--help` and typos."""
    return next((word for word in argv if word in VERBS), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = chosen_verb(argv)
    helping = "-h" in argv or "--help" in argv
    Parser.verb = verb
    args = build_parser(verb if verb is not None and not helping else None).parse_args(argv)
    reporter = Reporter(json_mode=args.json, verb=args.verb, environment=getattr(args, "env", None),
                        verbose=True if args.verbose else None)
    module = importlib.import_module(f"slipway.commands.{VERBS[args.verb][0]}")
    restore_signals = terminate_like_interrupt()
    try:
        return module.run(args, reporter) or 0
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; run the same command again to finish what it started\n")
        return 130
    except BaseException as exc:  # noqa: BLE001 - no traceback reaches the user on any path
        if isinstance(exc, SystemExit):
            raise
        return report_failure(exc)
    finally:
        restore_signals()


def entry_point() -> None:
    """The `slipway` console script (and build.py): main, then out without interpreter teardown.

    Everything slipway writes is written, flushed or closed before main returns; what is left is the
    interpreter tearing down Prefect's two thousand modules, 0.3-0.5 s of every run (measured), for nothing."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def terminate_like_interrupt() -> Callable[[], None]:
    """SIGTERM (a cancelled CI job, `kill`, `docker stop`) is handled like Ctrl-C: Python's default exits at
    once, leaving the environment's release lease held until it expires; as an interrupt, the run is
    cancelled where it is, the lease is given back and what was written is said. Returns what puts the
    handlers back (nothing to do when signals cannot be handled here: not the main thread).

    A parent that ignores SIGINT (a background job of a non-interactive shell, `nohup`, some CI runners)
    passes that on, and then neither Python's KeyboardInterrupt nor asyncio's handler is installed: SIGTERM,
    turned into SIGINT, would do nothing and the process would run on. So an ignored SIGINT is handled too,
    for this run: both signals stop slipway the same clean way."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_terminate(signum, frame):
        # SIGINT's handler is asyncio's while an event loop runs (it cancels the main task cleanly), else
        # Python's KeyboardInterrupt: either way, the same path as Ctrl-C.
        signal.raise_signal(signal.SIGINT)

    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, on_terminate)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return restore


def report_failure(exc: BaseException) -> int:
    """One `error:` line for any failure; with SLIPWAY_DEBUG=1 the whole chain of causes first."""
    if os.environ.get("SLIPWAY_DEBUG", "").strip() in ("1", "true", "yes"):
        traceback.print_exception(exc, file=sys.stderr)
    known = first_slipway_error(exc)
    if known is not None:
        sys.stderr.write(f"error: {known.line()}\n")
        return 1
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    sys.stderr.write(f"error: unexpected failure ({text}); run again with SLIPWAY_DEBUG=1 for the traceback "
                     "and report it\n")
    return 1
