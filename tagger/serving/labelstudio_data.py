"""What Label Studio sends the backend (tagger/serving/labelstudio.py), checked before anything is stored: the
labelling config, the tasks' texts and the annotations; and the annotations as CoNLL training sentences.

An annotation is checked whole before it reaches annotations.jsonl: the task's id (a whole number or a
string), its text (a string), the result (a list of regions), each "labels" region's value (an object with
whole-number "start" < "end" within the text and "labels", a list of label names without spaces), and the
regions not overlapping once laid on the model's tokens. A refusal is a TaggerError (a 400 with one line).
annotations.jsonl is read back with the same checks: a line that fails them (written by hand, or by an
older backend) is skipped with a warning naming it, never an error for the annotations after it.
"""
from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from corpora import schemes
from corpora.conll import Sentence
from corpora.conll_writer import format_sentence
from tagger.errors import TaggerError
from tagger.text import sentence_ends

if TYPE_CHECKING:
    from tagger.tagging.tagger import Tagger

log = logging.getLogger("tagger.labelstudio")

Span = tuple[str, int, int]  # (label, start, end): character offsets into the text


@dataclass(frozen=True)
class LabelConfig:
    """What a labelling config says about named entities: the Labels control's name (from_name), the Text
    object's name (to_name), the task data key holding the text, and the labels offered."""

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]


def parse_label_config(xml: str) -> LabelConfig:
    """The first <Labels> whose toName is a <Text>; TaggerError (a 400 for the caller) when there is none."""
    if not isinstance(xml, str) or not xml.strip():
        raise TaggerError("no labelling config (label_config / schema)")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as e:
        raise TaggerError(f"the labelling config is not XML ({e})") from None
    texts = {t.get("name"): t.get("value", "") for t in root.iter() if t.tag in ("Text", "HyperText")}
    for labels in root.iter("Labels"):
        target = labels.get("toName", "")
        if labels.get("name") and target in texts:
            values = tuple(x.get("value") for x in labels.iter("Label") if x.get("value"))
            return LabelConfig(labels.get("name"), target, texts[target].lstrip("$"), values)
    raise TaggerError("the labelling config has no <Labels name=... toName=...> pointing at a <Text>")


def task_text(task: Any, key: str) -> str:
    """The text of a task under data.`key`; TaggerError when the task or its text is not what it should be."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise TaggerError("each task must be an object with a 'data' object")
    text = task["data"].get(key)
    if not isinstance(text, str):
        raise TaggerError(f"task {str(task.get('id', '?'))[:40]} has no text under data.{key} "
                          f"(the config's <Text value=\"${key}\">)")
    return text


@dataclass(frozen=True)
class Annotation:
    """One annotation, checked: its task's id, its own id, the text and its labelled character spans."""

    task: int | str
    id: int | str | None
    text: str
    spans: tuple[Span, ...]
    cancelled: bool = False

    def record(self) -> dict:
        """What annotations.jsonl holds for it (read back by `from_record`)."""
        return {"task": self.task, "annotation": self.id, "text": self.text, "spans": [list(s) for s in self.spans],
                "cancelled": self.cancelled}

    @classmethod
    def from_record(cls, record: Any) -> "Annotation":
        """An annotations.jsonl line's object, checked as a webhook's annotation is."""
        if not isinstance(record, dict) or not isinstance(record.get("spans"), list):
            raise TaggerError("not an annotation record")
        text = _expect_text(record.get("text"))
        spans = [_span(s[0] if isinstance(s, list) and s else None, s[1:] if isinstance(s, list) else None, text)
                 for s in record["spans"]]
        return cls(_task_id(record.get("task")), _annotation_id(record.get("annotation")), text,
                   _no_overlap(spans), record.get("cancelled") is True)


def parse_annotation(body: dict) -> Annotation:
    """A webhook's ANNOTATION_CREATED / ANNOTATION_UPDATED body, checked whole (module docstring)."""
    task, annotation = body.get("task"), body.get("annotation")
    if not isinstance(task, dict) or not isinstance(annotation, dict):
        raise TaggerError("'task' and 'annotation' must be objects")
    task_id = _task_id(task.get("id"))
    project = body.get("project") if isinstance(body.get("project"), dict) else {}
    key = parse_label_config(project["label_config"]).data_key if project.get("label_config") else None
    text = _annotated_text(task, key)
    result = annotation.get("result", [])
    if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
        raise TaggerError("the annotation's 'result' must be a list of regions (objects)")
    spans = []
    for region in result:
        if region.get("type") != "labels":  # another control's region (choices, relations...): not ours
            continue
        value = region.get("value")
        if not isinstance(value, dict):
            raise TaggerError("a 'labels' region's 'value' must be an object with start, end and labels")
        labels = value.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise TaggerError("a region's 'labels' must be a list of label names")
        if labels:  # a region without a label marks nothing
            spans.append(_span(labels[0], [value.get("start"), value.get("end")], text))
    cancelled = annotation.get("was_cancelled", False)
    if not isinstance(cancelled, bool):
        raise TaggerError("the annotation's 'was_cancelled' must be true or false")
    return Annotation(task_id, _annotation_id(annotation.get("id")), text, _no_overlap(spans), cancelled)


def _task_id(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise TaggerError("the task's 'id' must be a whole number or a string")
    return value


def _annotation_id(value: Any) -> int | str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str, type(None))):
        raise TaggerError("the annotation's 'id' must be a whole number or a string")
    return value


def _expect_text(text: Any) -> str:
    if not isinstance(text, str):
        raise TaggerError("the task's text must be a string")
    return text


def _span(label: Any, bounds: Any, text: str) -> Span:
    """(label, start, end), checked: a label name without spaces, whole numbers 0 <= start < end <= len(text)."""
    if not isinstance(label, str) or not label or any(c.isspace() for c in label):
        raise TaggerError(f"a region's label must be a name without spaces, not {str(label)[:40]!r}")
    if not isinstance(bounds, list) or len(bounds) != 2 or \
            not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
        raise TaggerError(f"a region ({label}) must have whole-number 'start' and 'end' character offsets")
    start, end = bounds
    if not 0 <= start < end <= len(text):
        raise TaggerError(f"region [{start}, {end}) ({label}) is outside the task's text of {len(text)} "
                          "characters (or empty)")
    return label, start, end


def _no_overlap(spans: list[Span]) -> tuple[Span, ...]:
    ordered = sorted(spans, key=lambda s: (s[1], s[2]))
    for a, b in zip(ordered, ordered[1:]):
        if b[1] < a[2]:
            raise TaggerError(f"regions [{a[1]}, {a[2]}) ({a[0]}) and [{b[1]}, {b[2]}) ({b[0]}) overlap")
    return tuple(ordered)


def _annotated_text(task: dict, key: str | None) -> str:
    """The annotated text: the task's data under `key` (from the project's labelling config), else its only
    string, else data.text."""
    if key is not None:
        return task_text(task, key)
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    strings = [v for v in data.values() if isinstance(v, str)]
    if len(strings) == 1:
        return strings[0]
    return task_text(task, "text")


# -- annotations.jsonl -> train.txt -----------------------------------------------------------------------------


def read_annotations(path: Path) -> Iterator[Annotation]:
    """Each checked annotation of annotations.jsonl, in order; a line that fails the checks is skipped with a
    warning (`path:line: problem`)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            try:
                yield Annotation.from_record(json.loads(line))
            except (ValueError, TaggerError) as e:  # json.JSONDecodeError is a ValueError
                log.warning("%s:%d: skipped: %s", path, number, getattr(e, "message", None) or e)


def conll_blocks(tagger: "Tagger", text: str, spans: tuple[Span, ...]) -> list[str]:
    """The text's sentences as CoNLL blocks, tokenised as the model tokenises, tagged from the character
    spans (a token belongs to a span it overlaps) in the scheme the model was trained on. TaggerError when
    two spans share a token."""
    tokenizer = "words" if tagger.config.tokenizer == "auto" else tagger.config.tokenizer
    tokens, ends = sentence_ends(text, tokenizer)
    scheme = tagger.vocab.source_scheme or "iob2"
    blocks, first = [], 0
    for end in ends:
        starts, stops = tokens.starts[first:end], tokens.ends[first:end]
        mine = []
        for label, s, e in spans:
            inside = [i for i, (a, b) in enumerate(zip(starts, stops)) if a < e and b > s]
            if inside:
                mine.append((label, inside[0], inside[-1] + 1))
        try:
            tags = schemes.from_spans(mine, end - first, scheme)
        except ValueError:
            raise TaggerError("two regions fall on the same token (the model's tokens: "
                              f"{' '.join(tokens.texts[first:end])[:80]!r})") from None
        blocks.append(format_sentence(Sentence(tuple(tokens.texts[first:end])), tags))
        first = end
    return blocks
