"""Scores: entity-level precision/recall/F1 with seqeval in strict mode, or token accuracy for plain tags.

seqeval falls back to lenient (conlleval-like) matching unless told the scheme, so both sequences are put
into a scheme seqeval knows (IOB2, IOBES or BILOU) and scored with `mode="strict"` and that scheme.
"""
from __future__ import annotations

from typing import Sequence

from corpora import schemes

# our scheme -> (scheme to score in, seqeval's class name)
_SEQEVAL = {"iob1": ("iob2", "IOB2"), "iob2": ("iob2", "IOB2"), "bioes": ("bioes", "IOBES"),
            "bilou": ("bilou", "BILOU"), "bmes": ("bioes", "IOBES")}


def measure(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str | None) -> dict:
    """Overall and per-type scores. `scheme` is the scheme of both sequences; None for tags without prefixes."""
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted sequences differ in length")
    tokens = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    result = {"sentences": len(gold), "tokens": tokens, "accuracy": correct / max(tokens, 1)}
    if scheme is None:
        return result | _per_tag(gold, pred)
    return result | _entities(gold, pred, scheme)


def _entities(gold, pred, scheme: str) -> dict:
    from seqeval import metrics
    from seqeval import scheme as seqeval_schemes

    target, name = _SEQEVAL[schemes.normalize_scheme(scheme)]
    gold = [schemes.convert(g, scheme, target) for g in gold]
    pred = [schemes.convert(p, scheme, target) for p in pred]
    kwargs = dict(mode="strict", scheme=getattr(seqeval_schemes, name), zero_division=0)
    report = metrics.classification_report(gold, pred, output_dict=True, **kwargs)  # one pass: the slow part
    per_type = {label: _row(v) for label, v in report.items() if not label.endswith(" avg")}
    overall = _row(report["micro avg"])  # what precision_score/recall_score/f1_score return
    return {"precision": overall["precision"], "recall": overall["recall"], "f1": overall["f1"],
            "per_type": per_type, "scored_as": name}


def _per_tag(gold, pred) -> dict:
    """Token accuracy and per-tag F1 (sklearn, installed with seqeval) for POS-like tags."""
    from sklearn.metrics import precision_recall_fscore_support

    flat_gold = [t for g in gold for t in g]
    flat_pred = [t for p in pred for t in p]
    labels = sorted(set(flat_gold) | set(flat_pred))
    p, r, f, s = precision_recall_fscore_support(flat_gold, flat_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(flat_gold, flat_pred, average="micro", zero_division=0)
    per_type = {lab: {"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
                for lab, a, b, c, d in zip(labels, p, r, f, s)}
    return {"precision": float(mp), "recall": float(mr), "f1": float(mf), "per_type": per_type,
            "scored_as": "tokens"}


def _row(v: dict) -> dict:
    return {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
            "support": int(v["support"])}
