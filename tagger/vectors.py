"""`tagger vectors`: word vectors trained on a user's raw text, for a domain without public vectors.

The text (plain or gzipped files, one paragraph or document a line) is cut into sentences and tokens by
tagger/text.py, the tokeniser `tagger predict` uses, so the vectors' words are the tokens the tagger looks
up (`Germany 's`, `do n't`, `U.S.`). Words are lower-cased by default: `Vocab.word_id` tries a word's exact
form and then its lower-cased one, so lower-cased vectors serve every casing (as GloVe's do), while the
casing feature gives the tagger the case back.

gensim trains them: Word2Vec skip-gram, or FastText (skip-gram with character n-grams) with `subword`, whose
vectors of rare words borrow from their n-grams. The file holds one vector per word (the word2vec text
format: a `count dim` header, then `word v1 ... vdim` rows, most frequent first, gzipped when the name ends
in .gz); `tagger train --embeddings` reads it (tagger/embeddings.py).

The input is read once and tokenised into a temporary file of one sentence a line (in the temporary
directory, $TMPDIR): the vocabulary scan and every epoch then stream that file instead of tokenising the
text again. Nothing is held in memory but gensim's model. gensim is an optional extra
(`pip install 'bilstm-tagger[vectors]'`), imported where used.
"""
from __future__ import annotations

import gzip
import os
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from tagger.errors import ConfigError, InputError
from tagger.paths import check_output_file
from tagger.rawtext import check_inputs, refuse_conll, tokenised_sentences
from tagger.store import atomic_file
from tagger.text import TOKENIZERS

INSTALL_HINT = "pip install 'bilstm-tagger[vectors]'"
PROGRESS_EVERY = 2000  # sentences between two progress updates: a call per sentence would cost more than reading it


@dataclass(frozen=True)
class VectorOptions:
    """How the vectors are trained. `workers` 0: one per CPU core this process may use."""

    dim: int = 100
    subword: bool = False
    min_count: int = 5
    epochs: int = 5
    window: int = 5
    workers: int = 0
    seed: int = 1
    lowercase: bool = True
    tokenizer: str = "words"

    def check(self) -> None:
        """ConfigError for a value gensim would reject with a traceback, or silently misuse."""
        for name in ("dim", "min_count", "epochs", "window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 (one per core) or more, got {self.workers}")
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"unknown tokenizer {self.tokenizer!r}: expected one of {', '.join(TOKENIZERS)}")


class Reporter(Protocol):
    """What the CLI shows: a stage (reading the text, then each epoch) and the sentences done in it."""

    def stage(self, name: str, total: int | None) -> None: ...

    def advance(self, sentences: int) -> None: ...


class Silent:
    """A Reporter that shows nothing."""

    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, sentences: int) -> None:
        pass


class CachedCorpus:
    """A file of one tokenised sentence a line, tokens separated by a space (no token holds whitespace):
    gensim iterates it once to count words and once per epoch, and each pass is reported."""

    def __init__(self, path: Path, sentences: int, reporter: Reporter):
        self.path, self.sentences, self.reporter = path, sentences, reporter
        self.passes = 0

    def __iter__(self) -> Iterator[list[str]]:
        name = "counting words" if self.passes == 0 else f"epoch {self.passes}"
        self.passes += 1
        self.reporter.stage(name, self.sentences)
        done = 0
        with self.path.open(encoding="utf-8", newline="\n") as f:
            for done, line in enumerate(f, start=1):
                yield line[:-1].split(" ")
                if done % PROGRESS_EVERY == 0:
                    self.reporter.advance(PROGRESS_EVERY)
        self.reporter.advance(done % PROGRESS_EVERY)


def cache_corpus(paths: Sequence[str | Path], out: Path, options: VectorOptions, reporter: Reporter) -> int:
    """Tokenise the inputs into `out` (one sentence a line); the number of sentences written."""
    reporter.stage("reading text", None)
    count = 0
    with out.open("w", encoding="utf-8", newline="\n") as f:
        for count, words in enumerate(tokenised_sentences(paths, options.tokenizer, options.lowercase), start=1):
            f.write(" ".join(words))
            f.write("\n")
            if count % PROGRESS_EVERY == 0:
                reporter.advance(PROGRESS_EVERY)
    reporter.advance(count % PROGRESS_EVERY)
    return count


def stable_hash(text: str) -> int:
    """gensim seeds each word's initial vector with hashfxn(word + seed): CRC-32 instead of Python's salted
    str hash, so that one --seed with one worker gives the same vectors in every run."""
    return zlib.crc32(text.encode("utf-8"))


def _gensim_models():
    try:
        from gensim import models
    except ImportError:
        raise InputError(f"tagger vectors needs gensim: {INSTALL_HINT}") from None
    return models


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def train_vectors(paths: Sequence[str | Path], output: Path, options: VectorOptions = VectorOptions(),
                  force: bool = False, reporter: Reporter | None = None) -> dict:
    """Train word vectors on the raw text files `paths` and write them to `output` (atomically).

    Returns what was done: sentences, words (running tokens), vocabulary (words with a vector), dim, and the
    seconds spent reading and training, with the training speed in words/s (words x epochs / seconds)."""
    options.check()
    check_inputs(paths)
    refuse_conll(paths)
    check_output_file(output, force)
    models = _gensim_models()
    reporter = reporter or Silent()
    with tempfile.TemporaryDirectory(prefix="tagger-vectors-") as tmp:
        cache = Path(tmp) / "sentences.txt"
        started = time.perf_counter()
        sentences = cache_corpus(paths, cache, options, reporter)
        if sentences == 0:
            names = ", ".join(map(str, paths))
            raise InputError("no text found (every line is blank)", path=names)
        read_seconds = time.perf_counter() - started
        corpus = CachedCorpus(cache, sentences, reporter)
        model = _new_model(models, options)
        model.build_vocab(corpus_iterable=corpus)
        if not model.wv.index_to_key:
            raise InputError(f"no word occurs {options.min_count} times or more in {model.corpus_total_words:,} "
                             "words: give more text or a lower --min-count", path=str(paths[0]))
        started = time.perf_counter()
        model.train(corpus_iterable=corpus, total_examples=model.corpus_count, epochs=options.epochs)
        train_seconds = time.perf_counter() - started
    write_vectors(output, model.wv.index_to_key, model.wv.vectors)
    words = model.corpus_total_words
    return {"sentences": sentences, "words": words, "vocabulary": len(model.wv.index_to_key), "dim": options.dim,
            "read_seconds": read_seconds, "train_seconds": train_seconds,
            "words_per_s": words * options.epochs / max(train_seconds, 1e-9)}


def _new_model(models, options: VectorOptions):
    """An untrained gensim model: skip-gram (sg=1), the usual choice for vectors fed to a tagger."""
    common = dict(vector_size=options.dim, window=options.window, min_count=options.min_count,
                  epochs=options.epochs, seed=options.seed, sg=1, hashfxn=stable_hash,
                  workers=options.workers or default_workers())
    if options.subword:
        # 2 M n-gram buckets x dim floats is 800 MB at 100-d: a quarter of that holds a domain corpus's n-grams
        return models.FastText(bucket=500_000, **common)
    return models.Word2Vec(**common)


def write_vectors(output: Path, words: Sequence[str], vectors: np.ndarray) -> None:
    """The word2vec text format (`count dim`, then one `word v1 ... vdim` row each), gzipped when the name
    ends in .gz; it appears at `output` only once complete."""
    output = Path(output)
    count, dim = vectors.shape  # (num_words, dim)
    with atomic_file(output, text=False) as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if output.name.endswith(".gz") else None
        f = gz or raw
        f.write(f"{count} {dim}\n".encode())
        row = " ".join(["%.6g"] * dim)
        for start in range(0, count, 4096):
            block = vectors[start:start + 4096]
            f.write("".join(f"{w} {row % tuple(v)}\n" for w, v in zip(words[start:start + 4096], block.tolist()))
                    .encode("utf-8"))
        if gz is not None:
            gz.close()
