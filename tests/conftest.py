"""Shared fixtures: tiny synthetic corpora (written into tmp_path), a tiny config and one trained tiny model.

Everything here is small on purpose: the suite runs on 2 cores beside a real training job. The corpus is
made from templates so that a tiny model learns it in a few epochs (names are capitalised, places follow
"in", organisations end in "AG"/"Corp"): enough to see predictions that are not all O.
"""
from __future__ import annotations

import json
import os
import random
import signal
import shutil
from pathlib import Path
from typing import Sequence

import pytest

from corpora import schemes

PEOPLE = [["John", "Smith"], ["Mary"], ["Angela", "Merkel"], ["Paul", "Jones"], ["Anna"], ["Peter", "Brown"]]
PLACES = [["Paris"], ["Berlin"], ["New", "York"], ["London"], ["Rome"]]
ORGS = [["Siemens", "AG"], ["Acme", "Corp"], ["Bosch", "AG"], ["Initech", "Corp"]]
TEMPLATES = [
    ["{PER}", "visited", "{LOC}", "."],
    ["{PER}", "works", "for", "{ORG}", "in", "{LOC}", "."],
    ["the", "meeting", "in", "{LOC}", "was", "long", "."],
    ["{ORG}", "hired", "{PER}", "."],
    ["yesterday", "{PER}", "met", "{PER}", "in", "{LOC}", "."],
    ["shares", "of", "{ORG}", "fell", "."],
    ["it", "rained", "all", "day", "."],
]
FILLERS = {"PER": PEOPLE, "LOC": PLACES, "ORG": ORGS}

TINY_CONFIG = dict(hidden_size=16, char_filters=8, char_dim=8, word_dim=16, casing_dim=4, epochs=3,
                   batch_size=8, dropout=0.0, word_dropout=0.0, optimizer="adam", lr=0.01, seed=3, threads=1)
"""Hyperparameters of every model the tests train: trains 40 sentences x 3 epochs in well under a second."""


def make_sentences(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """`n` (tokens, IOB2 tags) sentences drawn from TEMPLATES."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tokens, tags = [], []
        for slot in rng.choice(TEMPLATES):
            if slot.startswith("{"):
                label = slot[1:-1]
                words = rng.choice(FILLERS[label])
                tokens += words
                tags += [f"B-{label}"] + [f"I-{label}"] * (len(words) - 1)
            else:
                tokens.append(slot)
                tags.append("O")
        out.append((tokens, tags))
    return out


def conll_text(sentences: Sequence[tuple[Sequence[str], Sequence[str]]], scheme: str = "iob2",
               newline: str = "\n") -> str:
    """Two-column `token tag` text, blank line between sentences, tags re-encoded from IOB2 into `scheme`."""
    blocks = []
    for tokens, tags in sentences:
        tags = schemes.convert(list(tags), "iob2", scheme) if scheme != "iob2" else tags
        blocks.append("".join(f"{tok} {tag}{newline}" for tok, tag in zip(tokens, tags)))
    return newline.join(blocks)


def write_corpus(path: Path, sentences, scheme: str = "iob2", newline: str = "\n", bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + conll_text(sentences, scheme, newline).encode("utf-8"))
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """train.txt (40 sentences), dev.txt (15) and test.txt (15) in IOB2, and tiny.toml, all in tmp_path."""
    sents = make_sentences(70, seed=0)
    return {"train": write_corpus(tmp_path / "train.txt", sents[:40]),
            "dev": write_corpus(tmp_path / "dev.txt", sents[40:55]),
            "test": write_corpus(tmp_path / "test.txt", sents[55:]),
            "config": write_toml(tmp_path / "tiny.toml")}


def write_toml(path: Path, **changes) -> Path:
    """TINY_CONFIG with `changes` as a TOML recipe, what `tagger train --config` reads."""
    values = {**TINY_CONFIG, **changes}
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8")
    return path


def train_tiny(output: Path, train_path: Path, dev_path: Path, **changes) -> Path:
    """Train a tiny model through tagger.jobs (what `tagger train` runs) into `output`."""
    from tagger import commands

    config = write_toml(output.parent / f"{output.name}.toml", **changes)
    commands.train(str(train_path), str(dev_path), output, config_file=config)
    return output


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory) -> Path:
    """One tiny model, trained once for the whole session. Read-only: copy it (`model_copy`) to alter it."""
    root = tmp_path_factory.mktemp("trained")
    sents = make_sentences(60, seed=1)
    train = write_corpus(root / "train.txt", sents[:45])
    dev = write_corpus(root / "dev.txt", sents[45:])
    return train_tiny(root / "model", train, dev, epochs=4)


@pytest.fixture
def model_copy(trained_model: Path, tmp_path: Path) -> Path:
    """A private copy of the session's model directory, free to damage."""
    target = tmp_path / "model"
    shutil.copytree(trained_model, target, ignore=shutil.ignore_patterns("checkpoint*", "metrics.jsonl"))
    return target


# -- bad input, shared by the CLI tests and the Python API tests ---------------------------------------------

BAD_CORPORA = {
    # name: (file bytes or None for "do not create", extra CLI options, fragments the one-line error must hold)
    "missing": (None, [], ["no such file"]),
    "empty": (b"", [], ["empty file"]),
    "binary": (b"John B-PER\x00\x01\x02\nvisited O\n", [], [":1:", "NUL"]),
    "bad_utf8": (b"John B-PER\nPar\xffis B-LOC\n", [], [":2:", "invalid UTF-8"]),
    "ragged_columns": (b"John NNP B-PER\nSmith NNP I-PER\nvisited O\n", [], [":3:", "expected 3 columns", "found 2"]),
    "no_tag_column": (b"John\nvisited\nParis\n", [], [":1:", "missing tag column"]),
    "unknown_prefix": (b"John B-PER\nSmith X-PER\nvisited O\n", [], [":2:", "'X-PER'", "fits no tagging scheme"]),
    "empty_label": (b"John B-PER\nvisited O\nParis B-\n", [], [":3:", "'B-'", "fits no tagging scheme"]),
    "only_empty_labels": (b"John O\nvisited O\n\nParis B-\n", [], [":4:", "'B-'", "without an entity type"]),
    "tag_column_out_of_range": (b"John B-PER\nvisited O\n", ["--tag-column", "5"], [":1:", "tag column 5"]),
}
"""Corpus files a user may really pass, and what the error must say (besides the file's path)."""


def bad_corpus(tmp_path: Path, name: str) -> tuple[Path, list[str], list[str]]:
    """(path, extra CLI options, expected message fragments) of BAD_CORPORA[name], the file written."""
    data, options, fragments = BAD_CORPORA[name]
    path = tmp_path / f"{name}.txt"
    if data is not None:
        path.write_bytes(data)
    return path, options, fragments


def tag_column_option(options: list[str]) -> int | None:
    return int(options[options.index("--tag-column") + 1]) if "--tag-column" in options else None


def rewrite_config(model: Path, **changes) -> None:
    """Change settings in a model's config.json (its sha256 entries cover the other two files, not this one)."""
    meta = json.loads((model / "config.json").read_text(encoding="utf-8"))
    meta["config"].update(changes)
    (model / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def flip_byte(path: Path, offset_from_end: int = 20) -> None:
    """Alter one bit inside the tensor data (past the safetensors header, which stays parseable)."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGES = {
    # name: (how to damage a model copy, fragments the error must hold)
    "missing_vocab": (lambda m: (m / "vocab.json").unlink(), ["lacks vocab.json"]),
    "missing_weights": (lambda m: (m / "model.safetensors").unlink(), ["lacks model.safetensors"]),
    "truncated_weights": (lambda m: truncate(m / "model.safetensors"), ["model.safetensors", "checksum"]),
    "altered_weights": (lambda m: flip_byte(m / "model.safetensors"), ["model.safetensors", "checksum"]),
    "other_version": (lambda m: rewrite_config(m, version=99), ["config.json", "version 99"]),
    "wrong_shapes": (lambda m: rewrite_config(m, hidden_size=TINY_CONFIG["hidden_size"] * 2),
                     ["model.safetensors", "weights do not match"]),
}
"""Ways a model directory gets damaged, and what loading it must say."""


def ctrl_c() -> None:
    """What pressing Ctrl-C does: SIGINT to this process."""
    os.kill(os.getpid(), signal.SIGINT)


def interrupt_loss_at(monkeypatch, call: int, after_forward: bool = False) -> None:
    """Ctrl-C on the `call`-th batch: before its forward pass, or after it (as if during backward)."""
    from tagger.training.model import BiLSTMCRF

    real, calls = BiLSTMCRF.loss, {"n": 0}

    def loss(self, batch):
        calls["n"] += 1
        if calls["n"] == call and not after_forward:
            ctrl_c()
        value = real(self, batch)
        if calls["n"] == call and after_forward:
            ctrl_c()
        return value

    monkeypatch.setattr(BiLSTMCRF, "loss", loss)


# -- a headless Chromium, for the tests that look at our HTML pages as a reader would ------------------------

CHROMIUM = os.environ.get("TAGGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


class Browser:
    """Runs Chromium on a page file: its DOM after rendering, a screenshot, the requests the page made."""

    def __init__(self, executable: str, workdir: Path):
        self.executable, self.workdir, self.runs = executable, workdir, 0

    def _run(self, page: Path, *args: str) -> tuple[str, Path]:
        import subprocess

        self.runs += 1
        netlog = self.workdir / f"netlog-{self.runs}.json"
        command = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.workdir / f'profile-{self.runs}'}",
                   f"--log-net-log={netlog}", *args, page.resolve().as_uri()]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout, netlog

    def dom(self, page: Path) -> tuple[str, list[str]]:
        """The serialised DOM after loading `page`, and the URLs of the requests the page made."""
        dom, netlog = self._run(page, "--dump-dom")
        return dom, page_requests(netlog)

    def screenshot(self, page: Path, width: int = 1000, height: int = 700):
        """The page as Chromium paints it: a (height, width, 3) uint8 array."""
        import numpy as np
        from matplotlib import image

        png = self.workdir / f"shot-{self.runs + 1}.png"
        self._run(page, f"--screenshot={png}", f"--window-size={width},{height}")
        pixels = image.imread(png)  # (height, width, 3 or 4) floats in [0, 1]
        return np.round(pixels[..., :3] * 255).astype(np.uint8)


def page_requests(netlog: Path) -> list[str]:
    """URLs fetched on behalf of a file:// page, from Chromium's net log (Chromium's own background
    requests carry another network isolation key and are left out)."""
    log = json.loads(netlog.read_text(encoding="utf-8"))
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"]
            if e["type"] == start_job and "file://" in e["params"].get("network_isolation_key", "")]


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        if os.environ.get("TAGGER_REQUIRE_BROWSER"):  # CI: .ci/run installs Chromium, so these must run
            pytest.fail(f"TAGGER_REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (set TAGGER_CHROMIUM, or install Debian's chromium package as "
                    ".ci/run does): the page is not checked in a browser")
    return Browser(CHROMIUM, tmp_path / "chromium")


def colour_pixels(pixels, colour: str) -> int:
    """How many pixels of a screenshot are exactly the #rrggbb `colour`."""
    import numpy as np

    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
    return int((pixels == rgb).all(axis=-1).sum())


def html_marks(document: str) -> list[dict]:
    """The <mark> elements of an HTML document: their attributes, text (without the label tag inside) and
    the label tag's text, in document order."""
    from html.parser import HTMLParser

    found: list[dict] = []

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.mark, self.in_tag = None, False

        def handle_starttag(self, tag, attrs):
            if tag == "mark":
                self.mark = {"attrs": dict(attrs), "text": "", "tag": ""}
            elif tag == "span" and self.mark is not None:
                self.in_tag = True

        def handle_endtag(self, tag):
            if tag == "span":
                self.in_tag = False
            elif tag == "mark" and self.mark is not None:
                found.append(self.mark)
                self.mark = None

        def handle_data(self, data):
            if self.mark is not None:
                self.mark["tag" if self.in_tag else "text"] += data

    Parser().feed(document)
    return found


def assert_user_error(result, *fragments: str) -> None:
    """Exit 1 and one `error: ...` line on stderr holding every fragment; no traceback."""
    assert result.exit_code == 1, (result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
