"""Raw text -> sentences -> tokens, each token with its exact character offsets in the original string.

`tagger predict` tags raw text with a model trained on pre-tokenised corpora, so raw text must be cut into
the same kind of tokens the corpus has:

- "words": Penn Treebank / CoNLL-2003 style (`Germany 's`, `do n't`, `U.S.`, `Mr.`, `1,000.50`, `New-York`,
  punctuation apart), URLs and e-mail addresses whole, one token per emoji (ZWJ sequences and flags
  included) and per CJK character, other scripts as word runs with their combining marks;
- "chars": one token per grapheme-ish unit (a character with its combining marks, variation selectors and
  ZWJ continuations), for character-level Chinese / Japanese models.

Whitespace (anything `str.isspace` accepts: NBSP, U+3000, ...) separates tokens, and control characters
(\\x00, \\x07) and invisible format characters (BOM, zero-width space, bidi marks) are dropped: neither is
ever inside a token, and every token satisfies `text[token.start:token.end] == token.text`.

Both tokenisers are one compiled `re.findall` pass into parallel lists (`scan`: 6.6 M characters/s of English here; 2.2 M as Token objects), and
sentence splitting adds one linear pass (`sentence_ends`: 4.6 M characters/s). Patterns compile on first use;
a text all below U+0300 (no combining mark, no CJK) gets ones without those classes, which match it as the
full ones do and compile 30x faster (`re` expands a set's BMP ranges in Python, at each of 15 places).
Pure Python (stdlib `re`, `unicodedata`): no torch.
"""
from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from dataclasses import dataclass
from itertools import accumulate, chain, compress, count, pairwise
from operator import itemgetter
from typing import Callable, Iterable

__all__ = ["Token", "Tokens", "TOKENIZERS", "ABBREVIATIONS", "tokenize", "scan", "split_sentences",
           "sentence_ends", "get_tokenizer"]


@dataclass(frozen=True, slots=True)
class Token:
    """A token and where it is: `text == original[start:end]` (Python str indices)."""

    text: str
    start: int
    end: int


@dataclass(slots=True)
class Tokens:
    """A text's tokens as parallel lists, `text[starts[i]:ends[i]] == texts[i]`: what the prediction path
    uses, since building a Token object per token cost as much as the regex scan itself."""

    texts: list[str]
    starts: list[int]
    ends: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def to_list(self) -> list[Token]:
        return list(map(Token, self.texts, self.starts, self.ends))


TOKENIZERS = ("words", "chars")

ABBREVIATIONS = frozenset(
    f"{a}." for base in (
        "Mr Mrs Ms Dr Prof St Sr Jr Gen Gov Sen Rep Lt Col Capt Sgt Cmdr Adm Maj Rev Hon Pres Mt Ft Ave "
        "Blvd Inc Corp Ltd Co Cos Bros Dept Univ Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec "
        "Calif Fla Ariz Colo Conn Okla Tenn Minn Mich Wis").split()
    for a in (base, base.upper())
) | frozenset("No. Nos. vs. etc. approx. est. al. cf. viz.".split())
"""Words kept with their period, after which no sentence ends. Dotted acronyms (`U.S.`, `e.g.`, `a.m.`) and
initials (`J.`) are recognised by their shape instead."""

# -- character classes (bodies of [...] sets) ------------------------------------------------------------

_CJK_RANGES = [
    (0x1100, 0x11FF), (0x2E80, 0x2FDF), (0x3005, 0x3007), (0x3021, 0x3029), (0x3031, 0x3035),
    (0x3038, 0x303C), (0x3040, 0x30FF), (0x3100, 0x312F), (0x3130, 0x318F), (0x31A0, 0x31BF),
    (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97F), (0xAC00, 0xD7FF),
    (0xF900, 0xFAFF), (0xFF66, 0xFFDC), (0x1B000, 0x1B16F), (0x20000, 0x3FFFF),
]
"""Han ideographs, kana, hangul (syllables and jamo), bopomofo, radicals: one token per character."""

# Dropped: control characters (Cc that are not whitespace) and invisible format characters (zero-width
# space, bidi marks and isolates, word joiner, BOM, interlinear annotation).
_DROP_RANGES = [(0x00, 0x1F), (0x7F, 0x9F), (0x200B, 0x200B), (0x200E, 0x200F), (0x202A, 0x202E),
                (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB)]


def _set(pairs: Iterable[tuple[int, int]]) -> str:
    """The body of a regex character set holding these inclusive code point ranges."""
    def esc(cp: int) -> str:
        return re.escape(chr(cp))

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in pairs)


def _group(points: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted code points -> inclusive (first, last) ranges of consecutive ones."""
    out: list[list[int]] = []
    for cp in points:
        if out and cp == out[-1][1] + 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [(a, b) for a, b in out]


def _combining_marks() -> str:
    """A set body of every Unicode mark (Mn, Mc, Me); none exist below U+0300 or in planes 2-13."""
    planes = (range(0x300, 0x20000), range(0xE0000, 0xE1000))
    return _set(_group(cp for r in planes for cp in r if unicodedata.category(chr(cp))[0] == "M"))


_CJK = _set(_CJK_RANGES)
_CJK_STARTS = [a for a, _ in _CJK_RANGES]
_DROP = _set(_DROP_RANGES)
_NARROW = "\u0300"  # below it no character is a combining mark or CJK (module docstring)


def _wide(text: str) -> bool:
    """Whether `text` needs the full patterns: it has a character at or above U+0300."""
    return bool(text) and max(text) >= _NARROW


def _letter(wide: bool) -> str:
    """A letter of any script but CJK."""
    return rf"[^\W\d_{_CJK}]" if wide else r"[^\W\d_]"


def _is_cjk(c: str) -> bool:
    """Whether `c` is in _CJK_RANGES (a bisection: no pattern to compile)."""
    k = bisect.bisect_right(_CJK_STARTS, ord(c)) - 1
    return k >= 0 and ord(c) <= _CJK_RANGES[k][1]


@functools.cache
def _pattern(name: str, wide: bool) -> tuple[re.Pattern[str], str]:
    """A tokeniser's compiled pattern and the characters to strip off the end: compiled on first use, and
    only the one asked for, at the width asked for (compiling takes a noticeable part of a cold start)."""
    source, blank = _sources(wide)[name]
    return re.compile(source), blank


@functools.cache
def _sources(wide: bool) -> dict[str, tuple[str, str]]:
    """Each tokeniser's (pattern source, characters to strip off the end); not `wide`: for texts below
    U+0300, without the classes of combining marks and CJK characters, which match none of them.

    A pattern is `(skip)(token)`: it eats the whitespace and dropped characters before a token, so that the
    scan never tries every alternative at every space. The caller stops the scan before trailing blanks,
    which `skip` would otherwise eat again from each position (quadratic).
    """
    # Extenders belong to the character before them: marks, ZWNJ, soft hyphen, emoji skin tones, tag
    # characters (subdivision flags). ZWJ is kept apart: it joins the next character too.
    cjk = _CJK if wide else ""
    ext = (_combining_marks() if wide else "") + r"\u00ad\u200c\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f"
    mark = ext + r"\u200d"
    vis = rf"[^\s{_DROP}]"
    wordch = rf"[^\W{cjk}]"               # letters, digits, underscore of any script but CJK
    not_word = rf"(?![^\W{cjk}]|[{mark}])"
    seg = rf"{wordch}++(?:[{mark}]++{wordch}*+)*+"
    join = (rf"(?:[-‐‑&]|['’](?!(?:[sSdDmM]|re|RE|ve|VE|ll|LL){not_word})"
            rf"|(?<=\d)[.,:/](?=\d))")
    abbrev = "|".join(re.escape(a[:-1]) for a in sorted(ABBREVIATIONS, key=len, reverse=True))
    # A decomposed hangul syllable (leading, vowel, trailing jamo) is one unit; possessive, so linear.
    jamo = (r"(?=[\u1100-\u11ff\ua960-\ua97f\ud7b0-\ud7c6\ud7cb-\ud7fb])[\u1100-\u115f\ua960-\ua97f]*+"
            rf"[\u1160-\u11a7\ud7b0-\ud7c6]*+[\u11a8-\u11ff\ud7cb-\ud7fb]*+[{mark}]*+")
    unit = rf"{vis}[{ext}]*+(?:\u200d(?:{vis}[{ext}]*+)?)*+"   # a character, its extenders, ZWJ joins
    flag = rf"[\U0001f1e6-\U0001f1ff]{{2}}[{ext}]*+"
    url_ch, url_end = r"A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%", r"A-Za-z0-9\-_~/#\[@$&*+=%"
    marks = f"[{mark}]*+"                  # a token ending in punctuation keeps the marks on it
    words = "|".join([
        r"[A-Za-z]++(?=[\s,;!?)\]}\"]|\Z)",             # fast path: a plain word that nothing else claims
        rf"[,;:!?()\"](?![{mark}])",                     # fast path: plain punctuation
        rf"(?i:https?://|ftp://|www\.)[{url_ch}]*[{url_end}](?![{mark}])",
        r"[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@[A-Za-z0-9][A-Za-z0-9\-]{0,62}(?:\.[A-Za-z0-9\-]{1,63})+"
        rf"(?![{mark}])",
        rf"(?=[A-Za-z]{{1,6}}\.)(?:{abbrev})\.{marks}",  # Mr. Inc. Jan.
        rf"{_letter(wide)}\.(?:{_letter(wide)}\.)++{marks}(?:-{seg})*+",  # U.S. e.g. a.m. U.S.-led
        rf"[A-Z]\.{not_word}",                           # an initial: J.
        rf"{wordch}+(?=[nN]['’][tT]{not_word})",         # do|n't ca|n't
        rf"[nN]['’][tT]{not_word}",
        rf"['’](?:[sSdDmM]|re|RE|ve|VE|ll|LL){not_word}",  # 's 're 've 'll 'd 'm
        rf"{seg}(?:{join}{seg})*+",                      # words, 1,000.50, 1996-08-28, New-York, O'Brien
        *([rf"{jamo}|[{cjk}][{mark}]*+"] if wide else []),
        rf"(?:\.{{2,}}+|-{{2,}}+|…++){marks}",
        flag,
        unit,
    ])
    skip = rf"[\s{_DROP}]*+"
    limit = 0x10000 if wide else ord(_NARROW)
    blank = "".join(c for c in map(chr, range(limit)) if c.isspace())   # none lies beyond the BMP
    blank += "".join(chr(cp) for a, b in _DROP_RANGES for cp in range(a, min(b + 1, limit)))
    chars = f"{flag}|{jamo}|{unit}" if wide else f"{flag}|{unit}"
    return {"words": (f"({skip})({words})", blank), "chars": (f"({skip})({chars})", blank)}


def scan(text: str, tokenizer: str = "words") -> Tokens:
    """The tokens of `text` as parallel lists: one C-level regex pass, no object per token.

    A match is `skip(token)` and the next one starts where it ended (after the skipped blanks some
    alternative always matches a visible character, and the scan stops before trailing blanks), so the
    running sum of the pieces' lengths gives every offset.
    """
    pattern, blank = _pattern(_checked(tokenizer), _wide(text))
    end = len(text)
    if end and text[-1] in blank:
        end = len(text.rstrip(blank))
    pieces = list(chain.from_iterable(pattern.findall(text, 0, end)))  # skipped, token, skipped, token, ...
    offsets = list(accumulate(map(len, pieces)))  # token i starts at offsets[2i] and ends at offsets[2i + 1]
    return Tokens(pieces[1::2], offsets[0::2], offsets[1::2])


def _checked(name: str) -> str:
    if name not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}: expected one of {', '.join(TOKENIZERS)}")
    return name


def get_tokenizer(name: str) -> Callable[[str], list[Token]]:
    """The tokeniser called `name` (one of TOKENIZERS): a function from text to tokens.

    "words": Penn Treebank / CoNLL-2003 style tokens; "chars": one token per non-space character with its
    combining marks (and ZWJ-joined characters)."""
    return functools.partial(tokenize, tokenizer=_checked(name))


def tokenize(text: str, tokenizer: str = "words") -> list[Token]:
    """Tokens of `text`, in order, not overlapping, with offsets into `text`."""
    return scan(text, tokenizer).to_list()


# -- sentences ------------------------------------------------------------------------------------------

_ENDERS = frozenset(".!?…。！？")
_CJK_ENDERS = frozenset("。！？")
_CLOSERS = frozenset(".!?…。！？)]}»›”’」』）】〕》〉］｝")
_QUOTES = frozenset("\"'")                      # close a sentence only when glued to it
_OPENERS = frozenset("\"'“‘«‹„‚([{（【〔《〈「『［｛")
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028"             # what str.splitlines breaks at, but U+2029
_BREAK = rf"(?>\r\n|[{_BREAKS}])"                      # CRLF is one break
_INVISIBLE = re.escape("".join(chr(cp) for a, b in _DROP_RANGES for cp in range(a, b + 1) if not chr(cp).isspace()))
_BLANK_LINE = re.compile(rf"{_BREAK}(?:[^\S{_BREAKS}\u2029]|[{_INVISIBLE}])*+{_BREAK}|\u2029")
_ANY_BREAK = re.compile(f"[{_BREAKS}\u2029]")  # no blank line without one: a quick test for one-line texts
_WINDOW = 24


def _is_abbreviation(text: str, end: int) -> bool:
    """Whether the period at text[end - 1] closes an abbreviation (`Mr.`, `U.S.`, `J.`), not a sentence.

    The word is the run of letters and periods that ends there (CJK text glues it to what precedes)."""
    words = text[max(0, end - _WINDOW):end].split()
    if not words or not words[-1][-2:-1].isalpha():      # `5.`, `).`, `..`: no letter before the period
        return False
    before, shape = _abbreviation_patterns(_wide(words[-1]))
    found = before.search(words[-1])
    word = found.group().lstrip(".") if found else ""
    return word in ABBREVIATIONS or shape.fullmatch(word) is not None


@functools.cache
def _abbreviation_patterns(wide: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The run of letters and periods that ends a word; the shape of a dotted acronym or an initial."""
    letter = _letter(wide)
    return re.compile(rf"(?:{letter}|\.)+\Z"), re.compile(rf"[A-Z]\.|{letter}\.(?:{letter}\.)+")


def _starts_sentence(word: str) -> bool:
    """Whether a token can open a sentence: a capital or caseless letter (CJK...), a digit, a quote."""
    c = word[0]
    return (c.isalpha() and not c.islower()) or c.isdigit() or c in _OPENERS or _is_cjk(c)


def _blank_between(text: str, end: int, start: int) -> bool:
    """Whether a blank line lies in text[end:start], between two tokens."""
    return start - end > 1 and _BLANK_LINE.search(text, end, start) is not None


def _closes(text: str, tokens: Tokens, i: int) -> bool:
    """Whether token i still belongs to the sentence that an ender before it closes (`."`, `?)`, `?!`)."""
    word, start, end_before = tokens.texts[i], tokens.starts[i], tokens.ends[i - 1]
    if _blank_between(text, end_before, start):
        return False
    return all(c in _CLOSERS for c in word) or (word in _QUOTES and start == end_before)


def _closers_end(text: str, tokens: Tokens, i: int) -> int:
    """The index just past the ender i and the closers (quotes, brackets, enders) glued after it."""
    j = i + 1
    while j < len(tokens) and _closes(text, tokens, j):
        j += 1
    return j


def _ends_before(text: str, tokens: Tokens, ender: int, j: int) -> bool:
    """Whether a sentence ends at token `ender` when token j is the first after its closers."""
    last = tokens.texts[ender][-1]
    if last in _CJK_ENDERS:
        return True
    if last == "." and _is_abbreviation(text, tokens.ends[ender]):
        return False
    return j == len(tokens) or _starts_sentence(tokens.texts[j])


def _ender_cuts(text: str, tokens: Tokens, enders: list[int]) -> list[int]:
    """Indices of the tokens that open a sentence after an ender (`enders`: indices of candidate enders).

    A run of enders and closers (`?!"`, `....`) is scanned once, so that `!!!!...` stays linear.
    """
    cuts, k = [], 0
    while k < len(enders):
        j = _closers_end(text, tokens, enders[k])
        cut = False
        while k < len(enders) and enders[k] < j:
            cut = cut or _ends_before(text, tokens, enders[k], j)
            k += 1
        if cut:
            cuts.append(j)
    return cuts


def _blank_line_cuts(text: str, tokens: Tokens) -> list[int]:
    """Indices of the tokens that follow a blank line."""
    found = [m.end() for m in _BLANK_LINE.finditer(text)] if _ANY_BREAK.search(text) else []
    if not found:
        return []
    return [bisect.bisect_left(tokens.starts, pos) for pos in found]


def sentence_ends(text: str, tokenizer: str = "words") -> tuple[Tokens, list[int]]:
    """The tokens of `text` and where each sentence ends (token indices, increasing, the last is
    len(tokens)); the rules are split_sentences'."""
    tokens = scan(text, tokenizer)
    enders = list(compress(count(), map(_ENDERS.__contains__, map(itemgetter(-1), tokens.texts))))
    cuts = set(_ender_cuts(text, tokens, enders)) | set(_blank_line_cuts(text, tokens))
    cuts.discard(0)
    return tokens, sorted(cuts | {len(tokens)}) if tokens.texts else []


def split_sentences(text: str, tokenizer: str = "words") -> list[list[Token]]:
    """Tokens of `text` grouped in sentences, offsets into `text`. Linear in the length of `text`.

    A sentence ends after . ! ? … (with the closing quotes or brackets glued to them) when the next token
    can start one (capital, digit, quote, CJK) and the period is not an abbreviation's; it always ends
    after 。！？ and at a blank line.
    """
    tokens, ends = sentence_ends(text, tokenizer)
    listed = tokens.to_list()
    return [listed[begin:end] for begin, end in pairwise([0, *ends])]
