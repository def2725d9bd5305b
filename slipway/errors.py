"""The one error type users see: a cause and a fix, printed as a single line, exit status 1."""


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
