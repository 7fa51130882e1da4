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
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, Sequence

from corpora import schemes
from corpora.conll import Sentence, format_sentence
from tagger import html

if TYPE_CHECKING:
    from tagger.api import TaggedText

WRITERS: dict[str, type["Writer"]] = {}


def register(name: str) -> Callable[[type["Writer"]], type["Writer"]]:
    def add(cls: type[Writer]) -> type[Writer]:
        cls.name = name
        WRITERS[name] = cls
        return cls
    return add


class Writer(ABC):
    """Renders records as text. `labels` are the model's labels and `scheme` the scheme of the tags it is
    given (None for plain tags), both known before the first record."""

    name = ""

    def __init__(self, labels: Sequence[str] = (), scheme: str | None = None, title: str = "tagger"):
        self.labels, self.scheme, self.title = list(labels), scheme, title

    def header(self) -> str:
        return ""

    @abstractmethod
    def text(self, tagged: "TaggedText") -> str:
        """One raw-text input line, tagged."""

    @abstractmethod
    def sentence(self, sentence: Sentence, tags: Sequence[str]) -> str:
        """One tokenised sentence (tokens or CoNLL input) with its predicted tags."""

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


@register("html")
class HtmlWriter(Writer):
    """One self-contained page (tagger/html.py): a paragraph an input line or sentence, entities marked with
    their label's colour, a legend of the model's labels; streams in constant memory."""

    def header(self) -> str:
        return html.page_header(self.labels, self.title)

    def text(self, tagged: "TaggedText") -> str:
        return html.paragraph(tagged.text, tagged.entities)

    def sentence(self, sentence: Sentence, tags: Sequence[str]) -> str:
        """The tokens joined by spaces, each entity (or, for plain tags, each token) marked."""
        starts = [sum(len(t) + 1 for t in sentence.tokens[:i]) for i in range(len(sentence.tokens))]
        text = " ".join(sentence.tokens)
        if self.scheme is None:
            spans = [(tag, i, i + 1) for i, tag in enumerate(tags)]
        else:
            spans = schemes.spans(tags, self.scheme)
        entities = [{"start": starts[s], "end": starts[e - 1] + len(sentence.tokens[e - 1]), "label": label}
                    for label, s, e in spans]
        return html.paragraph(text, [e | {"text": text[e["start"] : e["end"]]} for e in entities])

    def footer(self) -> str:
        return html.page_footer()


_JSON = json.JSONEncoder(ensure_ascii=False)
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def jsonl(record: dict) -> str:
    """One JSON line, UTF-8 kept readable, but U+0085/U+2028/U+2029 escaped: `str.splitlines()` breaks on them."""
    return _LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", _JSON.encode(record)) + "\n"
