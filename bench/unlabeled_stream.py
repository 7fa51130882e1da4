"""The stream of unlabelled batches that `tagger train --unlabeled` learns from (tagger/training/unlabeled.py),
alone: read, tokenise, encode, group by length and shuffle a buffer at a time (issue 36, section 3).

    python bench/unlabeled_stream.py                      # one pass over the Wikipedia sample (run it alone)
    python bench/unlabeled_stream.py --max-sentences 20000  # a quick check that it runs

The vocabulary is CoNLL-2003 train's (as a model trained on it would encode), the config the library's
defaults (batch 64). Prints one JSON object: sentences and batches handed out, seconds, sentences/s, the
lines the files have and the lines decoded (a whole pass: the files' lines once, and the second pass's first
buffer, read when the first pass ends; each buffer once read its file again from line 0), the peak RSS. Also
written to --out.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from corpora.conll import read_conll  # noqa: E402
from tagger import rawtext  # noqa: E402
from tagger.config import Config  # noqa: E402
from tagger.encode import Encoder  # noqa: E402
from tagger.training import unlabeled  # noqa: E402
from tagger.vocab import build_vocab  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", nargs="+", default=[str(SHARED / "data/raw-en/wikipedia-en-2015-sample.txt.gz")])
    parser.add_argument("--train", default=str(SHARED / "data/conll2003/train.txt"))
    parser.add_argument("--max-sentences", type=int, default=0, help="stop after this many (0: one whole pass)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    train = list(read_conll(args.train))
    vocab = build_vocab((s.tokens for s in train), (s.tags for s in train))
    config = Config().resolved()
    decoded = 0
    real = rawtext.decode_lines

    def counting(stream, name, first=1):
        nonlocal decoded
        for text in real(stream, name, first):
            decoded += 1
            yield text

    rawtext.decode_lines = counting
    start = time.perf_counter()
    stream = unlabeled.Stream(args.text, Encoder(vocab), "words", config.batch_size, config.seed)
    sentences = batches = 0
    while stream.position[0] == 0 and not (args.max_sentences and sentences >= args.max_sentences):
        sentences += len(stream.next_batch())
        batches += 1
    seconds = time.perf_counter() - start
    rawtext.decode_lines = real
    lines = sum(1 for path in args.text for _ in rawtext.read_lines(path)) if not args.max_sentences else None
    result = {"text": [Path(p).name for p in args.text], "sentences": sentences, "batches": batches,
              "seconds": round(seconds, 2), "sentences_per_s": round(sentences / seconds),
              "file_lines": lines, "decoded_lines": decoded, "whole_pass": not args.max_sentences,
              "batch_size": config.batch_size, "buffer_batches": unlabeled.BUFFER_BATCHES,
              "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
