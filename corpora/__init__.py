"""Corpus files and tag schemes: reading/writing CoNLL dialects, span-scheme conversion, Hugging Face datasets.

Independent of torch and of the model code, so it can be used (and tested) on its own. `corpora.hf` is
imported separately because it brings in `datasets` when used.
"""
from corpora.conll import (
    FORMATS,
    Sentence,
    detect_format,
    iter_conll_lines,
    read_conll,
)
from corpora.conll_writer import format_sentence, write_conll
from corpora.errors import CorpusError

__all__ = [
    "FORMATS",
    "CorpusError",
    "Sentence",
    "detect_format",
    "format_sentence",
    "iter_conll_lines",
    "read_conll",
    "write_conll",
]
