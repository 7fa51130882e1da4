"""corpora.schemes: span schemes, conlleval-style reading, conversion, repair and CRF transition constraints."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from corpora import schemes
from corpora.schemes import (
    SCHEMES,
    allowed_transitions,
    convert,
    detect_scheme,
    from_spans,
    has_prefixes,
    is_valid,
    misplaced,
    normalize_scheme,
    spans,
    split_tag,
)

LABELS = ("PER", "LOC", "X-Y")  # a label may contain '-'
PREFIXES = {"iob1": "BI", "iob2": "BI", "bioes": "BIES", "bilou": "BILU", "bmes": "BMES"}
PROPERTY = settings(max_examples=150, deadline=None)


def tag_names(scheme: str) -> list[str]:
    """Every tag of `scheme` over LABELS, O first."""
    return ["O"] + [f"{p}-{label}" for p in PREFIXES[scheme] for label in LABELS]


@st.composite
def span_sets(draw) -> tuple[list[tuple[str, int, int]], int]:
    """Non-overlapping sorted spans and a sequence length; adjacent same-label spans happen often."""
    result, position = [], 0
    pieces = st.tuples(st.integers(0, 2), st.integers(1, 3), st.sampled_from(LABELS))  # gap before, width, label
    for gap, width, label in draw(st.lists(pieces, max_size=5)):
        start = position + gap
        result.append((label, start, start + width))
        position = start + width
    return result, position + draw(st.integers(0, 2))


def random_tags(scheme: str):
    return st.lists(st.sampled_from(tag_names(scheme)), max_size=10)


# --- names and tags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("IOB2", "iob2"), ("iobes", "bioes"), ("BIOES", "bioes"), ("BMEOS", "bmes"), (" bilou ", "bilou")],
)
def test_normalize_scheme(name: str, expected: str):
    assert normalize_scheme(name) == expected


def test_normalize_scheme_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown tagging scheme 'bio'"):
        normalize_scheme("bio")


@pytest.mark.parametrize(
    "tag, expected", [("B-PER", ("B", "PER")), ("O", ("O", None)), ("I-X-Y", ("I", "X-Y")), ("U-a", ("U", "a"))]
)
def test_split_tag(tag: str, expected: tuple):
    assert split_tag(tag) == expected


@pytest.mark.parametrize("tag", ["", "B-", "X-PER", "PER", "O-PER", "B_PER", "b-PER", "-LRB-"])
def test_split_tag_rejects_non_span_tags(tag: str):
    with pytest.raises(ValueError, match="is not a span tag"):
        split_tag(tag)


def test_has_prefixes():
    assert has_prefixes(["B-PER", "O", "I-PER"])
    assert has_prefixes(["O"])
    assert not has_prefixes(["NN", "VBZ", "PUNCT"])
    assert not has_prefixes(["-LRB-", "NN"])
    assert not has_prefixes([])


@pytest.mark.parametrize("corpus, expected", [
    ([["B-PER", "I-PER", "O"], ["B-LOC"]], "iob2"),
    ([["O", "O"], []], "iob2"),
    ([["I-PER", "I-PER", "B-PER"]], "iob1"),  # a chunk starting with I- at the start
    ([["O", "I-PER"]], "iob1"),  # ... after O
    ([["B-PER", "I-LOC"]], "iob1"),  # ... after another type
    ([["O", "B-PER", "I-PER"]] * 5 + [["O", "I-LOC"]], "iob2"),  # B- opens most chunks: IOB2 with a slip
    ([["O", "I-PER", "I-PER"]] * 5 + [["O", "B-LOC"]], "iob1"),  # I- opens most chunks: IOB1 with a slip
    ([["I-PER", "B-PER"], ["O", "B-LOC"]], "iob1"),  # a tie between the readings: IOB1
    ([["B-PER", "E-PER", "S-LOC"]], "bioes"),
    ([["S-PER"]], "bioes"),
    ([["B-PER", "L-PER"], ["U-LOC"]], "bilou"),
    ([["B-PER", "M-PER", "E-PER"]], "bmes"),
    ([["NN", "VBZ"], ["DT"]], None),
    ([], None),
])
def test_detect_scheme(corpus: list[list[str]], expected: str | None):
    assert detect_scheme(iter(corpus)) == expected  # a one-pass iterator is enough


def test_misplaced_tags_are_the_ones_the_scheme_forbids_where_they_stand():
    tags = ["I-PER", "O", "B-LOC", "I-LOC", "I-ORG", "B-ORG", "O", "B-PER"]
    assert misplaced(tags, "iob2") == [0, 4]  # I- at the start, I- after another type
    assert misplaced(tags, "iob1") == [2, 7]  # B- after O (after its own type, position 5, is IOB1's use)
    assert misplaced(["B-PER", "E-PER", "E-PER"], "bioes") == [2]


@pytest.mark.parametrize(
    "corpus, named", [([["M-PER"], ["L-LOC"]], "L-, M-"), ([["I-PER", "M-PER"]], "I-, M-")]
)
def test_detect_scheme_rejects_mixed_schemes(corpus: list[list[str]], named: str):
    with pytest.raises(ValueError, match=f"tags mix prefixes {named} which no single scheme"):
        detect_scheme(corpus)


# --- reading spans -------------------------------------------------------------------------------------


def test_invalid_iob2_is_read_like_conlleval():
    assert spans(["O", "I-PER", "I-PER"], "iob2") == [("PER", 1, 3)]
    assert spans(["B-PER", "I-LOC"], "iob2") == [("PER", 0, 1), ("LOC", 1, 2)]
    assert spans(["B-PER", "B-PER", "I-PER"], "iob2") == [("PER", 0, 1), ("PER", 1, 3)]


def test_lenient_reading_in_the_other_schemes():
    assert spans(["I-PER", "B-PER", "O"], "iob1") == [("PER", 0, 1), ("PER", 1, 2)]
    assert spans(["B-PER", "O", "E-LOC"], "bioes") == [("PER", 0, 1), ("LOC", 2, 3)]  # unclosed B, lone E
    assert spans(["I-PER", "I-PER"], "bioes") == [("PER", 0, 2)]
    assert spans(["U-PER", "L-PER"], "bilou") == [("PER", 0, 1), ("PER", 1, 2)]
    assert spans(["B-PER", "M-PER"], "bmes") == [("PER", 0, 2)]


def test_spans_rejects_tags_of_another_scheme():
    with pytest.raises(ValueError, match="'E-PER' is not a tag of the IOB2 scheme"):
        spans(["B-PER", "E-PER"], "iob2")


@PROPERTY
@given(st.sampled_from(["iob2", "bioes"]).flatmap(lambda s: st.tuples(st.just(s), random_tags(s))))
def test_spans_agree_with_seqeval_on_any_sequence(case: tuple[str, list[str]]):
    scheme, tags = case
    assert spans(tags, scheme) == [(label, start, end + 1) for label, start, end in get_entities(list(tags))]


# --- writing spans and converting ----------------------------------------------------------------------


SAMPLE = [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5)]


@pytest.mark.parametrize("scheme, expected", [
    ("iob1", "I-PER I-PER B-PER O I-LOC"),
    ("iob2", "B-PER I-PER B-PER O B-LOC"),
    ("bioes", "B-PER E-PER S-PER O S-LOC"),
    ("bilou", "B-PER L-PER U-PER O U-LOC"),
    ("bmes", "B-PER E-PER S-PER O S-LOC"),
])
def test_from_spans(scheme: str, expected: str):
    assert from_spans(SAMPLE, 5, scheme) == expected.split()
    assert from_spans([("X", 0, 4)], 4, scheme)[1:3] == [("M" if scheme == "bmes" else "I") + "-X"] * 2


@pytest.mark.parametrize(
    "bad", [[("PER", 0, 2), ("LOC", 1, 3)], [("PER", 2, 2)], [("PER", 3, 6)], [("", 0, 1)]]
)
def test_from_spans_rejects_bad_spans(bad: list):
    with pytest.raises(ValueError):
        from_spans(bad, 5, "iob2")


def test_convert_and_repair_examples():
    assert convert(["I-PER", "B-PER", "O", "I-LOC"], "iob1", "bioes") == ["S-PER", "S-PER", "O", "S-LOC"]
    assert convert(["B-X", "I-X", "E-X"], "iobes", "bilou") == ["B-X", "I-X", "L-X"]
    assert convert(["O", "I-PER", "I-LOC"], "iob2", "iob2") == ["O", "B-PER", "B-LOC"]  # one scheme: repaired
    assert convert(["B-PER", "O"], "bioes", "bioes") == ["S-PER", "O"]


@PROPERTY
@given(span_sets(), st.sampled_from(SCHEMES))
def test_spans_read_back_what_from_spans_wrote(case, scheme: str):
    chunks, length = case
    tags = from_spans(chunks, length, scheme)
    assert len(tags) == length
    assert spans(tags, scheme) == chunks
    assert is_valid(tags, scheme)


@PROPERTY
@given(span_sets())
def test_convert_round_trips_between_every_pair_of_schemes(case):
    chunks, length = case
    for src, dst in itertools.permutations(SCHEMES, 2):
        tags = from_spans(chunks, length, src)
        assert convert(convert(tags, src, dst), dst, src) == tags, (src, dst)
        assert convert(tags, src, dst) == from_spans(chunks, length, dst)


@PROPERTY
@given(st.sampled_from(SCHEMES).flatmap(lambda s: st.tuples(st.just(s), random_tags(s))))
def test_converting_to_its_own_scheme_makes_any_sequence_valid_and_keeps_valid_ones(case: tuple[str, list[str]]):
    scheme, tags = case
    fixed = convert(tags, scheme, scheme)
    assert is_valid(fixed, scheme)
    assert is_valid(tags, scheme) == (fixed == tags)
    assert spans(fixed, scheme) == spans(tags, scheme)


# --- transitions ---------------------------------------------------------------------------------------


def allowed(tags: list[str], names: list[str], constraints) -> bool:
    """Whether a tag sequence passes (start, trans, end) over `names`."""
    start, trans, end = constraints
    ids = [names.index(t) for t in tags]
    if not ids:
        return True
    return start[ids[0]] and end[ids[-1]] and all(trans[a][b] for a, b in zip(ids, ids[1:]))


@PROPERTY
@given(span_sets(), st.sampled_from(SCHEMES))
def test_from_spans_output_is_allowed_by_the_transitions(case, scheme: str):
    chunks, length = case
    names = tag_names(scheme)
    assert allowed(from_spans(chunks, length, scheme), names, allowed_transitions(names, scheme))


@PROPERTY
@given(st.sampled_from(SCHEMES).flatmap(lambda s: st.tuples(st.just(s), random_tags(s))))
def test_transitions_allow_exactly_the_valid_sequences(case: tuple[str, list[str]]):
    scheme, tags = case
    names = tag_names(scheme)
    assert allowed(tags, names, allowed_transitions(names, scheme)) == is_valid(tags, scheme)


def test_iob2_transitions():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    start, trans, end = allowed_transitions(names, "iob2")
    t = {(a, b): trans[i][j] for i, a in enumerate(names) for j, b in enumerate(names)}
    assert start == [True, True, False, True, False]
    assert not t["O", "I-PER"] and not t["B-PER", "I-LOC"]
    assert t["I-PER", "I-PER"] and t["B-PER", "I-PER"] and t["I-PER", "B-LOC"]
    assert all(end)


def test_iob1_transitions():
    names = ["O", "B-PER", "I-PER", "I-LOC"]
    start, trans, end = allowed_transitions(names, "iob1")
    assert start == [True, False, True, True]
    assert [trans[i][1] for i in range(4)] == [False, True, True, False]  # B-PER only after a PER chunk
    assert all(trans[i][j] for i in range(4) for j in (0, 2, 3))


@pytest.mark.parametrize(
    "scheme, inside, last, single", [("bioes", "I", "E", "S"), ("bilou", "I", "L", "U"), ("bmes", "M", "E", "S")]
)
def test_closing_scheme_transitions(scheme: str, inside: str, last: str, single: str):
    names = ["O", "B-PER", f"{inside}-PER", f"{last}-PER", f"{single}-PER", "B-LOC"]
    start, trans, end = allowed_transitions(names, scheme)
    assert start == [True, True, False, False, True, True]
    assert end == [True, False, False, True, True, False]
    assert trans[1] == [False, False, True, True, False, False]  # B-PER: only go on or close as PER
    assert trans[3] == trans[4] == trans[0] == [True, True, False, False, True, True]


def test_transitions_for_plain_tags_and_bad_names():
    assert allowed_transitions(["NN", "VB"], None) == ([True, True], [[True, True], [True, True]], [True, True])
    with pytest.raises(ValueError):
        allowed_transitions(["O", "E-PER"], "iob2")
    with pytest.raises(ValueError):
        allowed_transitions(["NN"], "iob2")


def test_label_of_a_tag_and_whether_it_is_a_span_tag():
    assert [schemes.label_of(t) for t in ["B-PER", "I-ORG.NAM", "O", "NN", "B-"]] == ["PER", "ORG.NAM", "O", "NN", "B-"]
    assert [schemes.is_span_tag(t) for t in ["S-LOC", "O", "X-LOC", "B-", "PER"]] == [True, True, False, False, False]
