"""Errors caused by a user's input: one line that names the file (and line) and the problem.

The CLI prints ``error: <message>`` and exits 1 for these and for ``corpora.errors.CorpusError``;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from corpora.errors import CorpusError


class TaggerError(Exception):
    """Base class of every error the user can fix (bad file, bad option, bad model directory)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message, self.path, self.line = message, path, line
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        super().__init__(where + message)


class ConfigError(TaggerError):
    """An option or config-file value that is unknown, of the wrong type or out of range."""


class InputError(TaggerError):
    """Input data that cannot be used (unknown labels, wrong embedding dimensions, an existing output)."""


class ModelError(TaggerError):
    """A model directory that is missing a file, was altered, or does not match its config."""


USER_ERRORS: tuple[type[Exception], ...] = (TaggerError, CorpusError)
