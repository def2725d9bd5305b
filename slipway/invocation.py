"""How the user started slipway, so that help and every hint name a command that works where it was run:
the installed `slipway`, or this repository's `python build.py` (the same CLI). Hints name the CLI's own
verbs, never a Makefile target: a team's repository has no slipway Makefile."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path


def program_name() -> str:
    return "python build.py" if Path(sys.argv[0]).name == "build.py" else "slipway"


def command(verb: str, *args: str) -> str:
    """`slipway <verb> <args>` as the user would type it (placeholders such as <sha> left as they are)."""
    quoted = [a if a.startswith("<") else shlex.quote(a) for a in args]
    return " ".join([program_name(), verb, *quoted])
