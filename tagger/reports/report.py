"""The error-analysis report (tagger.analysis) as one self-contained HTML page, made like tagger.html's."""
from __future__ import annotations

from typing import Sequence

from tagger.reports import html
from tagger.reports.analysis import KIND_NAMES, KINDS

REPORT_STYLE = html.STYLE + """
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.6em; text-align: right; }
th { background: #f6f8fa; }
td.text, th.text { text-align: left; }
td.zero { color: #bbb; }
td.diag { font-weight: bold; }
table.sentences th { text-align: left; }
table.sentences td { text-align: left; vertical-align: top; white-space: pre-wrap; line-height: 2.1; }
mark.ent[data-kind] { outline: 2px solid #d1242f; }
mark.ent.correct { outline: none; }
mark.ent[data-kind]::after { content: attr(data-kind); font-size: 0.6em; color: #d1242f; margin-left: 0.3em;
                             vertical-align: super; }
mark.ent.correct::after { content: none; }
ul.errors { margin: 0.2em 0 0; padding-left: 1.2em; font-size: 0.85em; line-height: 1.5; }
"""


def render_report(report: dict, title: str) -> str:
    """The whole report page: scores per label, errors by kind, the confusion table, the worst sentences."""
    errors = report["errors"]
    labels = [label for label in errors["confusion"]["labels"] if label != "none"]
    parts = [html.head(title, REPORT_STYLE), html.legend(labels),
             "<h2>Scores per label</h2>\n", scores_table(report),
             "<h2>Errors by kind</h2>\n", kinds_table(errors),
             "<h2>Confusion: gold (rows) against predicted (columns)</h2>\n", confusion_table(errors["confusion"]),
             f"<h2>The {len(report['sentences'])} sentences with the most errors</h2>\n",
             sentences_table(report["sentences"]), "</body>\n</html>\n"]
    return "".join(parts)


def scores_table(report: dict) -> str:
    rows = [_row(["label", "precision", "recall", "F1", "support"], "th")]
    for label, v in sorted(report["per_type"].items()):
        rows.append(_row([label, _pct(v["precision"]), _pct(v["recall"]), _pct(v["f1"]), str(v["support"])]))
    overall, support = report["overall"], sum(v["support"] for v in report["per_type"].values())
    rows.append(_row(["overall", _pct(overall["precision"]), _pct(overall["recall"]), _pct(overall["f1"]),
                      str(support)], "th"))
    return _table(rows, "scores")


def kinds_table(errors: dict) -> str:
    rows = [_row(["kind", "count", "share"], "th")]
    for kind in KINDS:
        rows.append(_row([KIND_NAMES[kind], str(errors["counts"][kind]), _pct(errors["shares"][kind])],
                         attrs=f" data-kind=\"{kind}\""))
    rows.append(_row(["all errors", str(errors["total"]), _pct(1.0 if errors["total"] else 0.0)], "th"))
    return _table(rows, "kinds")


def confusion_table(confusion: dict) -> str:
    labels = confusion["labels"]
    rows = [_row(["gold \\ predicted", *labels], "th")]
    for gold in labels:
        cells = [f"<th class=\"text\">{html.escape(gold)}</th>"]
        for pred in labels:
            n = confusion["rows"][gold][pred]
            css = "diag" if gold == pred and gold != "none" else "zero" if n == 0 else ""
            cells.append(f"<td class=\"{css}\" data-gold=\"{html.escape(gold)}\" data-pred=\"{html.escape(pred)}\">"
                         f"{n}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>\n")
    return _table(rows, "confusion")


def sentences_table(sentences: Sequence[dict]) -> str:
    rows = [_row(["#", "gold", "predicted", "errors"], "th")]
    for s in sentences:
        text, offsets = _join(s["tokens"])
        gold_kinds, pred_kinds = _kinds_by_span(s["errors"])
        gold = [_entity(span, offsets, gold_kinds) for span in s["gold"]]
        pred = [_entity(span, offsets, pred_kinds) for span in s["pred"]]
        listed = "".join(f"<li data-kind=\"{e['kind']}\">{html.escape(_describe(e, s['tokens']))}</li>"
                         for e in s["errors"])
        rows.append(f"<tr data-sentence=\"{s['index']}\"><td>{s['index'] + 1}</td>"
                    f"<td class=\"gold\">{html.marks(text, gold)}</td><td class=\"pred\">{html.marks(text, pred)}</td>"
                    f"<td><ul class=\"errors\">{listed}</ul></td></tr>\n")
    return _table(rows, "sentences")


def _kinds_by_span(errors: Sequence[dict]) -> tuple[dict, dict]:
    gold = {tuple(e["gold"]): e["kind"] for e in errors if e["gold"] is not None}
    pred = {tuple(e["pred"]): e["kind"] for e in errors if e["pred"] is not None}
    return gold, pred


def _entity(span: Sequence, offsets: Sequence[tuple[int, int]], kinds: dict) -> dict:
    label, start, end = span
    return {"label": label, "start": offsets[start][0], "end": offsets[end - 1][1],
            "kind": kinds.get(tuple(span), "correct")}


def _describe(error: dict, tokens: Sequence[str]) -> str:
    def said(span):
        return f"{span[0]} \u201c{' '.join(tokens[span[1]:span[2]])}\u201d" if span else "nothing"
    return f"{KIND_NAMES[error['kind']]}: gold {said(error['gold'])}, predicted {said(error['pred'])}"


def _join(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Tokens joined by spaces, and each token's (start, end) in that text."""
    offsets, at = [], 0
    for token in tokens:
        offsets.append((at, at + len(token)))
        at += len(token) + 1
    return " ".join(tokens), offsets


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _row(cells: Sequence[str], tag: str = "td", attrs: str = "") -> str:
    first, *rest = cells
    return (f"<tr{attrs}><{tag} class=\"text\">{html.escape(first)}</{tag}>"
            + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in rest) + "</tr>\n")


def _table(rows: Sequence[str], css: str) -> str:
    return f"<table class=\"{css}\">\n{''.join(rows)}</table>\n"
