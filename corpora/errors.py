"""The one error type of the corpora package: a problem in a user's corpus file."""
from __future__ import annotations


class CorpusError(ValueError):
    """A problem in a user's corpus file. str(e) == "path:line: message" (or "path: message").

    A ValueError so that callers treating bad input generically still catch it; the CLI prints it as one line.
    """

    def __init__(self, path: str, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")

    def __reduce__(self):
        """Pickle by constructor arguments (the default would pass only str(e)), e.g. across processes."""
        return type(self), (self.path, self.line, self.message)
