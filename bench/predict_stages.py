"""Where one core's prediction time goes: raw text -> JSONL, stage by stage, on one thread.

    python bench/predict_stages.py --model runs/bench-conll2003/seed1 --copies 4 [--engine numpy]

Runs the steps of `pipeline.tag_texts` (tagger/tagging/pipeline.py) and the JSONL writer one after another over the CoNLL-2003 test
sentences as raw text (`--copies` times), in chunks as `tagger predict` does, and prints seconds and share
per stage. It mirrors tag_texts rather than calling it, so that each stage can be timed on its own.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["OPENBLAS_NUM_THREADS"] = "1"  # numpy's matrix products on one thread, as Tagger limits them


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models/conll2003")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/conll2003")
    p.add_argument("--copies", type=int, default=4)
    args = p.parse_args()

    from corpora.conll import read_conll
    from tagger.tagging import pipeline, streaming
    from tagger.text import sentence_ends
    from tagger.api import Tagger
    from tagger.tagging.writers import jsonl
    from tagger.encode import collate, sorted_batches
    from tagger.tagging.viterbi import viterbi

    lines = [" ".join(s.tokens) for s in read_conll(args.data / "test.txt")] * args.copies
    tagger = Tagger.load(args.model)
    model, names = tagger.engine, tagger.vocab.tags.items
    tagger.predict(lines[:300])  # warm up: tokeniser pattern, encoder cache
    seconds: dict[str, float] = {}
    tokens = 0

    def timed(stage: str, fn):
        start = time.perf_counter()
        result = fn()
        seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start
        return result

    for chunk in streaming._chunks(lines, streaming.CHUNK_LINES):
        scanned = timed("tokenise + split sentences", lambda: [sentence_ends(text, "words" if tagger.config.tokenizer == "auto" else tagger.config.tokenizer) for text in chunk])
        words = [tok.texts[a:b] for tok, ends in scanned for a, b in pairwise([0, *ends])]
        tokens += sum(map(len, words))
        encoded = timed("encode", lambda: [tagger.encode(w) for w in words])
        batches = timed("batch", lambda: [(ids, collate([encoded[i] for i in ids]))
                                          for ids in sorted_batches(list(map(len, encoded)), pipeline.BATCH_SIZE)])
        scores = timed("network", lambda: [model.emissions(b) for _, b in batches])
        paths = timed("viterbi", lambda: [viterbi(s, b.mask, *model.crf) for s, (_, b) in zip(scores, batches)])

        def tag_names() -> list:
            out: list = [None] * len(encoded)
            for (ids, _), batch_paths in zip(batches, paths):
                for i, path in zip(ids, batch_paths):
                    out[i] = list(map(names.__getitem__, path))
            return out

        tags = iter(timed("tag names", tag_names))

        def render() -> None:
            for text, (tok, ends) in zip(chunk, scanned):
                entities = []
                for a, b in pairwise([0, *ends]):
                    entities += pipeline._spans(tagger, text, tok, a, next(tags))
                jsonl({"text": text, "entities": entities})

        timed("spans + JSON", render)
    total = sum(seconds.values())
    for stage, s in seconds.items():
        print(f"{stage:28s} {s:6.2f} s {100 * s / total:5.1f}%")
    print(f"{'total':28s} {total:6.2f} s  {tokens / total:,.0f} tokens/s ({tokens:,} tokens, one thread)")


if __name__ == "__main__":
    main()
