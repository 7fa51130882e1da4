"""Span tagging schemes (IOB1, IOB2, BIOES, BILOU, BMES): pure functions over lists of tag strings.

Every scheme encodes the same thing, a set of non-overlapping labelled spans, so conversion and repair go
through `spans` and `from_spans`. `spans` reads invalid sequences the way conlleval does (an I-X after O
starts a chunk, a type change starts a chunk), so a model's imperfect output can still be scored or repaired.
Each scheme's prefixes are mapped to one of five roles (begin, inside, end, single, outside) so one reader
and one set of transition rules serve all schemes.
"""
from __future__ import annotations

import functools
from itertools import compress, count
from typing import Iterable, Sequence

SCHEMES = ("iob1", "iob2", "bioes", "bilou", "bmes")
_ALIASES = {"iobes": "bioes", "bmeos": "bmes"}

# prefix -> role, per scheme. Roles: B begin, I inside, E end, S single, O outside.
_ROLES: dict[str, dict[str, str]] = {
    "iob1": {"B": "B", "I": "I", "O": "O"},
    "iob2": {"B": "B", "I": "I", "O": "O"},
    "bioes": {"B": "B", "I": "I", "E": "E", "S": "S", "O": "O"},
    "bilou": {"B": "B", "I": "I", "L": "E", "U": "S", "O": "O"},
    "bmes": {"B": "B", "M": "I", "E": "E", "S": "S", "O": "O"},
}
# role -> prefix, per scheme (the inverse of _ROLES)
_PREFIXES = {scheme: {role: prefix for prefix, role in roles.items()} for scheme, roles in _ROLES.items()}
_ALL_PREFIXES = frozenset("BIOESLUM")

Span = tuple[str, int, int]


def normalize_scheme(name: str) -> str:
    """The canonical name of a scheme ("IOBES" -> "bioes"), so callers may accept any spelling users type."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SCHEMES:
        expected = ", ".join(SCHEMES)
        raise ValueError(f"unknown tagging scheme {name!r}; expected one of {expected} (or iobes, bmeos)")
    return key


def split_tag(tag: str) -> tuple[str, str | None]:
    """Split a span tag into prefix and label: "B-PER" -> ("B", "PER"), "O" -> ("O", None).

    Only '-' separates them (the label may itself contain '-'). Raises ValueError for anything that is not
    a span tag in some scheme: "", "B-", "X-PER", "PER", "O-PER".
    """
    if tag == "O":
        return "O", None
    prefix, sep, label = tag.partition("-")
    if not sep or not label or prefix not in _ALL_PREFIXES or prefix == "O":
        raise ValueError(f"{tag!r} is not a span tag (expected O, or B-, I-, E-, S-, L-, U- or M- and a label)")
    return prefix, label


def is_span_tag(tag: str) -> bool:
    """Whether `split_tag` accepts the tag: O, or a known prefix, '-' and a label."""
    try:
        split_tag(tag)
    except ValueError:
        return False
    return True


def label_of(tag: str) -> str:
    """A span tag's label ("B-PER" -> "PER"); the tag itself for "O" and for plain tags ("NN")."""
    return split_tag(tag)[1] or tag if is_span_tag(tag) else tag


def has_prefixes(tags: Iterable[str]) -> bool:
    """True when every tag is a span tag (O or prefix-label), i.e. the tags encode spans, not plain labels.

    False for POS-like tag sets (NN, VBZ, PUNCT, -LRB-) and for an empty iterable.
    """
    seen = False
    for tag in tags:
        if not is_span_tag(tag):
            return False
        seen = True
    return seen


def detect_scheme(sentences: Iterable[Sequence[str]]) -> str | None:
    """Guess the scheme of a tagged corpus; None when the tags are not span tags (POS tags).

    U-/L- mean BILOU, M- BMES, E-/S- BIOES. With only B-/I-/O the evidence is weighed: a chunk opened by I-
    (at the start, after O or after another type) is IOB1's mark, a B- there IOB2's; the scheme with fewer
    `misplaced` tags wins, IOB1 on a tie, IOB2 for a corpus of only O. So a BIO file with a few slips (10 of
    the 1,895 entities of Weibo's train.txt open with I-) is IOB2, as its author meant. Prefixes no scheme has together raise
    ValueError. Reads `sentences` once, so a generator is fine.
    """
    prefixes: set[str] = set()
    against = {"iob1": 0, "iob2": 0}  # tags each reading finds misplaced
    for tags in sentences:
        if not has_prefixes(tags):
            if len(tags):
                return None
            continue
        prefixes.update(split_tag(t)[0] for t in tags)
        if prefixes <= {"B", "I", "O"}:
            for scheme in against:
                against[scheme] += len(misplaced(tags, scheme))
    if not prefixes:
        return None
    if prefixes <= {"B", "I", "O"}:
        return "iob1" if against["iob1"] <= against["iob2"] and against["iob2"] else "iob2"
    return _scheme_for_prefixes(prefixes)


def misplaced(tags: Sequence[str], scheme: str) -> list[int]:
    """Positions of the tags that may not follow the tag before them (or start the sequence) in `scheme`:
    in IOB2 an I- opening a chunk, in IOB1 a B- that does not follow its own type. `spans` still reads them,
    as conlleval does, each starting a chunk."""
    scheme = normalize_scheme(scheme)
    found, previous = [], None
    for i, current in enumerate(_roles(tags, scheme)):
        if not _may_follow(previous, current, scheme):
            found.append(i)
        previous = current
    return found


def _scheme_for_prefixes(prefixes: set[str]) -> str:
    for scheme in ("bioes", "bilou", "bmes"):
        if prefixes <= set(_ROLES[scheme]):
            return scheme
    found = ", ".join(f"{p}-" for p in sorted(prefixes - {"O"}))
    raise ValueError(f"tags mix prefixes {found} which no single scheme uses together")


def _roles(tags: Sequence[str], scheme: str) -> list[tuple[str, str | None]]:
    """(role, label) for each tag; ValueError for a tag that does not belong to `scheme`."""
    return [_role(tag, scheme) for tag in tags]


@functools.lru_cache(maxsize=4096)
def _role(tag: str, scheme: str) -> tuple[str, str | None]:
    roles = _ROLES[scheme]
    prefix, label = split_tag(tag)
    if prefix not in roles:
        prefixes = ", ".join(roles)
        raise ValueError(f"tag {tag!r} is not a tag of the {scheme.upper()} scheme (prefixes: {prefixes})")
    return roles[prefix], label


def tag_spans(tags: Sequence[str], scheme: str | None) -> list[Span]:
    """`spans` of tags in `scheme`; plain tags (POS-like: scheme None) make each token a span of its own."""
    if scheme is None:
        return [(tag, i, i + 1) for i, tag in enumerate(tags)]
    return spans(tags, scheme)


def spans(tags: Sequence[str], scheme: str) -> list[Span]:
    """The labelled chunks of a tag sequence as (label, start, end) with `end` exclusive, in order.

    Invalid sequences are read leniently, as conlleval reads them: IOB2 `O I-PER I-PER` is one PER chunk,
    `B-PER I-LOC` two chunks. Tags that are not of `scheme` raise ValueError.
    """
    scheme = normalize_scheme(scheme)
    result: list[Span] = []
    p_role, p_label, start, last = "O", None, 0, -1  # the previous non-O tag, at `last`
    # Only non-O tags are visited (most tags are O): an O closes the open chunk and opens none.
    for i in compress(count(), map("O".__ne__, tags)):
        role, label = _role(tags[i], scheme)
        if p_role != "O" and i > last + 1:  # O tags since the last one closed its chunk
            result.append((p_label, start, last + 1))
            p_role = "O"
        # conlleval's endOfChunk and startOfChunk, for a current tag that is not O
        if p_role != "O" and (p_role in "ES" or role in "BS" or p_label != label):
            result.append((p_label, start, i))
        if p_role in "OES" or role in "BS" or p_label != label:
            start = i
        p_role, p_label, last = role, label, i
    if p_role != "O":
        result.append((p_label, start, last + 1))
    return result


def from_spans(spans: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Encode non-overlapping (label, start, end) spans as `length` tags of `scheme`, in its one valid form."""
    scheme = normalize_scheme(scheme)
    tags = ["O"] * length
    previous: Span | None = None
    for span in sorted(spans, key=lambda s: s[1]):
        _check_span(span, previous, length)
        _encode_span(tags, span, previous, scheme)
        previous = span
    return tags


def _check_span(span: Span, previous: Span | None, length: int) -> None:
    label, start, end = span
    if not label or not 0 <= start < end <= length:
        raise ValueError(f"bad span {span!r} for a sequence of length {length}")
    if previous is not None and start < previous[2]:
        raise ValueError(f"spans {previous!r} and {span!r} overlap")


def _encode_span(tags: list[str], span: Span, previous: Span | None, scheme: str) -> None:
    label, start, end = span
    if scheme == "iob1":
        touches = previous is not None and previous[2] == start and previous[0] == label
        tags[start:end] = [f"{'B' if touches else 'I'}-{label}"] + [f"I-{label}"] * (end - start - 1)
        return
    prefix = _PREFIXES[scheme]
    if scheme == "iob2":
        tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
    elif end - start == 1:
        tags[start] = f"{prefix['S']}-{label}"
    else:
        inside = [f"{prefix['I']}-{label}"] * (end - start - 2)
        tags[start:end] = [f"{prefix['B']}-{label}", *inside, f"{prefix['E']}-{label}"]


def convert(tags: Sequence[str], src: str, dst: str) -> list[str]:
    """Re-encode `tags` from scheme `src` to `dst` via their spans; with src == dst this repairs them."""
    return from_spans(spans(tags, src), len(tags), dst)


def is_valid(tags: Sequence[str], scheme: str) -> bool:
    """Whether `tags` is a well-formed sequence of `scheme` (every transition allowed, proper start and end)."""
    scheme = normalize_scheme(scheme)
    try:
        roles = _roles(tags, scheme)
    except ValueError:
        return False
    previous = None
    for cur in roles:
        if not _may_follow(previous, cur, scheme):
            return False
        previous = cur
    return previous is None or _may_end(previous, scheme)


def _may_follow(prev: tuple[str, str | None] | None, cur: tuple[str, str | None], scheme: str) -> bool:
    """Whether (role, label) `cur` may come after `prev` (None: at the start of the sequence)."""
    p_role, p_label = prev if prev is not None else ("O", None)
    c_role, c_label = cur
    if scheme == "iob1":
        return c_role != "B" or (prev is not None and p_role in "BI" and p_label == c_label)
    if scheme == "iob2":
        return c_role != "I" or (p_role in "BI" and p_label == c_label)
    if p_role in "BI":  # inside an open chunk: it must go on or close with the same label
        return c_role in "IE" and p_label == c_label
    return c_role in "OBS"


def _may_end(last: tuple[str, str | None], scheme: str) -> bool:
    return scheme in ("iob1", "iob2") or last[0] in "OES"


def allowed_transitions(
    tag_names: Sequence[str], scheme: str | None
) -> tuple[list[bool], list[list[bool]], list[bool]]:
    """Constraints for a CRF: (start[j], trans[i][j], end[i]) say whether a sequence may start with tag j,
    go from tag i to tag j, and end with tag i. With scheme None (plain tags) everything is allowed.
    Tag names that are not tags of `scheme` raise ValueError.
    """
    n = len(tag_names)
    if scheme is None:
        return [True] * n, [[True] * n for _ in range(n)], [True] * n
    scheme = normalize_scheme(scheme)
    roles = _roles(tag_names, scheme)
    start = [_may_follow(None, r, scheme) for r in roles]
    trans = [[_may_follow(a, b, scheme) for b in roles] for a in roles]
    end = [_may_end(r, scheme) for r in roles]
    return start, trans, end
