"""Error analysis: which kind of mistake each wrong entity is, per label, per sentence.

Matching, per sentence, between gold spans G and predicted spans P, each a (label, start, end) token span
with `end` exclusive (corpora.schemes.spans), the spans of one side never overlapping each other:

1. A gold and a prediction with the same label and the same span are correct (seqeval's true positives).
2. Of the rest, a gold and a prediction with the same span but another label pair up: kind "label".
3. Of the rest, golds and predictions that overlap (share at least one token) pair up one to one, greedily:
   same label first, then the larger overlap, then the leftmost gold, then the leftmost prediction. A pair
   with the same label is kind "boundary", with another label kind "label_boundary".
4. A gold left unpaired is "missed"; a prediction left unpaired is "spurious". This includes a gold whose
   only overlapping predictions were paired with another gold (a prediction spanning two golds: one
   boundary or label_boundary error and one missed), and likewise for predictions.

Every wrong gold and every wrong prediction is in exactly one error, so the counts agree with seqeval's
strict scores: false negatives = label + boundary + label_boundary + missed, false positives = label +
boundary + label_boundary + spurious (tested). Strict seqeval reads the repaired sequences
(tagger.evaluate converts through spans), so its entities are these spans.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from corpora import schemes
from tagger.reports.metrics import measure

KINDS = ("label", "boundary", "label_boundary", "missed", "spurious")
KIND_NAMES = {"label": "wrong label, same span", "boundary": "wrong boundary, same label",
              "label_boundary": "wrong boundary and label", "missed": "missed", "spurious": "spurious"}
NONE = "none"  # the confusion table's row of spurious predictions and column of missed golds

Span = tuple[str, int, int]


def sentence_errors(gold: Sequence[Span], pred: Sequence[Span]) -> tuple[list[dict], list[tuple[Span, Span]]]:
    """The errors of one sentence, and its correct (gold, pred) pairs, by the matching in the module docstring.

    Each error is {"kind", "gold": span or None, "pred": span or None}, ordered by their first token (paired
    errors before unpaired ones at the same token).
    """
    gold_left, pred_left = [tuple(g) for g in gold], [tuple(p) for p in pred]
    exact = set(gold_left) & set(pred_left)
    correct = [(g, g) for g in sorted(exact, key=lambda s: s[1])]
    gold_left = [g for g in gold_left if g not in exact]
    pred_left = [p for p in pred_left if p not in exact]
    errors = []
    pred_by_span = {(p[1], p[2]): p for p in pred_left}
    for g in list(gold_left):
        p = pred_by_span.get((g[1], g[2]))
        if p is not None:
            errors.append({"kind": "label", "gold": g, "pred": p})
            gold_left.remove(g)
            pred_left.remove(p)
    for g, p in _overlap_pairs(gold_left, pred_left):
        errors.append({"kind": "boundary" if g[0] == p[0] else "label_boundary", "gold": g, "pred": p})
        gold_left.remove(g)
        pred_left.remove(p)
    errors += [{"kind": "missed", "gold": g, "pred": None} for g in gold_left]
    errors += [{"kind": "spurious", "gold": None, "pred": p} for p in pred_left]
    errors.sort(key=lambda e: min(s[1] for s in (e["gold"], e["pred"]) if s is not None))
    return errors, correct


def _overlap_pairs(gold: Sequence[Span], pred: Sequence[Span]) -> list[tuple[Span, Span]]:
    """Overlapping (gold, pred) pairs, one to one, chosen greedily in the docstring's order of preference."""
    candidates = []
    for g in gold:
        for p in pred:
            overlap = min(g[2], p[2]) - max(g[1], p[1])
            if overlap > 0:
                candidates.append((g[0] != p[0], -overlap, g[1], p[1], g, p))
    pairs, used_gold, used_pred = [], set(), set()
    for *_, g, p in sorted(candidates):
        if g not in used_gold and p not in used_pred:
            pairs.append((g, p))
            used_gold.add(g)
            used_pred.add(p)
    return pairs


def analyse(tokens: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
            scheme: str, top: int = 20, scores: dict | None = None) -> dict:
    """The error report of predicted against gold tags (both in `scheme`), JSON-able.

    Keys: "per_type" and "overall" (seqeval strict, from tagger.evaluate.score; pass `scores` if already
    computed), "errors" (counts and shares per kind, true/false positives and negatives, confusion table)
    and "sentences": the `top` sentences with the most errors, with their tokens, gold and predicted spans
    and each error's kind.
    """
    if len(tokens) != len(gold) or len(gold) != len(pred):
        raise ValueError("tokens, gold and predicted tags differ in number of sentences")
    scores = scores or measure(gold, pred, scheme)
    counts: Counter = Counter()
    confusion: dict[str, Counter] = {}
    per_sentence = []
    true_positives = 0
    for i, (toks, g_tags, p_tags) in enumerate(zip(tokens, gold, pred)):
        g_spans, p_spans = schemes.spans(g_tags, scheme), schemes.spans(p_tags, scheme)
        errors, correct = sentence_errors(g_spans, p_spans)
        true_positives += len(correct)
        for g, p in [*correct, *((e["gold"], e["pred"]) for e in errors)]:
            confusion.setdefault(g[0] if g else NONE, Counter())[p[0] if p else NONE] += 1
        counts.update(e["kind"] for e in errors)
        if errors:
            per_sentence.append({"index": i, "tokens": list(toks), "gold": g_spans, "pred": p_spans,
                                 "errors": errors})
    per_sentence.sort(key=lambda s: (-len(s["errors"]), s["index"]))
    return {"overall": {k: scores[k] for k in ("precision", "recall", "f1")},
            "per_type": scores.get("per_type", {}),
            "errors": error_summary(counts, true_positives, confusion),
            "sentences": [_jsonable(s) for s in per_sentence[:top]]}


def error_summary(counts: Counter, true_positives: int, confusion: dict[str, Counter]) -> dict:
    """Counts and shares of each kind, TP/FP/FN as seqeval counts them, and the gold x predicted table.

    In the table a pair counts under its gold label's row and its prediction's column whatever its span
    (so correct and boundary errors are on the diagonal), missed golds under "none" columns and spurious
    predictions in the "none" row: each row sums to the gold label's support.
    """
    total = sum(counts.values())
    paired = counts["label"] + counts["boundary"] + counts["label_boundary"]
    labels = sorted(({*confusion} | {p for row in confusion.values() for p in row}) - {NONE}) + [NONE]
    return {"counts": {k: counts[k] for k in KINDS},
            "shares": {k: counts[k] / total if total else 0.0 for k in KINDS},
            "total": total,
            "true_positives": true_positives,
            "false_positives": paired + counts["spurious"],
            "false_negatives": paired + counts["missed"],
            "confusion": {"labels": labels,
                          "rows": {g: {p: confusion.get(g, Counter())[p] for p in labels} for g in labels}}}


def _jsonable(sentence: dict) -> dict:
    """Spans as [label, start, end] lists, as json writes them anyway (so a report read back compares equal)."""
    span = lambda s: list(s) if s is not None else None  # noqa: E731
    return sentence | {"gold": [span(s) for s in sentence["gold"]], "pred": [span(s) for s in sentence["pred"]],
                       "errors": [{"kind": e["kind"], "gold": span(e["gold"]), "pred": span(e["pred"])}
                                  for e in sentence["errors"]]}
