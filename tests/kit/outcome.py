"""What a slipway command left: its exit code, stdout (the --json object), stderr (progress and the one
`error:` line). Shared by the in-process `cli` fixture and the installed command (tests/kit/wheel.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)

    @property
    def error(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith("error: ")]
        return lines[-1] if lines else ""
