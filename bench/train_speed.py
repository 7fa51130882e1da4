"""Training throughput of the network alone (no dev evaluation) for a few settings, on CoNLL-2003 train.

    OMP_NUM_THREADS=1 python bench/train_speed.py --hidden 100 200 --batch 32 64 --threads 1 2

Prints one JSON line per setting: tokens/s over `--batches` training steps after a warm-up.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from tagger.config import Config
from tagger.data import check_tags, read_sentences
from tagger.encode import iter_batches
from tagger.training.loop import train_step
from tagger.training.setup import build_trainable, make_optimizer, prepare_data

ROOT = Path(__file__).resolve().parent.parent


def measure(config: Config, train, source_scheme, batches: int) -> float:
    trainable, _ = build_trainable(config, train, source_scheme)
    data = prepare_data(trainable, train, [], None)
    optimizer = make_optimizer(config, trainable.model)
    model = trainable.model.train()
    stream = iter_batches(data.train, config.batch_size,
                          lambda n, g=torch.Generator().manual_seed(0): torch.randperm(n, generator=g).tolist())
    tokens, seconds = 0, 0.0
    for k, (_, batch) in enumerate(itertools.islice(stream, batches + 20)):
        start = time.perf_counter()
        train_step(model, optimizer, batch, config.clip)
        if k >= 20:  # warm-up excluded
            seconds += time.perf_counter() - start
            tokens += int(batch.mask.sum())
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/conll2003"))
    parser.add_argument("--hidden", type=int, nargs="+", default=[200])
    parser.add_argument("--batch", type=int, nargs="+", default=[32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    train = read_sentences(f"{args.data}/train.txt")
    scheme = check_tags(train, "train")
    for hidden, batch, threads in itertools.product(args.hidden, args.batch, args.threads):
        torch.set_num_threads(threads)
        config = Config(hidden_size=hidden, batch_size=batch)
        n = max(args.batches * 32 // batch, 40)
        print(json.dumps({"hidden": hidden, "batch": batch, "threads": threads,
                          "tokens_per_s": round(measure(config, train, scheme, n))}), flush=True)


if __name__ == "__main__":
    main()
