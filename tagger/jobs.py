"""What each `tagger` command does, from paths and options to results: the CLI parses and prints around these."""
from __future__ import annotations

import gc
import io
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

from corpora import schemes
from corpora.conll import Sentence, format_sentence, iter_conll_lines, read_conll
from tagger.config import Config, load_toml
from tagger.data import check_model_fits, check_tags, read_sentences, unseen_labels
from tagger.api import feature_columns
from tagger.errors import ConfigError, InputError
from tagger.store import FILES

# named feature columns of CoNLL-2003 files (token POS chunk NER)
FEATURE_NAMES = {"pos": 1, "chunk": 2}
CHUNK_LINES = 4096  # input lines tagged together when streaming predictions
PARALLEL_BYTES = 1 << 20  # --workers 0 (auto) uses every core for inputs this large


def make_config(config_file: Path | None, overrides: dict, features: str | None) -> Config:
    values = load_toml(config_file) if config_file else {}
    values |= overrides
    if features:
        values["features"] = parse_features(features)
    return Config.from_dict(values, source=str(config_file or "options"))


def parse_features(spec: str) -> list[int]:
    """'1,2' or 'pos,chunk' -> column indices."""
    columns = []
    for part in (p.strip().lower() for p in spec.split(",") if p.strip()):
        if part.isdigit():
            columns.append(int(part))
        elif part in FEATURE_NAMES:
            columns.append(FEATURE_NAMES[part])
        else:
            raise ConfigError(f"--features: {part!r} is neither a column index nor one of "
                              f"{', '.join(FEATURE_NAMES)}")
    return columns


def check_output_dir(output: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite a model unless --force, and --resume where there is no checkpoint. Changes
    nothing: `prepare_output_dir` does, once every input has been read, so a failed start leaves no trace."""
    if output.exists() and not output.is_dir():
        raise InputError("exists and is not a directory", path=str(output))
    if resume:
        if not any((output / name / "trainer.json").is_file() for name in ("checkpoint", "checkpoint.old")):
            raise InputError("nothing to resume: no checkpoint here (train without --resume)", path=str(output))
        return
    if output.is_dir() and any(output.iterdir()) and not force:
        raise InputError("already exists and is not empty: use --force to overwrite it or --resume to continue "
                         "its training", path=str(output))


def prepare_output_dir(output: Path, resume: bool) -> None:
    """Create `output`; without --resume, clear the old model, metrics and checkpoints (checked: --force)."""
    if not resume:
        for name in (*FILES, "metrics.jsonl"):
            (output / name).unlink(missing_ok=True)
        for name in ("checkpoint", "checkpoint.new", "checkpoint.old"):
            shutil.rmtree(output / name, ignore_errors=True)
    output.mkdir(parents=True, exist_ok=True)


def record_training(output: Path, train_ref: str, dev_ref: str, embeddings: Path | None) -> None:
    """Add what the model was trained on, and when, to its config.json (`tagger info` shows it)."""
    from datetime import datetime, timezone

    from tagger.store import atomic_write

    path = output / "config.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["training"] = {"train": str(train_ref), "dev": str(dev_ref),
                        "embeddings": Path(embeddings).name if embeddings else None,
                        "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write(path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def check_feature_columns(sentences: Sequence[Sentence], columns: Sequence[int], source: str) -> None:
    for s in sentences:
        width = len(s.rows[0]) if s.rows else 1
        for c in columns:
            if not -width <= c < width:
                raise InputError(f"feature column {c} does not exist (lines have {width} columns)",
                                 path=source, line=s.line or None)


def train(train_ref: str, dev_ref: str, output: Path, test: str | None = None, embeddings: Path | None = None,
          format: str = "auto", tag_column: int | None = None, scheme: str = "auto",
          config_file: Path | None = None, overrides: dict | None = None, features: str | None = None,
          resume: bool = False, force: bool = False, reporter=None) -> dict:
    from tagger import train as training
    from tagger.api import Tagger
    from tagger.embeddings import check_vectors_file, load_vectors

    reporter = reporter or training.Silent()
    config = make_config(config_file, overrides or {}, features)
    check_output_dir(output, resume, force)
    if embeddings is not None and not resume:
        check_vectors_file(embeddings)  # before the corpus is read: a typo should not cost that wait
    train_sents = read_sentences(train_ref, format, tag_column, split="train")
    dev_sents = read_sentences(dev_ref, format, tag_column, split="validation")
    check_feature_columns([*train_sents, *dev_sents], config.features, train_ref)
    source = check_tags(train_sents, train_ref, scheme, warn=reporter.message)
    dev_scheme = check_tags(dev_sents, dev_ref, scheme, warn=reporter.message)
    missing = unseen_labels(dev_sents, {t for s in train_sents for t in s.tags})
    if missing:
        reporter.message(f"warning: {dev_ref}: label(s) {', '.join(missing)} never seen in training: kept, and "
                         "scored as entities the model misses")
    reporter.message(f"{len(train_sents):,} training sentences ({sum(len(s.tokens) for s in train_sents):,} "
                     f"tokens), {len(dev_sents):,} dev; scheme {source or 'none (plain tags)'}")
    vectors = None
    if embeddings is not None and not resume:
        vectors = load_vectors(embeddings)
    created = not output.exists()
    prepare_output_dir(output, resume)
    try:
        progress = training.train(config, train_sents, dev_sents, output, source, dev_scheme, vectors, resume,
                                  reporter)
    except BaseException:
        if created and not any(output.iterdir()):  # failed before writing anything: leave no empty directory
            output.rmdir()
        raise
    record_training(output, train_ref, dev_ref, embeddings)
    result = {"best_dev_f1": progress.best_f1, "best_epoch": progress.best_epoch,
              "epochs": progress.epoch, "minutes": progress.seconds / 60}
    if test:
        result["test"] = evaluate(output, test, format, tag_column, scheme)
    return result


def evaluate(model: Path, test_ref: str, format: str = "auto", tag_column: int | None = None,
             scheme: str = "auto") -> dict:
    from tagger.api import Tagger

    tagger = Tagger.load(model, "numpy")  # the same tags as torch's engine (tested), without importing torch
    sentences = read_sentences(test_ref, format, tag_column, split="test")
    test_scheme = check_tags(sentences, test_ref, scheme)
    check_model_fits(tagger.vocab.source_scheme, test_scheme, test_ref)
    result = tagger.evaluate(sentences, test_scheme)
    missing = unseen_labels(sentences, tagger.vocab.tags.items)
    if missing:
        result["unseen_labels"] = missing
        print(f"warning: {test_ref}: label(s) {', '.join(missing)} never seen in training: scored as missed",
              file=sys.stderr)
    return result


def convert(input: Path, output: Path, to: str, source: str = "auto", format: str = "auto",
            tag_column: int | None = None, force: bool = False) -> int:
    check_output_file(output, force)
    sentences = list(read_conll(input, format=format, tag_column=tag_column))
    src = check_tags(sentences, str(input), source)
    if src is None:
        raise InputError("tags have no B-/I-/E-/S- prefixes: there is no scheme to convert", path=str(input))
    dst = schemes.normalize_scheme(to)
    with atomic_text(output) as out:
        for s in sentences:
            out.write(format_sentence(s, schemes.convert(s.tags, src, dst), _write_format(format, s)))
    return len(sentences)


def _write_format(format: str, sentence: Sentence) -> str:
    return "conll2003" if sentence.rows and len(sentence.rows[0]) > 2 else "columns"


def check_output_file(path: Path | None, force: bool) -> None:
    if path is None:
        return
    if path.is_dir():
        raise InputError("is a directory", path=str(path))
    if path.exists() and not force:
        raise InputError("already exists: use --force to overwrite it", path=str(path))


@contextmanager
def atomic_text(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or a temporary file renamed over `path` once everything is written."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- prediction: streamed, in chunks, order kept ----------------------------------------------------------

def predict(model: Path, inputs: Sequence[str], input_format: str = "text", output_format: str = "jsonl",
            output: Path | None = None, format: str = "auto", batch_size: int = 256, force: bool = False,
            workers: int = 0, quantize: bool = False, engine: str = "auto") -> None:
    """Tag INPUTs as they stream in: chunks of lines (or sentences) in, their rendered output out, in order.

    workers: processes tagging chunks in parallel; 0 picks one per core for large inputs, 1 otherwise.
    engine: torch or numpy (Tagger.load); auto is numpy unless quantising: it never imports torch (most of
    a cold start) and its workers are lighter. With OPENBLAS_NUM_THREADS=1, as the `tagger` command sets,
    its tokens/s equal torch's on one core and beat them with workers (see the README)."""
    check_output_file(output, force)
    if input_format == "text" and output_format == "conll":
        raise InputError("raw text cannot be written as CoNLL: use --input-format tokens or conll")
    for ref in inputs:
        if ref != "-":
            _check_input_file(ref)
    workers = workers or auto_workers(inputs)
    if engine == "auto":
        engine = "torch" if quantize else "numpy"
    _init_worker(model, batch_size, quantize, threads=0 if workers <= 1 else 1, engine=engine)
    # The objects there are now (modules, model, vocabulary) live to the end: frozen, the collector stops
    # walking them every few thousand allocations (tokenising got 1.8x faster with torch's objects loaded),
    # and never writes to them, so forked workers keep sharing their pages.
    gc.freeze()
    try:
        with atomic_text(output) as out:
            for ref in inputs:
                if input_format == "conll":
                    chunks = _chunks(_conll_sentences(ref, format), CHUNK_LINES)
                else:
                    chunks = _chunks(_lines(ref), CHUNK_LINES)
                job = (input_format, output_format, format)
                for text in _map_ordered(_render, ((job, chunk) for chunk in chunks), workers):
                    out.write(text)
    finally:
        gc.unfreeze()  # a long-running caller's objects become collectable again


_TAGGER = None  # the model of this process (the main one, or a --workers process)


def auto_workers(inputs: Sequence[str]) -> int:
    """One process per usable core when the input files hold PARALLEL_BYTES or more (a pool costs a fork
    and a little memory per process: not worth it for a few sentences, nor knowable for standard input)."""
    size = sum(os.path.getsize(ref) for ref in inputs if ref != "-")
    return max(1, len(os.sched_getaffinity(0))) if size >= PARALLEL_BYTES else 1


def _init_worker(model: Path, batch_size: int, quantize: bool, threads: int, engine: str) -> None:
    from tagger.api import Tagger

    global _TAGGER
    if threads and engine == "torch":
        import torch

        torch.set_num_threads(threads)
    _TAGGER = Tagger.load(model, engine)
    _TAGGER.batch_size = batch_size
    if quantize:
        _TAGGER.quantize()


def _map_ordered(fn, items: Iterable, workers: int) -> Iterator:
    """fn over items, results in input order; with workers > 1, in forked processes, at most
    2 x workers items in flight so memory does not grow with the input."""
    if workers <= 1:
        yield from map(fn, items)
        return
    import multiprocessing as mp
    from collections import deque

    with mp.get_context("fork").Pool(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _render(job_chunk) -> str:
    """Tag one chunk and render it as JSONL or CoNLL text."""
    (input_format, output_format, format), chunk = job_chunk
    tagger = _TAGGER
    lines: list[str] = []
    if input_format == "text":
        for text, entities in zip(chunk, tagger.predict_texts(chunk)):
            lines.append(_jsonl({"text": text, "entities": entities}))
        return "".join(lines)
    if input_format == "tokens":
        sentences = [Sentence(tuple(line.split())) for line in chunk]
        feats = ()
    else:
        sentences = chunk
        columns = tagger.config.features
        if columns:
            check_feature_columns(chunk, columns, "input")
        feats = [feature_columns(s, columns) for s in chunk] if columns else ()
    for s, tags in zip(sentences, tagger.predict_tokens([s.tokens for s in sentences], feats)):
        if output_format == "conll":
            lines.append(format_sentence(s, tags, _write_format(format, s)) if s.tokens else "")
        else:
            lines.append(_jsonl({"tokens": list(s.tokens), "tags": tags}))
    return "".join(lines)


_JSON = json.JSONEncoder(ensure_ascii=False)
_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


def _jsonl(record: dict) -> str:
    """One JSON line, UTF-8 kept readable, but U+0085/U+2028/U+2029 escaped: `str.splitlines()` breaks on them."""
    return _LINE_BREAKS.sub(lambda m: f"\\u{ord(m.group()):04x}", _JSON.encode(record)) + "\n"


def _conll_sentences(ref: str, format: str) -> Iterator[Sentence]:
    if ref == "-":
        stream = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
        return iter_conll_lines(stream, "<stdin>", format=format, labelled=False)
    return read_conll(ref, format=format, labelled=False)


def _check_input_file(ref: str) -> None:
    path = Path(ref)
    if not path.exists():
        raise InputError("no such file", path=ref)
    if path.is_dir():
        raise InputError("is a directory, not a file", path=ref)


def _lines(ref: str) -> Iterator[str]:
    """Lines without their line ends; invalid UTF-8 and NUL bytes are reported with their line."""
    stream = sys.stdin.buffer if ref == "-" else open(ref, "rb")
    name = "<stdin>" if ref == "-" else ref
    try:
        for number, raw in enumerate(stream, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if b"\x00" in raw:
                raise InputError("NUL byte: this looks like a binary file, not text", path=name, line=number)
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise InputError("invalid UTF-8", path=name, line=number) from None
    finally:
        if ref != "-":
            stream.close()


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
