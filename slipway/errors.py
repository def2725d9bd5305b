"""The one error type users see: a cause and a fix, printed as a single line, exit status 1.

Raise it `from` the exception that caused it (`raise SlipwayError(...) from exc`): the user still sees one
line, and `SLIPWAY_DEBUG=1` prints the whole chain for whoever has to dig.
"""
from __future__ import annotations


class SlipwayError(Exception):
    """A failure the user can act on. `str()` is one line: what went wrong, then how to fix it."""

    def __init__(self, message: str, fix: str | None = None):
        self.message = message.strip()
        self.fix = fix.strip() if fix else None
        super().__init__(self.line())

    def line(self) -> str:
        text = self.message if not self.fix else f"{self.message}; {self.fix}"
        # One line, always: multi-line causes (tracebacks, server bodies) are folded.
        return " ".join(text.split())


class IncompleteRelease(SlipwayError):
    """Writes began and did not all land: says what was written, what was not, and how to finish."""

    def __init__(self, message: str, fix: str, written: list[str], not_written: list[str]):
        super().__init__(message, fix)
        self.written = written
        self.not_written = not_written


def first_slipway_error(exc: BaseException) -> SlipwayError | None:
    """The SlipwayError inside `exc`, which may be an exception group from a task group (anyio raises the
    errors of concurrent tasks as a group); None when there is none."""
    if isinstance(exc, SlipwayError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_slipway_error(inner)
            if found is not None:
                return found
    return None


class Finding:
    """One thing `doctor` found (slipway/pipeline.py doctor): an error (a release would fail on it) or a
    warning, printed as the one line an error would be: `error: <cause>; <fix>`."""

    def __init__(self, level: str, check: str, message: str, fix: str | None = None):
        self.level = level  # "error" | "warning"
        self.check = check  # which check found it: config, git, dbt, imports, job_variables, ...
        self.error = SlipwayError(message, fix)

    @classmethod
    def of(cls, check: str, exc: SlipwayError, level: str = "error") -> Finding:
        return cls(level, check, exc.message, exc.fix)

    def line(self) -> str:
        return f"{self.level}: {self.error.line()}"

    def json(self) -> dict[str, str | None]:
        return {"level": self.level, "check": self.check, "message": self.error.message, "fix": self.error.fix}
