"""Where sentences come from (a CoNLL file or a `datasets` reference) and the checks on their tags."""
from __future__ import annotations

import os
from collections import Counter
from typing import Iterable, Sequence

from corpora import schemes
from corpora.conll import Sentence, read_conll
from tagger.errors import InputError


def read_sentences(ref: str | os.PathLike, format: str = "auto", tag_column: int | None = None,
                   labelled: bool = True, split: str = "train") -> list[Sentence]:
    """All sentences of a CoNLL file, or of a dataset name / local `datasets` directory (split `split`)."""
    ref_str = os.fspath(ref)
    if not os.path.isfile(ref_str):
        from corpora import hf

        if hf.is_dataset_ref(ref_str):
            return list(hf.load_sentences(ref_str, split=split))
    return list(read_conll(ref_str, format=format, tag_column=tag_column, labelled=labelled))


def check_tags(sentences: Sequence[Sentence], source: str, scheme: str | None = None) -> str | None:
    """Detect (or check) the corpus's scheme; a malformed tag raises InputError at its file and line."""
    prefixed = _span_tagged({t for s in sentences for t in (s.tags or ())})
    if prefixed:
        for s in sentences:
            for i, tag in enumerate(s.tags or ()):
                try:
                    schemes.split_tag(tag)
                except ValueError as e:
                    raise InputError(f"tag {tag!r} fits no tagging scheme ({e})", path=source,
                                     line=s.line + i if s.line else None) from None
    if scheme in (None, "auto"):
        try:
            return schemes.detect_scheme(s.tags or () for s in sentences) if prefixed else None
        except ValueError as e:
            raise InputError(str(e), path=source) from None
    return schemes.normalize_scheme(scheme)


def _span_tagged(tags: set[str]) -> bool:
    """Whether a tag set encodes spans: every tag is a span tag (an all-O corpus too), or some tag is
    prefix-label (B-PER) and most tags are span tags.

    Not `schemes.has_prefixes` (every tag must split): one stray `X-PER` or `B-` would then turn an NER corpus
    into a plain-label one, silently, instead of being reported at its line.
    """
    spans = [t for t in tags if _splits(t)]
    if len(spans) == len(tags):
        return bool(tags)
    return any(t != "O" for t in spans) and 2 * len(spans) >= len(tags)


def _splits(tag: str) -> bool:
    try:
        schemes.split_tag(tag)
    except ValueError:
        return False
    return True


def unseen_labels(sentences: Iterable[Sentence], known_tags: Iterable[str]) -> list[str]:
    """Entity types (or plain tags) in `sentences` that training never saw."""
    def label(tag: str) -> str:
        try:
            return schemes.split_tag(tag)[1] or tag
        except ValueError:
            return tag
    known = {label(t) for t in known_tags}
    seen = Counter(label(t) for s in sentences for t in (s.tags or ()))
    return sorted(lab for lab in seen if lab not in known)
