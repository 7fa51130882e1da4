"""Where sentences come from (a CoNLL file or a `datasets` reference) and the checks on their tags."""
from __future__ import annotations

import hashlib
import os
import re
import sys
from collections import Counter
from typing import Callable, Iterable, Iterator, Sequence

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


# A scheme prefix with nothing after its dash ("B-"): a type lost on the way, never a plain label.
_NO_TYPE = re.compile(r"[BIESLUM]-")
# What an entity tag with a prefix no scheme has looks like: one capital letter, a dash, a type ("X-LOC").
_ENTITY_LIKE = re.compile(r"[A-Z]-\w.*")


def _warn_stderr(text: str) -> None:
    print(text, file=sys.stderr)


def check_tags(sentences: Sequence[Sentence], source: str, scheme: str | None = None,
               warn: Callable[[str], None] = _warn_stderr) -> str | None:
    """Detect (or check) the corpus's scheme; a malformed tag raises InputError at its file and line.

    A scheme given (not "auto") must fit every tag. Plain tags that look like entity tags with a prefix no
    scheme has ("X-LOC") are kept as plain tags, but `warn` is called once, naming the first such line.
    """
    tags = {t for s in sentences for t in (s.tags or ())}
    if any(map(_NO_TYPE.fullmatch, tags)):
        tag, line = next(_first_line(sentences, _NO_TYPE.fullmatch))
        raise InputError(f"tag {tag!r} fits no tagging scheme: a prefix without an entity type (expected "
                         f"e.g. {tag}PER)", path=source, line=line)
    prefixed = _span_tagged(tags)
    if prefixed and not all(map(schemes.is_span_tag, tags)):
        tag, line = next(_first_line(sentences, lambda t: not schemes.is_span_tag(t)))
        raise InputError(f"tag {tag!r} fits no tagging scheme ({_split_error(tag)})", path=source, line=line)
    if not prefixed and any(map(_entity_like, tags)):
        tag, line = next(_first_line(sentences, _entity_like))
        where = f"{source}:{line}" if line else source
        warn(f"warning: {where}: tag {tag!r} looks like an entity tag, but {tag[0]}- is no prefix of "
             "IOB1/IOB2/BIOES/BILOU/BMES: the tags are read as plain labels (like POS tags)")
    if scheme in (None, "auto"):
        try:
            found = schemes.detect_scheme(s.tags or () for s in sentences) if prefixed else None
        except ValueError as e:
            raise InputError(str(e), path=source) from None
        if found in ("iob1", "iob2"):
            _warn_misplaced(sentences, source, found, warn)
        return found
    return _check_given_scheme(sentences, tags, source, schemes.normalize_scheme(scheme), prefixed)


def _warn_misplaced(sentences: Sequence[Sentence], source: str, scheme: str, warn: Callable[[str], None]) -> None:
    """One warning when a few entities open the other IOB way (slips in a file detected as `scheme`): their
    count and the first one's line. Such a tag still starts an entity, as conlleval reads it."""
    first, count = None, 0
    for s in sentences:
        positions = schemes.misplaced(s.tags or (), scheme)
        if positions and first is None:
            first = s.line + positions[0] if s.line else None
        count += len(positions)
    if not count:
        return
    entities = sum(len(schemes.spans(s.tags or (), scheme)) for s in sentences)
    wrong, right = ("I", "B") if scheme == "iob2" else ("B", "I")
    where = f"{source}:{first}" if first else source
    warn(f"warning: {where}: {count:,} of {entities:,} entities start with {wrong}- where {scheme.upper()} has "
         f"{right}- (the first here); the rest are {scheme.upper()}, so the file is read as {scheme.upper()}, each "
         f"such {wrong}- starting an entity (use --scheme to say otherwise)")


def _first_line(sentences: Sequence[Sentence], wrong: Callable[[str], object]) -> Iterator[tuple[str, int | None]]:
    """(tag, line number or None) of each tag for which `wrong` is true, in file order."""
    for s in sentences:
        for i, tag in enumerate(s.tags or ()):
            if wrong(tag):
                yield tag, s.line + i if s.line else None


def _entity_like(tag: str) -> bool:
    return _ENTITY_LIKE.fullmatch(tag) is not None and not schemes.is_span_tag(tag)


def _split_error(tag: str) -> str:
    try:
        schemes.split_tag(tag)
    except ValueError as e:
        return str(e)
    return ""


def _fits(tag: str, scheme: str) -> bool:
    try:
        schemes.spans([tag], scheme)
    except ValueError:
        return False
    return True


def _check_given_scheme(sentences: Sequence[Sentence], tags: set[str], source: str, scheme: str,
                        prefixed: bool) -> str:
    """`scheme` (from --scheme) when every tag is one of its tags and their order does not contradict it;
    InputError at the first tag that is not, or at the first contradiction (_refuse_contradiction)."""
    if all(_fits(t, scheme) for t in tags):
        if prefixed:
            _refuse_contradiction(sentences, source, scheme)
        return scheme
    try:
        found = schemes.detect_scheme(s.tags or () for s in sentences) if prefixed else None
    except ValueError:
        found = None
    looks = f"the file's tags look like {found.upper()}" if found else "the file's tags have no scheme"
    tag, line = next(_first_line(sentences, lambda t: not _fits(t, scheme)))
    raise InputError(f"tag {tag!r} is not a tag of the {scheme.upper()} scheme given by --scheme ({looks}: "
                     "drop --scheme to detect it)", path=source, line=line)


def _refuse_contradiction(sentences: Sequence[Sentence], source: str, scheme: str) -> None:
    """InputError at the first tag whose place contradicts `scheme` when the file reads as another scheme:
    --scheme bioes on an IOB2 file (B-PER then O: BIOES ends an entity with E- or S-), --scheme iob1 on IOB2
    (B- opening an entity after O). A file detected as `scheme` itself passes, its few slips warned about."""
    try:
        found = schemes.detect_scheme(s.tags or () for s in sentences)
    except ValueError:
        return
    if found in (None, scheme):
        return
    for s in sentences:
        tags = s.tags or ()
        if schemes.is_valid(tags, scheme):
            continue
        wrong = schemes.misplaced(tags, scheme)
        i = wrong[0] if wrong else max(j for j, t in enumerate(tags) if t != "O")  # no valid end
        where = f" after {tags[i - 1]!r}" if i and wrong else " at the sentence's end" if not wrong else ""
        raise InputError(f"tag {tags[i]!r}{where} contradicts the {scheme.upper()} scheme given by --scheme: "
                         f"the file's tags read as {found.upper()} (drop --scheme to detect it, or tagger convert "
                         f"--to {scheme})", path=source, line=s.line + i if s.line else None)


def choose_tokenizer(sentences: Iterable[Sentence]) -> str:
    """"chars" when nearly every token is one character (one-character-a-line corpora), else "words"."""
    tokens = [t for s in sentences for t in s.tokens]
    single = sum(len(t) == 1 for t in tokens)
    return "chars" if tokens and single >= 0.9 * len(tokens) else "words"


def check_tokenizer_fits(model_tokenizer: str, sentences: Sequence[Sentence], source: str, model: str) -> None:
    """InputError when `sentences` are tokenised otherwise than a model (--init) reads text: a character
    model trained on words scores its dev F1 on words, then tags nothing in raw text, which it cuts into
    characters. A model whose tokeniser is still "auto" (never resolved) is not checked."""
    mine = choose_tokenizer(sentences)
    if model_tokenizer not in ("words", "chars") or mine == model_tokenizer:
        return
    said = {"words": "words", "chars": "characters, one a token"}
    example = next((t for s in sentences for t in s.tokens if (len(t) > 1) == (mine == "words")), "")
    raise InputError(f"--init {model} tokenises {said[model_tokenizer]} ({model_tokenizer}), but the training "
                     f"tokens are {said[mine]} ({mine}, e.g. {example!r}): a model reads one tokenisation; train "
                     "without --init, or on data tokenised as the model's", path=source)


def warn_if_dev_is_train(train: Sequence[Sentence], dev: Sequence[Sentence], train_ref: str, dev_ref: str,
                         warn: Callable[[str], None] = _warn_stderr) -> None:
    """A warning naming both when the dev data is the training data (the same file, or the same sentences
    under another name): its F1 would be training F1, and the best epoch chosen on data the model saw."""
    same_file = os.path.isfile(train_ref) and os.path.isfile(dev_ref) and os.path.samefile(train_ref, dev_ref)
    if same_file or sentences_sha256(train) == sentences_sha256(dev):
        warn(f"warning: --dev {dev_ref} holds the training data {train_ref} "
             f"({'the same file' if same_file else 'the same sentences'}): its score is a training score and "
             "picks the epoch that fits training best; give held-out sentences")


def check_model_fits(model_scheme: str | None, gold_scheme: str | None, source: str) -> None:
    """Refuse to score a span-tagging model (NER, chunks) on plain tags (POS), or the other way round:
    no score can compare them."""
    if model_scheme is not None and gold_scheme is None:
        raise InputError(f"the model tags spans ({model_scheme.upper()}) but these tags have no scheme (plain "
                         "labels, like POS tags): score it on a file tagged like its training corpus", path=source)
    if model_scheme is None and gold_scheme is not None:
        raise InputError(f"the model tags plain labels (like POS tags) but these tags are spans "
                         f"({gold_scheme.upper()}): score it on a file tagged like its training corpus", path=source)


def _span_tagged(tags: set[str]) -> bool:
    """Whether a tag set encodes spans: every tag is a span tag (an all-O corpus too), or some tag is
    prefix-label (B-PER) and most tags are span tags.

    Not `schemes.has_prefixes` (every tag must split): one stray `X-PER` or `B-` would then turn an NER corpus
    into a plain-label one, silently, instead of being reported at its line.
    """
    spans = [t for t in tags if schemes.is_span_tag(t)]
    if len(spans) == len(tags):
        return bool(tags)
    return any(t != "O" for t in spans) and 2 * len(spans) >= len(tags)


def unseen_labels(sentences: Iterable[Sentence], known_tags: Iterable[str]) -> list[str]:
    """Entity types (or plain tags) in `sentences` that training never saw."""
    known = {schemes.label_of(t) for t in known_tags}
    seen = Counter(schemes.label_of(t) for s in sentences for t in (s.tags or ()))
    return sorted(lab for lab in seen if lab not in known)


def feature_columns(sentence: Sentence, columns: Sequence[int]) -> list[list[str]]:
    """The values of the given columns, one list per column (F lists of T values)."""
    return [[row[c] for row in sentence.rows] for c in columns]


def check_feature_columns(sentences: Sequence[Sentence], columns: Sequence[int], source: str) -> None:
    """InputError naming the first sentence (its line) whose lines lack one of the feature `columns`: what
    training data and tagging input (CoNLL files, selection pools) are both checked for."""
    for s in sentences:
        width = len(s.rows[0]) if s.rows else 1
        for c in columns:
            if not -width <= c < width:
                raise InputError(f"feature column {c} does not exist (lines have {width} columns)",
                                 path=source, line=s.line or None)


def check_feature_columns_leak(sentences: Sequence[Sentence], columns: Sequence[int], source: str,
                               warn: Callable[[str], None] = _warn_stderr) -> None:
    """Refuse a feature column that holds the tags themselves (--features 3 on CoNLL-2003, --features pos on
    a token+tag file): the model would read the answer, score near 100 on dev and be useless on real text.
    A column that predicts the tags almost perfectly (each value mostly one tag) is allowed, with a warning."""
    labelled = [s for s in sentences if s.tags and s.rows]
    tags = Counter(t for s in labelled for t in s.tags)
    if not tags:
        return
    for c in columns:
        pairs = Counter((row[c], tag) for s in labelled for row, tag in zip(s.rows, s.tags))
        if all(value == tag for value, tag in pairs):
            raise InputError(f"--features: column {c} is the tag column (its values are the tags): a model "
                             "would read the answer; leave it out of --features", path=source)
        fit = _feature_fit(pairs, tags)
        if fit is not None:
            warn(f"warning: {source}: feature column {c} predicts the tags almost perfectly ({100 * fit:.1f}% of "
                 f"training tokens, against {100 * max(tags.values()) / sum(tags.values()):.1f}% for the most "
                 "common tag alone): is it derived from the tags? A model trained on it will fail on text "
                 "without it")


def _feature_fit(pairs: Counter, tags: Counter) -> float | None:
    """The share of tokens whose tag is the most common tag of their feature value, when it is almost all of
    them (≥ 98%, a tenth of the errors of always guessing the most common tag) and the column has about as
    few values as the tags (not a word-like column that memorises its way there); otherwise None."""
    best: dict[str, int] = {}
    for (value, _), count in pairs.items():
        best[value] = max(best.get(value, 0), count)
    if len(best) > 4 * len(tags) + 20:
        return None
    total = sum(tags.values())
    fit, baseline = sum(best.values()) / total, max(tags.values()) / total
    return fit if fit >= 0.98 and 1 - fit <= 0.1 * (1 - baseline) else None


def check_tag_column(sentences: Sequence[Sentence], source: str, tag_column: int | None = None) -> None:
    """Stop when the tag column holds words, not tags (columns swapped: tag first, token last): thousands
    of distinct values, most spelt like words, would make every word a label of its own."""
    tags = {t for s in sentences for t in (s.tags or ())}
    if len(tags) < 1000:
        return
    wordy = sum(1 for t in tags if any(ch.islower() for ch in t) and not any(ch in t for ch in "=|"))
    if wordy < 0.5 * len(tags):
        return
    which = "the last column" if tag_column is None else f"column {tag_column}"
    raise InputError(f"the tags ({which}) have {len(tags):,} distinct values that look like words, not tags: "
                     f"are the columns swapped? Tokens are read from the first column; give the tags' column "
                     f"with --tag-column N{_tag_like_columns(sentences)}", path=source)


def _tag_like_columns(sentences: Sequence[Sentence]) -> str:
    """' (column 0 has 9 distinct values)': the columns with few values, where the tags probably are."""
    width = min((len(s.rows[0]) for s in sentences if s.rows), default=0)
    counts = [len({row[c] for s in sentences for row in s.rows}) for c in range(width)]
    few = [f"column {c} has {n} distinct values" for c, n in enumerate(counts) if n <= 100]
    return f" ({'; '.join(few)})" if few else ""


def sentences_sha256(sentences: Iterable[Sentence]) -> str:
    """SHA-256 of the sentences' rows (every column, or tokens and tags): equal for the same corpus wherever
    its file lives, different as soon as one token, tag or sentence break differs."""
    digest = hashlib.sha256()
    for s in sentences:
        for row in s.rows or zip(s.tokens, s.tags or ()):
            digest.update("\t".join(row).encode("utf-8") + b"\n")
        digest.update(b"\n")
    return digest.hexdigest()
