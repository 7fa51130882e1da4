"""`tagger predict`, `evaluate`, `convert` and `calibrate`: their options checked before a model loads, then the
work handed to tagger.tagging and tagger.reports."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

from corpora import schemes
from corpora.conll import Sentence, read_conll
from corpora.conll_writer import format_sentence
from tagger import store
from tagger.api import Tagger
from tagger.data import (check_model_fits, check_tags, read_sentences,
                         unseen_labels)
from tagger.errors import ConfigError, InputError
from tagger.paths import check_input_file, check_output_file
from tagger.tagging.streaming import auto_workers, predict_files
from tagger.tagging import pipeline
from tagger.tagging.confidence import ScoreOptions
from tagger.tagging.writers import WRITERS

Progress = Callable[[int, int], None]  # (units done, their tokens), called as work goes
EVALUATE_CHUNK = 2048  # sentences scored between progress reports
# what `predict --output`'s extension says about its format (as `plot`'s does), when --output-format is not given
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".conll": "conll", ".html": "html", ".htm": "html"}
TEXT_FORMATS = ("text", "tokens", "conll")  # what `predict` reads without --ray


def _no_progress(units: int, tokens: int) -> None:
    pass


def load_model(model: Path, onnx: bool = True) -> Tagger:
    """MODEL as a Tagger; an ONNX export directory as an OnnxTagger (tagging through onnxruntime) when `onnx`,
    else the ModelError of tagger/store.py, which says which commands take an export."""
    exported = all((Path(model) / name).is_file() for name in store.ONNX_EXPORT)
    if onnx and exported and not (Path(model) / "config.json").exists():  # export.runtime.is_export, unimported
        from tagger.export.runtime import OnnxTagger

        return OnnxTagger.load(model)
    return Tagger.load(model)


def evaluate(model: Path, test_ref: str, format: str = "auto", tag_column: int | None = None,
             scheme: str = "auto", report: Path | None = None, force: bool = False,
             progress: Progress = _no_progress) -> dict:
    """Scores of MODEL on TEST; with `report`, also the error analysis, under "errors", and its HTML page
    written (atomically) to `report`, which must not exist unless `force`. `tag_column` defaults to the one
    the model was trained with (train --tag-column, saved in its config.json)."""
    check_output_file(report, force)
    tagger = load_model(model)
    if tag_column is None:
        tag_column = trained_tag_column(tagger)
    sentences = read_sentences(test_ref, format, tag_column, split="test")
    test_scheme = check_tags(sentences, test_ref, scheme)
    check_model_fits(tagger.vocab.source_scheme, test_scheme, test_ref)
    gold, pred = _gold_and_predicted(tagger, sentences, test_scheme, progress)
    if report is None:
        result = measure(gold, pred, tagger.scheme)
    else:
        result = _evaluate_with_report(tagger, sentences, gold, pred, f"Errors of {model.name} on {test_ref}",
                                       report)
    missing = unseen_labels(sentences, tagger.vocab.tags.items)
    if missing:
        result["unseen_labels"] = missing
        print(f"warning: {test_ref}: label(s) {', '.join(missing)} never seen in training: scored as missed",
              file=sys.stderr)
    return result


def trained_tag_column(tagger: Tagger) -> int | None:
    """The tag column the model was trained with (train --tag-column), None for the default (the last)."""
    return (tagger.meta.get("training") or {}).get("tag_column")


def _gold_and_predicted(tagger: Tagger, sentences: Sequence[Sentence], scheme: str | None,
                        progress: Progress) -> tuple[list[list[str]], list[list[str]]]:
    """pipeline.gold_and_predicted, EVALUATE_CHUNK sentences at a time, reporting progress after each."""
    gold: list[list[str]] = []
    pred: list[list[str]] = []
    for start in range(0, len(sentences), EVALUATE_CHUNK):
        part = sentences[start:start + EVALUATE_CHUNK]
        g, p = pipeline.gold_and_predicted(tagger, part, scheme)
        gold += g
        pred += p
        progress(len(part), sum(len(s.tokens) for s in part))
    return gold, pred


def measure(gold: list[list[str]], pred: list[list[str]], scheme: str | None) -> dict:
    from tagger.reports.metrics import measure as scores

    return scores(gold, pred, scheme)


def _evaluate_with_report(tagger, sentences: Sequence[Sentence], gold: list[list[str]], pred: list[list[str]],
                          title: str, report: Path) -> dict:
    from tagger.reports.analysis import analyse
    from tagger.reports.report import render_report
    from tagger.store import atomic_write

    if tagger.scheme is None:
        raise InputError("--report: the model's tags are plain labels, not entity spans: there are no entity "
                         "errors to analyse", path=str(report))
    result = measure(gold, pred, tagger.scheme)
    analysis = analyse([s.tokens for s in sentences], gold, pred, tagger.scheme, scores=result)
    atomic_write(report, render_report(analysis, title).encode("utf-8"))
    return result | {"errors": analysis["errors"]}


def convert(input: Path, output: Path, to: str, source: str = "auto", format: str = "auto",
            tag_column: int | None = None, force: bool = False) -> int:
    check_output_file(output, force)
    sentences = list(read_conll(input, format=format, tag_column=tag_column))
    src = check_tags(sentences, str(input), source)
    if src is None:
        raise InputError("tags have no B-/I-/E-/S- prefixes: there is no scheme to convert", path=str(input))
    dst = schemes.normalize_scheme(to)
    column = -1 if tag_column is None else tag_column
    with store.atomic_file(output) as out:
        for s in sentences:
            out.write(format_sentence(s, schemes.convert(s.tags, src, dst), _write_format(s), tag_column=column,
                                      document=True))
    return len(sentences)


def _write_format(sentence) -> str:
    return "conll2003" if sentence.rows and len(sentence.rows[0]) > 2 else "columns"


def output_format_for(output: Path | None, asked: str | None, input_format: str = "text") -> str:
    """--output-format; else the format --output's extension names (.jsonl, .conll, .html, as `plot` reads
    its extension); else jsonl (conll for CoNLL input). ConfigError when the two disagree."""
    suffix = Path(output).suffix.lower() if output is not None and str(output) != "-" else ""
    named = EXTENSIONS.get(suffix)
    if asked and named and asked != named:
        raise ConfigError(f"--output {output} ends in {suffix}, which is {named}, but --output-format is {asked}: "
                          "make them agree (without --output-format the extension chooses)")
    return asked or named or ("conll" if input_format == "conll" else "jsonl")


def predict(model: Path | Tagger, inputs: Sequence[str], input_format: str = "text", output_format: str | None = None,
            output: Path | None = None, format: str = "auto", batch_size: int = 256, force: bool = False,
            workers: int = 0, warn: Callable[[str], None] = lambda text: print(text, file=sys.stderr),
            scores: bool = False, min_score: float | None = None, n_best: int | None = None,
            loaded: Callable[[], None] = lambda: None, progress: Progress = _no_progress) -> None:
    """Tag INPUTs ("-": standard input; files plain or gzipped) as they stream in, written to `output`
    (atomically) or standard output, in `output_format` (None: output_format_for's choice).

    workers: processes tagging chunks in parallel; 0 picks one per core for large inputs, 1 otherwise.
    scores: entities gain "score" (CoNLL: a column of each tag's marginal); min_score: entities below it are
    dropped (implies scores); n_best: JSONL records gain the n best "alternatives". Every argument and input
    file is checked before the model loads, so a typo costs no load; `loaded` is called once a model given
    as a path has loaded (the CLI freezes the collector there: process-wide settings are the CLI's);
    `progress` gets each chunk's lines (or sentences) and tokens once written."""
    if input_format not in TEXT_FORMATS or output_format == "parquet":
        raise ConfigError(f"{input_format if input_format not in TEXT_FORMATS else output_format} input or output "
                          "needs --ray (with --output OUT_DIR)")
    output_format = output_format_for(output, output_format, input_format)
    options = score_options(output_format, scores, min_score, n_best)
    check_output_file(output, force)
    if output_format not in WRITERS:
        raise InputError(f"unknown output format {output_format!r} (one of {', '.join(WRITERS)})")
    for ref in inputs:
        check_input_file(ref)
    if not isinstance(model, Tagger):
        model = load_model(model)  # an export directory tags through onnxruntime
        loaded()
    tagger = model
    writer = WRITERS[output_format](tagger.entity_types, tagger.vocab.source_scheme,
                                    f"Entities found by {tagger.meta.get('name', 'tagger')}", scored=options.marginals)
    with store.atomic_file(output) as out:
        predict_files(tagger, inputs, writer, out, input_format, format, workers or auto_workers(inputs), warn,
                      options, batch_size, progress)


def predict_on_ray(model: Path, inputs: Sequence[str], output: Path | None, input_format: str,
                   output_format: str | None, text_column: str, batch_size: int, workers: int,
                   address: str | None, scores: bool, min_score: float | None, n_best: int | None) -> None:
    """`predict --ray`: Ray Data reads shards, actors tag them, shards are written (tagger/serving/ray_data.py,
    imported only here: Ray is an optional extra)."""
    from tagger.serving import ray_data

    ray_data.check_formats(input_format, output_format, True, address)
    if n_best:
        raise ConfigError("--n-best is not available with --ray (use --scores or --min-score)")
    ray_data.tag_files(model, list(inputs), output, input_format, output_format or "jsonl", text_column, batch_size,
                       concurrency=workers, address=address, scores=scores, min_score=min_score)


def score_options(output_format: str, scores: bool, min_score: float | None, n_best: int | None) -> ScoreOptions:
    """The CLI's --scores, --min-score and --n-best, checked: ConfigError for a score outside [0, 1], fewer
    than one analysis, or alternatives in a format that has no place for them."""
    if n_best is not None and (isinstance(n_best, bool) or not isinstance(n_best, int) or n_best < 1):
        raise ConfigError(f"--n-best must be a whole number of at least 1, not {n_best!r}")
    if n_best is not None and output_format != "jsonl":
        raise ConfigError(f"--n-best writes alternatives in JSONL only, not {output_format}: use "
                          "--output-format jsonl")
    return ScoreOptions(scores=scores, min_score=min_score, n_best=n_best or 0)


def calibrate(model: Path, dev_ref: str, format: str = "auto", tag_column: int | None = None,
              scheme: str = "auto") -> dict:
    """Fit MODEL's temperature on DEV (tagger/tagging/calibration.py) and save it in MODEL's config.json."""
    from tagger.tagging.calibration import fit

    tagger = Tagger.load(model)
    if tag_column is None:
        tag_column = trained_tag_column(tagger)
    sentences = read_sentences(dev_ref, format, tag_column, split="validation")
    dev_scheme = check_tags(sentences, dev_ref, scheme)
    check_model_fits(tagger.vocab.source_scheme, dev_scheme, dev_ref)
    result = fit(tagger, [s for s in sentences if len(s.tokens)], dev_scheme)
    store.update_config(model, {"temperature": result["temperature"]})
    return result
