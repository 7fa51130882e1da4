"""Option values several commands share: the column layouts of CoNLL files and the tagging schemes."""
from __future__ import annotations

from enum import Enum


class Format(str, Enum):
    auto = "auto"
    conll2003 = "conll2003"
    columns = "columns"
    conllu = "conllu"


_SCHEMES = ("iob1", "iob2", "bioes", "iobes", "bilou", "bmes")
Scheme = Enum("Scheme", {name: name for name in ("auto", *_SCHEMES)}, type=str)  # auto: detect the file's
Target = Enum("Target", {name: name for name in _SCHEMES}, type=str)  # what `convert --to` writes: no auto
