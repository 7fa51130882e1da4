"""Output formats: a registry of writers that render tagged text or sentences as text.

A writer renders one record at a time into a string, so `--workers` processes can render chunks of a
stream in parallel and the parent writes them in order; `header` and `footer` come once. The CLI's
`--output-format` choices are this registry's names, and the Python API can call any writer:

>>> writer = WRITERS["jsonl"](tagger.entity_types)
>>> writer.text(next(pipeline.tag_texts(tagger, ["Angela Merkel visited Paris."])))
'{"text": "Angela Merkel visited Paris.", "entities": [...]}\\n'

Adding a format: a Writer subclass decorated with `@register("name")`.
"""
from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, Sequence

from corpora import schemes
from corpora.conll import Sentence
from corpora.conll_writer import format_sentence
from tagger.reports import html

if TYPE_CHECKING:
    from tagger.tagging.pipeline import SentenceScores, TaggedText

WRITERS: dict[str, type["Writer"]] = {}
SCORE_DIGITS = 4  # decimal places of the CoNLL writer's score column


def register(name: str) -> Callable[[type["Writer"]], type["Writer"]]:
    def add(cls: type[Writer]) -> type[Writer]:
        cls.name = name
        WRITERS[name] = cls
        return cls
    return add


class Writer(ABC):
    """Renders records as text. `entity_types` are what the model finds (Tagger.entity_types: PER, LOC, ...;
    for plain tags such as POS, the tags), the HTML legend's entries; `scheme` is the scheme of the tags it is
    given (None for plain tags); all known before the first record. `scored`: whether entities will carry
    scores (the HTML legend then explains how a low one looks)."""

    name = ""

    def __init__(self, entity_types: Sequence[str] = (), scheme: str | None = None, title: str = "tagger",
                 scored: bool = False):
        self.entity_types, self.scheme, self.title, self.scored = list(entity_types), scheme, title, scored

    def header(self) -> str:
        return ""

    @abstractmethod
    def text(self, tagged: "TaggedText") -> str:
        """One raw-text input line, tagged."""

    @abstractmethod
    def sentence(self, sentence: Sentence, tags: Sequence[str], scores: "SentenceScores | None" = None) -> str:
        """One tokenised sentence (tokens or CoNLL input) with its predicted tags (and, when scored, their
        scores)."""

    def footer(self) -> str:
        return ""


@register("jsonl")
class JsonlWriter(Writer):
    """One JSON object a line: {"text", "entities"} for raw text, {"tokens", "tags"} for sentences."""

    def text(self, tagged: "TaggedText") -> str:
        if tagged.alternatives is None:
            return jsonl({"text": tagged.text, "entities": tagged.entities})
        return jsonl({"text": tagged.text, "entities": tagged.entities, "alternatives": tagged.alternatives})

    def sentence(self, sentence: Sentence, tags: Sequence[str], scores: "SentenceScores | None" = None) -> str:
        """With scores, "scores" holds each chosen tag's marginal; with n-best, "alternatives" the n best tag
        sequences [{"tags", "probability"}]."""
        record = {"tokens": list(sentence.tokens), "tags": list(tags)}
        if scores is not None and scores.tags is not None:
            record["scores"] = scores.tags
        if scores is not None and scores.alternatives is not None:
            record["alternatives"] = scores.alternatives
        return jsonl(record)


@register("conll")
class ConllWriter(Writer):
    """A token a line with its predicted tag as a new last column (CoNLL input keeps all its columns, so
    gold and prediction stand side by side, as conlleval reads them); a blank line after each sentence.
    A -DOCSTART- line of the input comes out where it was, predicted O (documents keep their boundaries).
    Scored, one more column: the marginal of the model's chosen tag at that token, to SCORE_DIGITS places."""

    def text(self, tagged: "TaggedText") -> str:
        if tagged.scores is None:
            return "".join(format_sentence(Sentence(tuple(tokens)), tags) for tokens, tags in tagged.sentences())
        return "".join(self.sentence(Sentence(tuple(tokens)), tags, scores)
                       for (tokens, tags), scores in zip(tagged.sentences(), tagged.scores))

    def sentence(self, sentence: Sentence, tags: Sequence[str], scores: "SentenceScores | None" = None) -> str:
        if not sentence.tokens:
            return ""
        if sentence.rows:
            plain = format_sentence(sentence, tags, "conll2003", append=True, document=True)
        else:
            plain = format_sentence(sentence, tags, document=True)
        if scores is not None and scores.tags is not None:
            return _scored(plain, scores.tags)
        return plain


@register("html")
class HtmlWriter(Writer):
    """One self-contained page (tagger/reports/html.py): a paragraph an input line or sentence, entities marked with
    their label's colour, a legend of the model's entity types; streams in constant memory."""

    def header(self) -> str:
        return html.page_header(self.entity_types, self.title, self.scored)

    def text(self, tagged: "TaggedText") -> str:
        return html.paragraph(tagged.text, tagged.entities)

    def sentence(self, sentence: Sentence, tags: Sequence[str], scores: "SentenceScores | None" = None) -> str:
        """The tokens joined by spaces, each entity (or, for plain tags, each token) marked, with its score."""
        starts = [sum(len(t) + 1 for t in sentence.tokens[:i]) for i in range(len(sentence.tokens))]
        text = " ".join(sentence.tokens)
        spans = schemes.tag_spans(tags, self.scheme)
        entities = [{"start": starts[s], "end": starts[e - 1] + len(sentence.tokens[e - 1]), "label": label}
                    for label, s, e in spans]
        if scores is not None and scores.entities is not None:
            entities = [e | {"score": p} for e, p in zip(entities, scores.entities)]
        return html.paragraph(text, [e | {"text": text[e["start"] : e["end"]]} for e in entities])

    def footer(self) -> str:
        return html.page_footer()


def _scored(plain: str, tag_scores: Sequence[float]) -> str:
    """A sentence as written without scores, each token line followed by its tag's score (tab-separated where
    the line is: a field holds a space); the -DOCSTART- line before it, if any, has no score."""
    document, _, body = plain.rstrip("\n").rpartition("\n\n")
    lines = [f"{line}{_separator(line)}{p:.{SCORE_DIGITS}f}" for line, p in zip(body.split("\n"), tag_scores)]
    return (f"{document}\n\n" if document else "") + "\n".join(lines) + "\n\n"


def _separator(line: str) -> str:
    return "\t" if "\t" in line else " "


_JSON = json.JSONEncoder(ensure_ascii=False)
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def jsonl(record: dict) -> str:
    """One JSON line, UTF-8 kept readable, but U+0085/U+2028/U+2029 escaped: `str.splitlines()` breaks on them."""
    return _LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", _JSON.encode(record)) + "\n"
