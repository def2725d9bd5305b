"""How slipway talks: progress for people on stderr, one JSON object for machines on stdout.

- Steps (`step`) are always printed, one plain line each, prefixed with the seconds since the start.
- Details (`detail`: build output, upload progress) are shown on a terminal, with `--verbose`
  (`SLIPWAY_VERBOSE=1`), and on GitHub Actions inside a folded log group (`group`), so CI logs keep the whole
  build and push output without burying the steps.
- `--json` never mixes progress into stdout.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

from slipway.summary import record_result


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


class Reporter:
    def __init__(self, json_mode: bool = False, stream: TextIO | None = None, quiet: bool = False,
                 verb: str | None = None, environment: str | None = None, verbose: bool | None = None):
        self.json_mode = json_mode
        # Which verb (and environment) this run is: lets result() summarize release verbs for CI.
        self.verb = verb
        self.environment = environment
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.interactive = self.stream.isatty() and not os.environ.get("CI")
        self.verbose = _truthy(os.environ.get("SLIPWAY_VERBOSE")) if verbose is None else verbose
        self.github_actions = _truthy(os.environ.get("GITHUB_ACTIONS"))
        self._in_group = False
        self._started = time.monotonic()
        self._lock = threading.Lock()  # steps of overlapping work (a probe, a push) come from threads

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def step(self, message: str) -> None:
        """A step has started or finished: one line, prefixed with elapsed seconds."""
        if self.quiet:
            return
        elapsed = time.monotonic() - self._started
        self._write(f"[{elapsed:6.1f}s] {message}\n")

    def detail(self, message: str) -> None:
        """Fine-grained progress (build output, upload progress): see the module docstring for where."""
        if self.quiet:
            return
        if self.interactive or self.verbose or (self.github_actions and self._in_group):
            self._write(f"          {message}\n")

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        """Long output (a build, a push) as one folded group in GitHub Actions' log; nothing elsewhere."""
        if not (self.github_actions and not self.quiet) or self._in_group:
            yield
            return
        self._write(f"::group::{title}\n")
        self._in_group = True
        try:
            yield
        finally:
            self._in_group = False
            self._write("::endgroup::\n")

    def warn(self, message: str) -> None:
        self._write(f"warning: {message}\n")

    def result(self, data: Any, human: str | None = None, record_as: str | None = None) -> None:
        """The command's outcome: JSON on stdout with --json, else a human summary on stdout.

        `record_as`: the verb name the CI summary files this result under (default: the running verb)."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, indent=None, sort_keys=False) + "\n")
        elif human is not None:
            sys.stdout.write(human.rstrip("\n") + "\n")
        sys.stdout.flush()
        self.record(record_as or self.verb, data)

    def record(self, verb: str | None, data: Any) -> None:
        """The CI summary and JSON result file of one step (slipway/summary.py); never fails the release."""
        if not verb:
            return
        try:
            record_result(verb, data, self.environment)
        except OSError as exc:
            self.warn(f"could not write the CI summary: {exc}")
