"""Streaming prediction: input files in chunks -> tagged -> rendered by a writer -> written in input order.

Memory does not grow with the input: CHUNK_LINES lines (or sentences) are tagged together, and with
`workers` > 1 forked processes render at most 2 x workers chunks at a time. Workers share the parent's
loaded model pages (fork, copy on write); the model reaches them through the pool's initializer, so no
module state outlives `predict_files` in the calling process.
"""
from __future__ import annotations

import itertools
import os
import signal
import sys
from collections import deque
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence, TextIO

from corpora.conll import Sentence, decode_lines, file_lines, iter_conll_lines, looks_like_conll, read_conll
from tagger.data import check_feature_columns, feature_columns
from tagger.tagging import live, pipeline
from tagger.tagging.confidence import ScoreOptions
from tagger.tagging.tagger import Tagger
from tagger.tagging.writers import Writer

CHUNK_LINES = 4096  # input lines tagged together
SNIFF_LINES = 20  # lines read to tell a CoNLL file from raw text
PARALLEL_BYTES = 1 << 20  # workers=0 (auto) uses every core for inputs this large


def predict_files(tagger: Tagger, inputs: Sequence[str], writer: Writer, out: TextIO, input_format: str = "text",
                  format: str = "auto", workers: int = 1, warn: Callable[[str], None] = lambda _: None,
                  options: ScoreOptions = ScoreOptions(), batch_size: int = pipeline.BATCH_SIZE,
                  progress: Callable[[int, int], None] = lambda units, tokens: None) -> None:
    """Tag each input ("-": standard input, plain or gzipped) and write what `writer` renders to `out`, in
    input order.

    input_format: text (a raw-text line is one record), tokens (a line of space-separated tokens is one
    sentence) or conll (column files; `format` is their dialect). `warn` gets one-line warnings, such as a
    CoNLL file given as raw text. The caller has checked that the inputs exist (commands.predict). `options`: the scores, minimum score and n-best to add; `batch_size`:
    sentences per engine call; `progress` gets each chunk's units (lines or sentences) and tokens once it is
    written."""
    out.write(writer.header())
    job = (tagger, writer, input_format, options, batch_size)
    for ref in inputs:
        if input_format != "conll" and ref == "-" and live.is_live(sys.stdin):  # a pipe: results as lines come
            chunks = _live_chunks(input_format, warn)
        elif input_format == "conll":
            chunks = _chunks(conll_sentences(ref, format), CHUNK_LINES)
        else:
            lines = read_lines(ref)
            if input_format == "text":
                lines = _warn_if_conll(lines, ref, warn)
            chunks = _chunks(lines, CHUNK_LINES)
        for done in _map_ordered(chunks, workers, job):
            if done is None:  # live input is waiting for more: what came so far goes out now
                out.flush()
            else:
                out.write(done.text)
                progress(done.units, done.tokens)
    out.write(writer.footer())


def auto_workers(inputs: Sequence[str]) -> int:
    """One process per usable core when the input files hold PARALLEL_BYTES or more (a pool costs a fork
    and a little memory per process: not worth it for a few sentences, nor knowable for standard input)."""
    size = sum(os.path.getsize(ref) for ref in inputs if ref != "-")
    return max(1, len(os.sched_getaffinity(0))) if size >= PARALLEL_BYTES else 1


class Rendered(NamedTuple):
    """A chunk as the writer rendered it, with its units (lines or sentences) and tokens."""

    text: str
    units: int
    tokens: int


def render(tagger: Tagger, writer: Writer, input_format: str, options: ScoreOptions, batch_size: int,
           chunk: list) -> str:
    """Tag (and, as `options` asks, score) one chunk of raw-text lines, token lines or CoNLL sentences and
    render it with the writer."""
    return render_counted(tagger, writer, input_format, options, batch_size, chunk).text


def render_counted(tagger: Tagger, writer: Writer, input_format: str, options: ScoreOptions, batch_size: int,
                   chunk: list) -> Rendered:
    """render, with the chunk's units and tokens counted (what a progress display shows)."""
    if input_format == "text":
        tagged = list(pipeline.tag_texts(tagger, chunk, options, batch_size))
        return Rendered("".join(map(writer.text, tagged)), len(chunk), sum(len(t.tokens) for t in tagged))
    if input_format == "tokens":
        sentences = [Sentence(tuple(line.split())) for line in chunk]
        feats: Sequence = ()
    else:
        sentences, columns = chunk, tagger.config.features
        if columns:
            check_feature_columns(chunk, columns, "input")
        feats = [feature_columns(s, columns) for s in chunk] if columns else ()
    tokens = sum(len(s.tokens) for s in sentences)
    if options.active:
        scored = pipeline.scored_tokens(tagger, [s.tokens for s in sentences], feats, options, batch_size)
        return Rendered("".join(writer.sentence(s, tags, scores) for s, (tags, scores) in zip(sentences, scored)),
                        len(sentences), tokens)
    tags = tagger.predict_tokens([s.tokens for s in sentences], feats, batch_size)
    return Rendered("".join(writer.sentence(s, t) for s, t in zip(sentences, tags)), len(sentences), tokens)


def read_lines(ref: str) -> Iterator[str]:
    """Lines of a file (plain or gzipped) or standard input ("-") without their line ends; decoding errors
    name the line."""
    lines = decode_lines(sys.stdin.buffer, "<stdin>") if ref == "-" else file_lines(ref)
    yield from (line.rstrip("\r\n") for line in lines)


def _warn_if_conll(lines: Iterator[str], ref: str, warn: Callable[[str], None]) -> Iterator[str]:
    """Pass lines through; warn once if the first ones look like CoNLL columns (-DOCSTART-, or a token and
    a tag on each line) rather than raw text."""
    head = list(itertools.islice(lines, SNIFF_LINES))
    if looks_like_conll(head):
        warn(f"warning: {'<stdin>' if ref == '-' else ref}: this looks like a CoNLL file, tagged as raw text "
             "(one record a line): use --input-format conll to tag its tokens")
    yield from head
    yield from lines




def _live_chunks(input_format: str, warn: Callable[[str], None]) -> Iterator[list[str] | None]:
    """Standard input's lines in bursts as they arrive (tagger/tagging/live.py), None before each wait; raw
    text that looks like CoNLL is warned about from the first burst (waiting for 20 lines would hold it)."""
    first = True
    for burst in live.line_bursts(sys.stdin.fileno(), CHUNK_LINES):
        if burst and first and input_format == "text":
            burst = list(_warn_if_conll(iter(burst), "-", warn))
        first = first and not burst
        yield burst


def conll_sentences(ref: str, format: str) -> Iterator[Sentence]:
    """The sentences of a CoNLL file or standard input ("-"), streamed; their tags, if any, are not read."""
    if ref == "-":
        return iter_conll_lines(decode_lines(sys.stdin.buffer, "<stdin>"), "<stdin>", format=format, labelled=False)
    return read_conll(ref, format=format, labelled=False)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


_JOB: tuple | None = None  # (tagger, writer, input_format, options, batch_size) in a --workers process, set by its initializer


def _set_job(job: tuple) -> None:
    """A worker's initializer: its job, and SIGTERM's default action back. A forked worker inherits its
    parent's signal handlers (ray.init installs one that raises SystemExit, which can leave a worker holding
    the task queue's lock); with the default action the pool's terminate() always ends it."""
    global _JOB
    _JOB = job
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _render_in_worker(chunk: list) -> Rendered:
    return render_counted(*_JOB, chunk)  # type: ignore[misc]


def _map_ordered(chunks: Iterable[list | None], workers: int, job: tuple) -> Iterator[Rendered | None]:
    """Each chunk rendered, in input order; with workers > 1 in forked processes (which get `job` from their
    initializer, not pickled per chunk), at most 2 x workers chunks in flight. A None chunk (live input about
    to wait) comes out as None once every chunk before it has."""
    if workers <= 1:
        yield from (None if chunk is None else render_counted(*job, chunk) for chunk in chunks)
        return
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers, initializer=_set_job, initargs=(job,)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            if chunk is None:
                while pending:
                    yield pending.popleft().get()
                yield None
                continue
            pending.append(pool.apply_async(_render_in_worker, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
