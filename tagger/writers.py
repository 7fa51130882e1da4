"""Output formats: a registry of writers that render tagged text or sentences as text.

A writer renders one record at a time into a string, so `--workers` processes can render chunks of a
stream in parallel and the parent writes them in order; `header` and `footer` come once. The CLI's
`--output-format` choices are this registry's names, and the Python API can call any writer:

>>> writer = WRITERS["jsonl"](tagger.labels)
>>> writer.text(next(tagger.tag_texts(["Angela Merkel visited Paris."])))
'{"text": "Angela Merkel visited Paris.", "entities": [...]}\\n'

Adding a format: a Writer subclass decorated with `@register("name")`.
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Callable, Sequence

from corpora.conll import Sentence, format_sentence

if TYPE_CHECKING:
    from tagger.api import TaggedText

WRITERS: dict[str, type["Writer"]] = {}


def register(name: str) -> Callable[[type["Writer"]], type["Writer"]]:
    def add(cls: type[Writer]) -> type[Writer]:
        cls.name = name
        WRITERS[name] = cls
        return cls
    return add


class Writer:
    """Renders records as text. `labels` are the model's labels, known before the first record."""

    name = ""

    def __init__(self, labels: Sequence[str] = ()):
        self.labels = list(labels)

    def header(self) -> str:
        return ""

    def text(self, tagged: "TaggedText") -> str:
        """One raw-text input line, tagged."""
        raise NotImplementedError

    def sentence(self, sentence: Sentence, tags: Sequence[str]) -> str:
        """One tokenised sentence (tokens or CoNLL input) with its predicted tags."""
        raise NotImplementedError

    def footer(self) -> str:
        return ""


@register("jsonl")
class JsonlWriter(Writer):
    """One JSON object a line: {"text", "entities"} for raw text, {"tokens", "tags"} for sentences."""

    def text(self, tagged: "TaggedText") -> str:
        return jsonl({"text": tagged.text, "entities": tagged.entities})

    def sentence(self, sentence: Sentence, tags: Sequence[str]) -> str:
        return jsonl({"tokens": list(sentence.tokens), "tags": list(tags)})


@register("conll")
class ConllWriter(Writer):
    """A token a line with its predicted tag as a new last column (CoNLL input keeps all its columns, so
    gold and prediction stand side by side, as conlleval reads them); a blank line after each sentence."""

    def text(self, tagged: "TaggedText") -> str:
        return "".join(format_sentence(Sentence(tuple(tokens)), tags) for tokens, tags in tagged.sentences())

    def sentence(self, sentence: Sentence, tags: Sequence[str]) -> str:
        if not sentence.tokens:
            return ""
        if sentence.rows:
            return format_sentence(sentence, tags, "conll2003", append=True)
        return format_sentence(sentence, tags)


_JSON = json.JSONEncoder(ensure_ascii=False)
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def jsonl(record: dict) -> str:
    """One JSON line, UTF-8 kept readable, but U+0085/U+2028/U+2029 escaped: `str.splitlines()` breaks on them."""
    return _LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", _JSON.encode(record)) + "\n"
