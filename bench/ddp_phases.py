"""Milliseconds a training step spends in each phase, on one process and on two DDP ranks (gloo, localhost).

    BUCKET=0.25 ROWS=1 SOLO=1 python bench/ddp_phases.py 150 4000
    BUCKET=25 ROWS=0 python bench/ddp_phases.py 150 4000

The recipe (configs/conll2003.toml) without pretrained vectors, on the first SENTENCES sentences of CoNLL-2003
train (default 4000: the word table is smaller than the full corpus's). After 10 warm-up steps, STEPS steps
(default 150) of length-grouped batches of 64 sentences are timed by phase: collate, forward, backward (which
includes DDP's all-reduce and RowSync's), gradient clipping, optimizer step, weight average (rank 0), and the
loop's loss/stop all-reduce (World.reduce_step). Environment: BUCKET sets distributed.BUCKET_MB, ROWS=0 sends
the word embedding dense (wrap(by_rows=False)), SOLO=1 also times one process first. Prints one JSON line per
rank. Run it alone (flock /tmp/cpu.lock): both ranks need a core each.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from tagger.config import Config, load_toml
from tagger.data import read_sentences
from tagger.encode import collate, length_batches
from tagger.training import distributed, setup
from tagger.training.distributed import World

ROOT = Path(__file__).resolve().parent.parent

distributed.BUCKET_MB = float(os.environ.get("BUCKET", distributed.BUCKET_MB))  # read again in spawned ranks
ROWS = os.environ.get("ROWS", "1") == "1"
DATA = Path(os.environ.get("TAGGER_DATA", ROOT.parent / "shared/data")) / "conll2003/train.txt"
PHASES = ("collate", "forward", "backward", "clip", "step", "average", "reduce")


def run(steps: int, sentences: int, world: World | None = None) -> None:
    world = world or World()
    torch.set_num_threads(1)
    config = Config.from_dict(load_toml(ROOT / "configs/conll2003.toml"))
    train = [s for s in read_sentences(str(DATA)) if s.tokens][:sentences]
    tagger, _ = setup.build_tagger(config, train, "iob1")
    data = setup.prepare_data(tagger, train, [], None)
    model = distributed.wrap(tagger.model, world, by_rows=ROWS)
    optimizer = setup.make_optimizer(tagger.config, tagger.model)
    average = setup.WeightAverage(tagger.model, config.average) if world.leader else None
    generator = torch.Generator().manual_seed(1)
    batches = length_batches([len(e) for e in data.train], config.batch_size,
                             lambda n: torch.randperm(n, generator=generator).tolist())
    tagger.model.train()
    totals, start = dict.fromkeys(PHASES, 0.0), 0.0
    for k, ids in enumerate(batches[:steps + 10]):
        if k == 10:  # warm-up over
            totals, start = dict.fromkeys(PHASES, 0.0), time.perf_counter()
        marks = [time.perf_counter()]
        mine = world.shard(ids)
        batch = collate([data.train[i] for i in mine or ids[:1]])
        marks.append(time.perf_counter())
        loss = model(batch)
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        (loss * (world.size / len(ids) if mine else 0.0)).backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        if average is not None:
            average.update(k)
        marks.append(time.perf_counter())
        world.reduce_step(loss.item(), False)
        marks.append(time.perf_counter())
        for phase, a, b in zip(PHASES, marks, marks[1:]):
            totals[phase] += b - a
    ms = 1000 * (time.perf_counter() - start) / steps
    print(json.dumps({"bucket_mb": distributed.BUCKET_MB, "rows": ROWS, "rank": world.rank, "size": world.size,
                      "ms_per_step": round(ms, 2), **{k: round(1000 * v / steps, 2) for k, v in totals.items()}}),
          flush=True)


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    sentences = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
    if os.environ.get("SOLO"):
        run(steps, sentences)
    with distributed.spawned(2, run, (steps, sentences)) as world:
        run(steps, sentences, world)


if __name__ == "__main__":
    main()
