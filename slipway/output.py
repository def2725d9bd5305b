"""How slipway talks: progress for people on stderr, one JSON object for machines on stdout.

On a terminal, progress lines are shown as they happen. In CI (`CI` set, or stderr not a TTY) they are
still printed, one plain line per step, so logs stay readable; `--json` never mixes progress into stdout.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

from slipway.summary import record_result


class Reporter:
    def __init__(self, json_mode: bool = False, stream: TextIO | None = None, quiet: bool = False,
                 verb: str | None = None, environment: str | None = None):
        self.json_mode = json_mode
        # Which verb (and environment) this run is: lets result() summarize release verbs for CI.
        self.verb = verb
        self.environment = environment
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.interactive = self.stream.isatty() and not os.environ.get("CI")
        self._started = time.monotonic()

    def step(self, message: str) -> None:
        """A step has started or finished: one line, prefixed with elapsed seconds."""
        if self.quiet:
            return
        elapsed = time.monotonic() - self._started
        self.stream.write(f"[{elapsed:6.1f}s] {message}\n")
        self.stream.flush()

    def detail(self, message: str) -> None:
        """Fine-grained progress (build output, upload progress): only for people at a terminal."""
        if self.interactive and not self.quiet:
            self.stream.write(f"          {message}\n")
            self.stream.flush()

    def warn(self, message: str) -> None:
        self.stream.write(f"warning: {message}\n")
        self.stream.flush()

    def result(self, data: Any, human: str | None = None) -> None:
        """The command's outcome: JSON on stdout with --json, else a human summary on stdout."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, indent=None, sort_keys=False) + "\n")
        elif human is not None:
            sys.stdout.write(human.rstrip("\n") + "\n")
        sys.stdout.flush()
        if self.verb:
            try:  # CI summary and JSON file (slipway/summary.py): reporting must never fail the release
                record_result(self.verb, data, self.environment)
            except OSError as exc:
                self.warn(f"could not write the CI summary: {exc}")
