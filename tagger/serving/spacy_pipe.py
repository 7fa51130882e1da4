"""A spaCy pipeline component: `nlp.add_pipe("bilstm_tagger", config={"model": "model/"})` sets `doc.ents`.

spaCy finds the factory through the `spacy_factories` entry point (pyproject.toml), so no import is needed;
spaCy is optional (pip install 'bilstm-tagger[spacy]'). The model is any model the tagger loads: a
directory or "hf://ORG/NAME[@REV]" (tagger/hub.py).

- The tagger reads `doc.text` with its own tokeniser (the one it was trained for), exactly as `tagger predict`
  does, and its entities' character offsets become spaCy spans with `doc.char_span`. When an entity's
  boundaries fall inside a spaCy token (the two tokenisers disagree), `alignment_mode` says what happens:
  "contract" (the default) keeps the spaCy tokens wholly inside the entity and drops an entity that has none;
  "expand" takes every token the entity touches, and drops an entity that would then overlap the one before
  it; "strict" drops it. `BiLSTMTagger.alignment` counts each case: exact, contracted, expanded, dropped.
- With `scores` (the default) `doc.spans[spans_key]` (default "sc", spancat's) holds the same spans and
  `.attrs["scores"]` each one's exact probability under the CRF, as spancat stores its scores.
- `nlp.pipe(texts, batch_size=N)` tags each batch of N docs in one `Tagger.predict` call: the engine's batches
  (`engine_batch_size` sentences, as `tagger predict --batch-size`) run across the N docs' sentences sorted by
  length, each padded to its longest. spaCy hands over 1000 docs at a time by default, a quarter of the 4,096
  lines `tagger predict` sorts together, so its default 256 would join wider ranges of lengths: on CoNLL-2003's
  test sentences (46,801 tokens) 85,341 token-steps and 527 LSTM steps, against the command's 69,032 and 290.
  Half that, 128 (the default here), gives 65,117 and 703: a quarter less work in more, smaller steps
  (bench/spacy_speed.py prints these counts and times both; bench/README.md has the figures measured alone).
- Per doc the component adds only `doc.text`, one `doc.char_span` per entity, `doc.set_ents` (what `doc.ents =`
  does, without making each span a second time) and, with scores, the span group.
- `nlp.to_disk` copies the model's files (config.json and those its checksums cover) into the pipeline's
  directory, so the saved pipeline stands alone; `spacy.load` tags with that copy. The model named in the
  config is read only when a doc is first tagged (spacy.load never reads it: the copy is loaded instead).
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc, Span, SpanGroup
from spacy.util import minibatch

from tagger import store
from tagger.errors import ConfigError, ModelError
from tagger.tagging.tagger import Tagger

FACTORY = "bilstm_tagger"
ENGINE_BATCH_SIZE = 128  # sentences per engine call: half tagger predict's, for spaCy's smaller batches of docs
ALIGNMENT_MODES = ("strict", "contract", "expand")
CASES = ("exact", "contracted", "expanded", "dropped")


@Language.factory(FACTORY, default_config={"spans_key": "sc", "scores": True, "alignment_mode": "contract",
                                           "engine_batch_size": ENGINE_BATCH_SIZE})
def make_component(nlp: Language, name: str, model: str, spans_key: str, scores: bool,
                   alignment_mode: str, engine_batch_size: int) -> "BiLSTMTagger":
    """The factory spaCy calls for add_pipe("bilstm_tagger", config={"model": ...})."""
    return BiLSTMTagger(name, model, spans_key=spans_key, scores=scores, alignment_mode=alignment_mode,
                        engine_batch_size=engine_batch_size)


class BiLSTMTagger:
    """Sets doc.ents (and doc.spans[spans_key] with scores) from a tagger model; see the module's docstring."""

    def __init__(self, name: str, model: str, spans_key: str = "sc", scores: bool = True,
                 alignment_mode: str = "contract", engine_batch_size: int = ENGINE_BATCH_SIZE):
        if alignment_mode not in ALIGNMENT_MODES:
            raise ConfigError(f"alignment_mode {alignment_mode!r}: one of {', '.join(ALIGNMENT_MODES)}")
        if isinstance(engine_batch_size, bool) or not isinstance(engine_batch_size, int) or engine_batch_size < 1:
            raise ConfigError(f"engine_batch_size {engine_batch_size!r}: a whole number of sentences, at least 1")
        self.name, self.model, self.spans_key = name, str(model), spans_key
        self.scores, self.alignment_mode, self.engine_batch_size = scores, alignment_mode, engine_batch_size
        self.alignment: Counter = Counter({case: 0 for case in CASES})
        self._tagger: Tagger | None = None
        self._directory: Path | None = None

    @property
    def tagger(self) -> Tagger:
        """The loaded model, read on first use from the configured `model` (or set by from_disk)."""
        if self._tagger is None:
            self._use(store.resolve(self.model))
        return self._tagger

    @property
    def labels(self) -> tuple[str, ...]:
        """The entity types the model finds; empty until it is loaded (spacy.load asks before from_disk, and
        must not read the model the config names)."""
        return tuple(self._tagger.entity_types) if self._tagger is not None else ()

    def __call__(self, doc: Doc) -> Doc:
        return self._tag([doc])[0]

    def pipe(self, stream: Iterable[Doc], batch_size: int = 1000) -> Iterator[Doc]:
        """Tag docs `batch_size` at a time (nlp.pipe passes its own, spaCy's default 1000), each batch in one
        Tagger.predict call: the more docs, the closer the lengths its engine batches join (less padding)."""
        for batch in minibatch(stream, size=batch_size):
            yield from self._tag(batch)

    def _tag(self, docs: Sequence[Doc]) -> Sequence[Doc]:
        """Tag the docs' texts in one Tagger.predict call, then set each doc's entities (and span group)."""
        found = self.tagger.predict([doc.text for doc in docs], scores=self.scores, batch_size=self.engine_batch_size)
        for doc, entities in zip(docs, found):
            spans, probabilities = to_spans(doc, entities, self.alignment_mode, self.alignment)
            doc.set_ents(spans)  # `doc.ents = spans` makes every span again before calling this
            if self.scores:
                scores = np.array(probabilities, dtype="float32")  # None (no score) -> nan
                doc.spans[self.spans_key] = SpanGroup(doc, name=self.spans_key, spans=spans, attrs={"scores": scores})
        return docs

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Copy the model's files into `path` (spaCy gives the component its own folder of the pipeline)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        names = ["config.json", *self.tagger.meta.get("sha256", {})]  # loads the model (and sets _directory)
        if self._directory.resolve() == path.resolve():
            return
        for name in names:
            shutil.copyfile(self._directory / name, path / name)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> "BiLSTMTagger":
        """Load the copy to_disk wrote (checked as any model directory is)."""
        self._use(Path(path))
        return self

    def _use(self, directory: Path) -> None:
        tagger = Tagger.load(directory)
        if tagger.scheme is None:
            raise ModelError("tags plain labels (like POS tags), not entities: the spaCy component sets doc.ents "
                             "and needs an entity model", path=str(directory))
        self._tagger, self._directory = tagger, directory


def to_spans(doc: Doc, entities: Sequence[dict], mode: str, counts: Counter | None = None
             ) -> tuple[list[Span], list[float]]:
    """spaCy spans of the tagger's entities (character offsets into doc.text), in order, and their scores
    (None where the entity has none), aligned by `mode` (see the module's docstring); `counts` gets one
    exact/contracted/expanded/dropped per entity."""
    counts = Counter() if counts is None else counts
    spans: list[Span] = []
    probabilities: list[float | None] = []
    for entity in entities:
        span, case = _align(doc, entity, mode)
        if span is not None and spans and span.start < spans[-1].end:  # an expanded span reaching the last
            span, case = None, "dropped"
        counts[case] += 1
        if span is not None:
            spans.append(span)
            probabilities.append(entity.get("score"))
    return spans, probabilities


def _align(doc: Doc, entity: dict, mode: str) -> tuple[Span | None, str]:
    """One doc.char_span call: the span, and whether it is the entity's characters exactly."""
    start, end = entity["start"], entity["end"]
    span = doc.char_span(start, end, label=entity["label"], alignment_mode=mode)
    if span is None or len(span) == 0:
        return None, "dropped"
    if span.start_char == start and span.end_char == end:
        return span, "exact"
    return span, "contracted" if mode == "contract" else "expanded"
