"""The entity view: what the HTML says, how it escapes hostile text, and what Chromium shows of it."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import colour_pixels, html_marks
from tagger.reports.html import label_colour, low_score_colour, page_footer, page_header, paragraph

TEXT = "Ilse Yilmaz, a spokesman for Quantix Labs, said shares rose in Stonehaven."
HOSTILE = 'Tom & Jerry <script>alert("x")</script> said \'hi\' &amp; <b>left</b> for "Paris".'
LABELS = ["LOC", "MISC", "ORG", "PER"]


def entity(text: str, words: str, label: str, **extra) -> dict:
    start = text.index(words)
    return {"start": start, "end": start + len(words), "label": label, "text": words, **extra}


def page(lines: list[tuple[str, list[dict]]], labels=LABELS, title="Entities") -> str:
    return page_header(labels, title) + "".join(paragraph(t, e) for t, e in lines) + page_footer()


def visible_text(document: str) -> list[str]:
    """The text of each <p>, labels of marks left out: what the reader sees of the input."""
    paragraphs: list[str] = []

    class Parser(HTMLParser):
        inside = label = False

        def handle_starttag(self, tag, attrs):
            if tag == "p":
                self.inside = True
                paragraphs.append("")
            if tag == "span" and ("class", "tag") in attrs:
                self.label = True

        def handle_endtag(self, tag):
            self.inside = self.inside and tag != "p"
            self.label = self.label and tag != "span"

        def handle_data(self, data):
            if self.inside and not self.label:
                paragraphs[-1] += data

    Parser(convert_charrefs=True).feed(document)
    return paragraphs


def test_each_entity_is_a_mark_with_its_label_and_colour():
    html = paragraph(TEXT, [entity(TEXT, "Ilse Yilmaz", "PER"), entity(TEXT, "Quantix Labs", "ORG")])
    marks = html_marks(html)
    assert [(m["text"], m["tag"], m["attrs"]["data-label"]) for m in marks] == [
        ("Ilse Yilmaz", "PER", "PER"), ("Quantix Labs", "ORG", "ORG")]
    assert f"background:{label_colour('PER')}" in marks[0]["attrs"]["style"]
    assert visible_text(html) == [TEXT]


def test_hostile_text_shows_literally_and_makes_no_element():
    entities = [entity(HOSTILE, "Tom & Jerry", 'PER"><script>'), entity(HOSTILE, '"Paris"', "LOC")]
    html = page([(HOSTILE, entities)], labels=['PER"><script>', "LOC"], title="</title><script>x</script>")
    assert "<script" not in html and "<b>" not in html
    assert visible_text(html) == [HOSTILE]
    assert [m["attrs"]["data-label"] for m in html_marks(html)] == ['PER"><script>', "LOC"]


def test_score_shows_on_hover_and_low_scores_are_lighter():
    entities = [entity(TEXT, "Ilse Yilmaz", "PER", score=0.93), entity(TEXT, "Stonehaven", "LOC", score=0.31)]
    sure, unsure = html_marks(paragraph(TEXT, entities))
    assert sure["attrs"]["title"] == "PER 0.93" and "low" not in sure["attrs"]["class"]
    assert unsure["attrs"]["title"] == "LOC 0.31" and "low" in unsure["attrs"]["class"].split()
    assert f"background:{low_score_colour('LOC')}" in unsure["attrs"]["style"]
    assert low_score_colour("LOC") != label_colour("LOC")


def test_the_legend_explains_the_dashed_outline_when_entities_are_scored():
    scored = re.search(r'<span class="key low-score">([^<]*)</span>', page_header(LABELS, "Entities", scored=True))
    assert scored and "dashed outline" in scored.group(1) and "0.50" in scored.group(1)
    assert ".legend .key.low-score {" in page_header(LABELS, "Entities") and \
        "dashed" in re.search(r"\.legend \.key\.low-score \{([^}]*)\}", page_header(LABELS, "x")).group(1)
    assert 'class="key low-score"' not in page_header(LABELS, "Entities")  # no scores: nothing to explain


def test_predict_scores_as_html_puts_the_explanation_in_the_legend(trained_model):
    from typer.testing import CliRunner

    from cli.main import app

    run = lambda *options: CliRunner().invoke(app, ["predict", str(trained_model), "--output-format", "html",
                                                    *options], input="John Smith visited Paris .\n").stdout
    assert 'class="key low-score"' in run("--scores") and 'class="key low-score"' in run("--min-score", "0.2")
    assert 'class="key low-score"' not in run()


def test_colours_are_distinct_for_the_usual_types_and_chinese_subtypes():
    usual = ["PER", "LOC", "ORG", "MISC"]
    weibo = [f"{t}.{s}" for t in ("PER", "LOC", "ORG", "GPE") for s in ("NAM", "NOM")]
    for labels in (usual, weibo):
        colours = [label_colour(label) for label in labels]
        assert len(set(colours)) == len(labels), dict(zip(labels, colours))
        assert all(re.fullmatch("#[0-9a-f]{6}", c) for c in colours)


def test_colours_depend_on_the_label_alone_not_the_process():
    labels = ["PER", "DATE", "PRODUCT", "GPE.NOM", "EVENT.X"]
    code = f"from tagger.reports.html import label_colour; print([label_colour(l) for l in {labels!r}])"
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert outputs == {str([label_colour(label) for label in labels])}


def test_entities_outside_the_text_or_overlapping_are_refused():
    with pytest.raises(ValueError, match="outside"):
        paragraph("Paris", [{"start": 0, "end": 9, "label": "LOC"}])
    with pytest.raises(ValueError, match="overlaps"):
        paragraph("New York", [{"start": 0, "end": 8, "label": "LOC"}, {"start": 4, "end": 8, "label": "LOC"}])


def test_pages_stream_as_header_lines_footer_and_need_nothing_outside():
    html = page_header(LABELS, "t") + "".join(paragraph(f"line {i}", []) for i in range(1000)) + page_footer()
    assert html.count("<p>") == 1000 and html.rstrip().endswith("</html>")
    assert "default-src 'none'" in html
    assert not re.search(r"https?:|//|src=|url\(|@import|<script|<link", html.replace("file://", ""))


def write_page(tmp_path: Path, lines, **kwargs) -> Path:
    path = tmp_path / "page.html"
    path.write_text(page(lines, **kwargs), encoding="utf-8")
    return path


def test_chromium_shows_the_marks_and_the_text_literally(browser, tmp_path):
    entities = [entity(TEXT, "Ilse Yilmaz", "PER"), entity(TEXT, "Quantix Labs", "ORG", score=0.4)]
    path = write_page(tmp_path, [(TEXT, entities), (HOSTILE, [entity(HOSTILE, '"Paris"', "LOC")]), ("", [])])
    dom, requests = browser.dom(path)
    assert [(m["text"], m["tag"]) for m in html_marks(dom)] == [
        ("Ilse Yilmaz", "PER"), ("Quantix Labs", "ORG"), ('"Paris"', "LOC")]
    assert visible_text(dom) == [TEXT, HOSTILE, ""]
    assert "<script" not in dom  # the hostile line made no element
    assert requests == []


def test_chromium_paints_the_label_colours(browser, tmp_path):
    lines = [(TEXT, [entity(TEXT, "Ilse Yilmaz", "PER"), entity(TEXT, "Quantix Labs", "ORG"),
                     entity(TEXT, "Stonehaven", "LOC")])]
    pixels = browser.screenshot(write_page(tmp_path, lines), 900, 300)
    assert len({tuple(p) for p in pixels.reshape(-1, 3)[::7]}) > 20, "the screenshot is blank"
    for label in ("PER", "ORG", "LOC", "MISC"):  # MISC: its legend key
        assert colour_pixels(pixels, label_colour(label)) > 200, label


def test_no_request_leaves_the_page_even_when_one_is_written_in(browser, tmp_path):
    """A page without our CSP does fetch an image (so the net log sees requests); ours blocks even that."""
    bait = '<img src="http://example.invalid/bait.png">'
    plain = tmp_path / "plain.html"
    plain.write_text(f"<!DOCTYPE html><html><body><p>x</p>{bait}</body></html>", encoding="utf-8")
    assert browser.dom(plain)[1] == ["http://example.invalid/bait.png"]
    ours = write_page(tmp_path, [(TEXT, [entity(TEXT, "Stonehaven", "LOC")])])
    ours.write_text(ours.read_text(encoding="utf-8").replace("</main>", bait + "</main>"), encoding="utf-8")
    assert browser.dom(ours)[1] == []


def test_tagger_predict_writes_the_page_that_chromium_shows(trained_model, tmp_path, browser):
    from typer.testing import CliRunner

    from cli.main import app

    text = tmp_path / "in.txt"
    text.write_text("John Smith visited Paris .\nTom & Jerry <script>x</script> met Mary in Berlin .\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["predict", str(trained_model), str(text), "--output-format", "html",
                                      "-o", str(tmp_path / "out.html")])
    assert result.exit_code == 0, result.output
    dom, requests = browser.dom(tmp_path / "out.html")
    assert ("John Smith", "PER") in [(m["text"], m["tag"]) for m in html_marks(dom)]
    assert visible_text(dom) == text.read_text(encoding="utf-8").splitlines()
    assert requests == []


def test_the_html_writers_legend_is_the_models_entity_types(trained_model):
    """A writer takes entity types (PER, LOC), never the model's B-/I- tags: one meaning at every call site."""
    from tagger.api import Tagger
    from tagger.writers import WRITERS

    tagger = Tagger.load(trained_model)
    header = WRITERS["html"](tagger.entity_types, tagger.vocab.source_scheme).header()
    assert tagger.entity_types and all(f">{label}<" in header for label in tagger.entity_types)
    assert not any(tag in header for tag in tagger.labels if tag != "O")
