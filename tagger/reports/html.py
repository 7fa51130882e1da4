"""Entities highlighted in their text, as one self-contained HTML page that streams out line by line.

The page needs nothing but itself: CSS inline, no script, no image, no font, no URL of any kind, and a
Content-Security-Policy that forbids every fetch should one ever slip in. It is written in three parts so
that input of any size streams through in constant memory: `page_header` (title, legend), one `paragraph`
per input line, `page_footer`. Every piece of text is escaped, so `<script>` or `&` in the input shows
literally. Each label has one fixed colour, derived from the label alone (the same in every page).
"""
from __future__ import annotations

import hashlib
import html
from typing import Sequence

LOW_SCORE = 0.5  # entities scored below this are drawn lighter, with a dashed outline

# colours of the usual entity types; dotted subtypes (PER.NAM, PER.NOM: Weibo NER) vary their type's colour
_TYPE_COLOURS = {"PER": "#7fc8f8", "LOC": "#ffd166", "ORG": "#95d5b2", "MISC": "#d4a5f5", "GPE": "#ff9f9f"}
_SUBTYPE_DARKER = {"NAM": 0.0, "NOM": 0.25}  # other subtypes get a share derived from their name

CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
body { font-family: "DejaVu Sans", Arial, "Noto Sans CJK SC", sans-serif; margin: 1.5em 2em; color: #1f2328; background: #fff; }
h1 { font-size: 1.3em; }
p { white-space: pre-wrap; line-height: 2.1; margin: 0.3em 0; min-height: 1em; }
mark.ent { color: inherit; padding: 0.15em 0.3em; border-radius: 0.3em; }
mark.ent.low { outline: 1px dashed #888; }
.legend .key.low-score { background: #f4f4f4; outline: 1px dashed #888; font-weight: normal; color: #555; }
mark .tag { font-size: 0.62em; font-weight: bold; margin-left: 0.35em; vertical-align: middle;
            text-transform: uppercase; color: #333; }
.legend { margin: 0 0 1.2em; }
.legend .key { display: inline-block; padding: 0.2em 0.6em; margin: 0 0.4em 0.3em 0; border-radius: 0.3em;
               font-size: 0.85em; font-weight: bold; }
"""


def label_colour(label: str) -> str:
    """The label's background colour as #rrggbb: fixed for PER/LOC/ORG/MISC/GPE, from a hash otherwise.

    A dotted subtype keeps its type's hue: PER.NAM is PER's colour, PER.NOM a darker shade of it.
    """
    base, _, subtype = label.partition(".")
    colour = _TYPE_COLOURS.get(base.upper()) or _hashed_colour(base)
    if subtype:
        darker = _SUBTYPE_DARKER.get(subtype.upper())
        if darker is None:
            darker = 0.1 + 0.3 * _hash_fraction(subtype)
        colour = mix(colour, "#000000", darker)
    return colour


def low_score_colour(label: str) -> str:
    """The lighter colour of a low-score entity of `label`."""
    return mix(label_colour(label), "#ffffff", 0.6)


def mix(colour: str, other: str, share: float) -> str:
    """`colour` with `share` (0..1) of `other` blended in, both #rrggbb."""
    a, b = _rgb(colour), _rgb(other)
    return "#" + "".join(f"{round(x + (y - x) * share):02x}" for x, y in zip(a, b))


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _hash_fraction(name: str) -> float:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big") / 2 ** 32


def _hashed_colour(name: str) -> str:
    """A light colour whose hue comes from the name's hash (stable across runs, unlike hash())."""
    import colorsys

    r, g, b = colorsys.hls_to_rgb(_hash_fraction(name), 0.78, 0.75)
    return "#" + "".join(f"{round(255 * x):02x}" for x in (r, g, b))


def escape(text: str) -> str:
    """Text or attribute value made safe for HTML (quotes included)."""
    return html.escape(text, quote=True)


def head(title: str, css: str) -> str:
    """From the doctype to the opening of <body> and its <h1>: what every page of ours starts with."""
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
            f"<h1>{escape(title)}</h1>\n")


def legend(labels: Sequence[str], scored: bool = False) -> str:
    """One coloured key per label; when the entities carry scores (`scored`), a last key saying what the
    lighter colour and dashed outline of an entity mean."""
    keys = "".join(f"<span class=\"key\" data-label=\"{escape(label)}\" style=\"background:{label_colour(label)}\">"
                   f"{escape(label)}</span>" for label in labels)
    if scored:
        keys += (f"<span class=\"key low-score\">lighter, dashed outline: score below {LOW_SCORE:.2f} "
                 "(hover an entity for its score)</span>")
    return f"<div class=\"legend\">{keys}</div>\n"


def page_header(labels: Sequence[str], title: str, scored: bool = False) -> str:
    """The start of the entity view: title and the legend of `labels` (pass the model's labels: the legend
    is written before any entity is seen); `scored`: the entities will carry scores (see `legend`)."""
    return head(title, STYLE) + legend(labels, scored) + "<main>\n"


def paragraph(text: str, entities: Sequence[dict]) -> str:
    """One input line as a <p>, each entity a <mark> in its label's colour with the label shown.

    entities: {"start", "end", "label"} with Python str offsets into `text`, not overlapping; an optional
    "score" in [0, 1] shows on hover, and below LOW_SCORE the entity is drawn lighter.
    """
    return f"<p>{marks(text, entities)}</p>\n"


def page_footer() -> str:
    return "</main>\n</body>\n</html>\n"


def marks(text: str, entities: Sequence[dict]) -> str:
    """`text` escaped, with each entity wrapped in a <mark> (see `paragraph`). An entity may also carry
    "kind" (an error kind of tagger.analysis): it becomes the mark's data-kind and class, shown in reports."""
    out, at = [], 0
    for entity in sorted(entities, key=lambda e: e["start"]):
        start, end = entity["start"], entity["end"]
        if not at <= start < end <= len(text):
            raise ValueError(f"entity {entity!r} overlaps another or lies outside a text of {len(text)} "
                             "characters")
        out.append(escape(text[at:start]))
        out.append(_mark(text[start:end], entity))
        at = end
    out.append(escape(text[at:]))
    return "".join(out)


def _mark(span: str, entity: dict) -> str:
    label = str(entity["label"])
    classes, colour, attrs = ["ent"], label_colour(label), [f"data-label=\"{escape(label)}\""]
    score = entity.get("score")
    if score is not None:
        attrs.append(f"title=\"{escape(label)} {float(score):.2f}\"")
        if score < LOW_SCORE:
            classes.append("low")
            colour = low_score_colour(label)
    kind = entity.get("kind")
    if kind:
        classes.append(f"err-{kind}" if kind != "correct" else "correct")
        attrs.append(f"data-kind=\"{escape(kind)}\"")
    return (f"<mark class=\"{' '.join(classes)}\" {' '.join(attrs)} style=\"background:{colour}\">"
            f"{escape(span)}<span class=\"tag\">{escape(label)}</span></mark>")
