"""The paths a user names, checked before any work is done: an input must be a file, an output must be
neither a directory nor, without --force, a file already there. One place for these one-line errors, which
every command and reader raises (corpora/conll.py keeps its own: corpora imports nothing of tagger's).
"""
from __future__ import annotations

import os
from pathlib import Path

from tagger.errors import InputError, TaggerError

STANDARD_STREAM = "-"  # standard input or output: never checked


def check_input_file(path: str | os.PathLike, what: str = "file", error: type[TaggerError] = InputError) -> None:
    """`error` naming `path` when it does not exist ("no such file") or is a directory ("is a directory, not
    a file"); `what` names what it should be ("embeddings file"). "-" (standard input) passes."""
    if str(path) == STANDARD_STREAM:
        return
    path = Path(path)
    if not path.exists():
        raise error(f"no such {what}", path=str(path))
    if path.is_dir():
        article = "an" if what[:1] in "aeiou" else "a"
        raise error(f"is a directory, not {article} {what}", path=str(path))


def check_output_file(path: str | os.PathLike | None, force: bool) -> None:
    """InputError naming `path` when it is a directory, or a file already there and `force` is off. None (no
    output asked for) and "-" (standard output) pass."""
    if path is None or str(path) == STANDARD_STREAM:
        return
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory", path=str(path))
    if path.exists() and not force:
        raise InputError("already exists: use --force to overwrite it", path=str(path))
