"""`tagger select`: a pool streamed through the model (tagger/tagging/selection.py), the units it is least sure
of written, pre-tagged by it, for a person to correct. The pool's format is sniffed as `predict` sniffs it."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence, TextIO

from corpora.conll import Sentence, iter_conll_lines, looks_like_conll
from tagger import store
from tagger.commands.predicting import load_model
from tagger.data import feature_columns
from tagger.errors import ConfigError, InputError
from tagger.tagging import pipeline, selection
from tagger.tagging.selection import Selected
from tagger.paths import check_input_file, check_output_file
from tagger.tagging.streaming import SNIFF_LINES, conll_sentences, read_lines
from tagger.api import Tagger
from tagger.tagging.writers import WRITERS, jsonl

INPUT_FORMATS = ("auto", "text", "tokens", "conll")
OUTPUT_FORMATS = ("conll", "jsonl")


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def select(model: Path, pool: str, budget: int, strategy: str = "mnlp", input_format: str = "auto",
           output_format: str = "conll", output: Path | None = None, format: str = "auto", seed: int = 0,
           batch_size: int = pipeline.BATCH_SIZE, force: bool = False, warn: Callable[[str], None] = _stderr,
           progress: Callable[[int, int], None] = lambda units, tokens: None) -> dict:
    """Select BUDGET units of POOL ("-": standard input; plain or gzipped) by `strategy` and write them to
    `output` (atomically; None or "-": standard output). Every option and the pool's path are checked before
    the model loads. Returns {"selected", "seen" (units with a token), "read_as" (the pool's format)}."""
    selection.check(budget, strategy)
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"unknown output format {output_format!r} (one of {', '.join(OUTPUT_FORMATS)})")
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"unknown input format {input_format!r} (one of {', '.join(INPUT_FORMATS)})")
    output = None if output is None or str(output) == "-" else Path(output)
    check_output_file(output, force)
    check_input_file(pool)
    tagger = load_model(model, onnx=False)
    units, read_as = read_pool(pool, input_format, format, warn)
    seen = 0

    def counted(n: int, tokens: int) -> None:
        nonlocal seen
        seen += n
        progress(n, tokens)

    if read_as == "text":
        chosen = selection.select_texts(tagger, units, budget, strategy, seed, batch_size, progress=counted)
    else:
        chosen = selection.select(tagger, units, budget, strategy, seed, batch_size, progress=counted)
    if not chosen:
        raise InputError("no sentence to select: the pool has no tokens", path="<stdin>" if pool == "-" else pool)
    with store.atomic_file(output) as out:
        write_selected(tagger, chosen, output_format, out, strategy, batch_size)
    return {"selected": len(chosen), "seen": seen, "read_as": read_as}


def read_pool(ref: str, input_format: str, format: str = "auto",
              warn: Callable[[str], None] = _stderr) -> tuple[Iterator, str]:
    """The units of a pool, streamed, and the format they are read in: raw-text lines ("text"), token lists
    ("tokens") or CoNLL sentences, tags not read ("conll"). "auto" reads a pool whose first lines look like
    CoNLL columns as CoNLL (with a note), any other as raw text; "text" or "tokens" on such a pool warns."""
    if input_format == "conll":
        return conll_sentences(ref, format), "conll"
    name = "<stdin>" if ref == "-" else ref
    lines = read_lines(ref)
    head = list(itertools.islice(lines, SNIFF_LINES))
    lines = itertools.chain(head, lines)
    if looks_like_conll(head):
        if input_format == "auto":
            warn(f"note: {name} looks like a CoNLL file: its sentences are the units (tags ignored; "
                 "--input-format text reads each line as raw text)")
            return iter_conll_lines(lines, name, format, labelled=False), "conll"
        warn(f"warning: {name}: this looks like a CoNLL file, read as {input_format} (a unit a line): use "
             "--input-format conll to select its sentences")
    if input_format == "tokens":
        return (line.split() for line in lines), "tokens"
    return lines, "text"


def write_selected(tagger: Tagger, chosen: Sequence[Selected], output_format: str, out: TextIO,
                   strategy: str, batch_size: int = pipeline.BATCH_SIZE) -> None:
    """The chosen units, tagged by the model as a pre-annotation (tags in the training corpus's scheme), in
    the order given. conll: `token tag` lines (CoNLL input keeps its columns and gains the tag as the last
    one), a blank line after each sentence. jsonl: one object a unit with its "index" in the pool, the
    strategy's "score", and "tokens" + "tags" (sentences) or "text" + "entities" (raw text)."""
    writer = WRITERS["conll"](tagger.entity_types, tagger.vocab.source_scheme)
    if chosen and isinstance(chosen[0].unit, str):
        tagged = pipeline.tag_texts(tagger, [c.unit for c in chosen], batch_size=batch_size)
        for c, t in zip(chosen, tagged):
            out.write(writer.text(t) if output_format == "conll" else
                      jsonl({"index": c.index, "strategy": strategy, "score": c.score, "text": c.unit,
                             "entities": t.entities}))
        return
    sentences = [c.unit if isinstance(c.unit, Sentence) else Sentence(tuple(c.unit)) for c in chosen]
    columns = tagger.config.features
    feats = [feature_columns(s, columns) for s in sentences] if columns else ()
    tags = tagger.predict_tokens([s.tokens for s in sentences], feats, batch_size)
    for c, s, t in zip(chosen, sentences, tags):
        out.write(writer.sentence(s, t) if output_format == "conll" else
                  jsonl({"index": c.index, "strategy": strategy, "score": c.score, "tokens": list(s.tokens),
                         "tags": t}))
