"""Error kinds against hand-made gold/predicted pairs, their agreement with seqeval, and the HTML report."""
from __future__ import annotations

import json
import random
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import colour_pixels, html_marks, make_sentences, write_corpus
from corpora import schemes
from tagger.reports.analysis import KINDS, analyse, sentence_errors
from tagger.reports.html import label_colour
from tagger.reports.report import render_report

TOKENS = "Angela Merkel met Acme Corp staff in New York today".split()


def kinds(gold, pred) -> list[tuple]:
    return [(e["kind"], e["gold"], e["pred"]) for e in sentence_errors(gold, pred)[0]]


@pytest.mark.parametrize("gold, pred, expected", [
    # exact match: no error
    ([("PER", 0, 2)], [("PER", 0, 2)], []),
    ([("PER", 0, 2)], [("ORG", 0, 2)], [("label", ("PER", 0, 2), ("ORG", 0, 2))]),
    ([("ORG", 3, 5)], [("ORG", 3, 4)], [("boundary", ("ORG", 3, 5), ("ORG", 3, 4))]),
    ([("LOC", 7, 9)], [("ORG", 6, 9)], [("label_boundary", ("LOC", 7, 9), ("ORG", 6, 9))]),
    ([("LOC", 7, 9)], [], [("missed", ("LOC", 7, 9), None)]),
    ([], [("PER", 9, 10)], [("spurious", None, ("PER", 9, 10))]),
    # a prediction covering two golds is paired with one (the leftmost, overlaps being equal): the other is missed
    ([("PER", 0, 1), ("PER", 1, 2)], [("PER", 0, 2)],
     [("boundary", ("PER", 0, 1), ("PER", 0, 2)), ("missed", ("PER", 1, 2), None)]),
    # a gold overlapped by two predictions pairs with the one of its label, though the other overlaps more
    ([("ORG", 3, 6)], [("ORG", 3, 4), ("LOC", 4, 6)],
     [("boundary", ("ORG", 3, 6), ("ORG", 3, 4)), ("spurious", None, ("LOC", 4, 6))]),
    # of two of another label, the larger overlap
    ([("ORG", 3, 6)], [("PER", 3, 4), ("LOC", 4, 6)],
     [("label_boundary", ("ORG", 3, 6), ("LOC", 4, 6)), ("spurious", None, ("PER", 3, 4))]),
])
def test_error_kinds_of_hand_made_pairs(gold, pred, expected):
    assert kinds(gold, pred) == expected


def test_every_kind_in_one_sentence_each_error_counted_once():
    gold = [("PER", 0, 2), ("ORG", 3, 5), ("LOC", 7, 9)]
    pred = [("ORG", 0, 2), ("ORG", 3, 4), ("PER", 9, 10)]
    gold_tags, pred_tags = (schemes.from_spans(s, len(TOKENS), "iob2") for s in (gold, pred))
    report = analyse([TOKENS], [gold_tags], [pred_tags], "iob2")
    errors = report["errors"]
    assert errors["counts"] == {"label": 1, "boundary": 1, "label_boundary": 0, "missed": 1, "spurious": 1}
    assert errors["shares"]["label"] == 0.25 and errors["total"] == 4
    assert (errors["true_positives"], errors["false_positives"], errors["false_negatives"]) == (0, 3, 3)
    rows = errors["confusion"]["rows"]
    assert rows["PER"]["ORG"] == 1 and rows["ORG"]["ORG"] == 1 and rows["LOC"]["none"] == 1
    assert rows["none"]["PER"] == 1
    [sentence] = report["sentences"]
    assert sentence["tokens"] == TOKENS and sentence["gold"] == [list(s) for s in gold]
    assert [e["kind"] for e in sentence["errors"]] == ["label", "boundary", "missed", "spurious"]
    assert json.loads(json.dumps(report)) == report


def random_tags(rng: random.Random, length: int) -> list[str]:
    """IOB2-ish tags, invalid sequences (I- after O, a type change inside) included on purpose."""
    return [rng.choice(["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]) for _ in range(length)]


def test_counts_agree_with_seqeval_strict_on_random_sequences():
    rng = random.Random(7)
    gold = [schemes.convert(random_tags(rng, n), "iob2", "iob2") for n in rng.choices(range(1, 15), k=300)]
    pred = [random_tags(rng, len(g)) for g in gold]
    tokens = [[f"w{i}" for i in range(len(g))] for g in gold]
    report = analyse(tokens, gold, pred, "iob2")
    e = report["errors"]
    tp, fp, fn = e["true_positives"], e["false_positives"], e["false_negatives"]
    assert report["overall"]["precision"] == pytest.approx(tp / (tp + fp))
    assert report["overall"]["recall"] == pytest.approx(tp / (tp + fn))
    assert e["total"] == sum(e["counts"].values()) and fp + fn == e["total"] + sum(
        e["counts"][k] for k in ("label", "boundary", "label_boundary"))
    for label, row in e["confusion"]["rows"].items():  # each gold row sums to the label's support
        if label != "none":
            assert sum(row.values()) == report["per_type"][label]["support"]


def test_the_sentences_with_most_errors_come_first_and_are_limited():
    gold = [["B-PER", "O"], ["B-PER", "B-LOC"], ["O", "O"]]
    pred = [["O", "O"], ["O", "O"], ["O", "O"]]
    report = analyse([["a", "b"]] * 3, gold, pred, "iob2", top=1)
    assert [s["index"] for s in report["sentences"]] == [1]
    assert [s["index"] for s in analyse([["a", "b"]] * 3, gold, pred, "iob2")["sentences"]] == [1, 0]


class Tables(HTMLParser):
    """The report's error-kind counts (by data-kind) and confusion cells (by data-gold/data-pred)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.kinds, self.confusion, self.row_kind, self.cell, self.cells = {}, {}, None, None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.row_kind, self.cells = attrs.get("data-kind"), []
        if tag == "td":
            self.cell = (attrs.get("data-gold"), attrs.get("data-pred"))
            self.cells.append("")

    def handle_data(self, data):
        if self.cell is not None:
            self.cells[-1] += data
            if self.cell[0] is not None:
                self.confusion[self.cell] = int(data)

    def handle_endtag(self, tag):
        if tag == "td":
            self.cell = None
        if tag == "tr" and self.row_kind:
            self.kinds[self.row_kind] = int(self.cells[1])  # cells: kind, count, share
            self.row_kind = None


def read_tables(html: str) -> Tables:
    parser = Tables()
    parser.feed(html)
    return parser


def test_report_counts_equal_json(tmp_path: Path, trained_model: Path):
    test = write_corpus(tmp_path / "test.txt", make_sentences(25, seed=9))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["evaluate", str(trained_model), str(test), "--report", str(out), "--json"])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    tables = read_tables(out.read_text(encoding="utf-8"))
    assert tables.kinds == numbers["errors"]["counts"] and set(tables.kinds) == set(KINDS)
    confusion = numbers["errors"]["confusion"]["rows"]
    assert tables.confusion == {(g, p): n for g, row in confusion.items() for p, n in row.items()}
    diagonal = sum(confusion[g][g] for g in confusion if g != "none")  # correct and boundary errors
    assert numbers["errors"]["true_positives"] == diagonal - numbers["errors"]["counts"]["boundary"]
    plain = CliRunner().invoke(app, ["evaluate", str(trained_model), str(test), "--json"])
    assert {k: v for k, v in numbers.items() if k != "errors"} == json.loads(plain.stdout)


def test_report_on_a_directory_is_a_one_line_error(tmp_path: Path, trained_model: Path):
    test = write_corpus(tmp_path / "test.txt", make_sentences(3, seed=9))
    result = CliRunner().invoke(app, ["evaluate", str(trained_model), str(test), "--report", str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "is a directory" in result.output
    assert len(result.output.strip().splitlines()) == 1


def hand_made_report() -> dict:
    gold = [[("PER", 0, 2), ("ORG", 3, 5), ("LOC", 7, 9)], [("LOC", 1, 2)]]
    pred = [[("ORG", 0, 2), ("ORG", 3, 4), ("PER", 9, 10)], [("LOC", 0, 2)]]
    tokens = [TOKENS, ["in", "<Paris>", "&", "Rome"]]
    tags = lambda spans, toks: schemes.from_spans(spans, len(toks), "iob2")  # noqa: E731
    return analyse(tokens, [tags(g, t) for g, t in zip(gold, tokens)], [tags(p, t) for p, t in zip(pred, tokens)],
                   "iob2")


def test_report_page_in_chromium_marks_each_error_by_kind(browser, tmp_path: Path):
    report = hand_made_report()
    path = tmp_path / "report.html"
    path.write_text(render_report(report, "errors <on> test"), encoding="utf-8")
    dom, requests = browser.dom(path)
    assert requests == []
    marks = [(m["text"], m["tag"], m["attrs"].get("data-kind")) for m in html_marks(dom)]
    assert ("Angela Merkel", "PER", "label") in marks and ("Angela Merkel", "ORG", "label") in marks
    assert ("Acme Corp", "ORG", "boundary") in marks and ("Acme", "ORG", "boundary") in marks
    assert ("New York", "LOC", "missed") in marks and ("today", "PER", "spurious") in marks
    assert ("<Paris>", "LOC", "boundary") in marks and ("in <Paris>", "LOC", "boundary") in marks
    assert read_tables(dom).kinds == report["errors"]["counts"]
    pixels = browser.screenshot(path, 1100, 1400)
    assert len({tuple(p) for p in pixels.reshape(-1, 3)[::7]}) > 20, "the screenshot is blank"
    for label in ("PER", "ORG", "LOC"):
        assert colour_pixels(pixels, label_colour(label)) > 100, label
