"""Milliseconds a training step spends computing, waiting and communicating: one process, two ranks with
per-step DDP (sync = "step"), two ranks with periodic averaging (sync = "average"); gloo on localhost.

    python bench/ddp_phases.py --steps 150 --sentences 4000 --period 8 [--output phases.json]

The recipe (configs/conll2003.toml) without pretrained vectors, on the first SENTENCES sentences of CoNLL-2003
train (0: all). After 10 warm-up steps, STEPS length-grouped batches of 64 sentences are timed on rank 0:
- one process: every step is compute (forward, backward, clipping, optimizer step, weight average);
- two ranks: first a pass where each rank trains on its slices and never communicates (both at once, so
  sharing the cores and memory is in it): its ms a step are the compute. Then each mode on the same batches,
  with a barrier just before backward where DDP's and RowSync's per-step all-reduces run (step; average
  only in its warm-up: after it RowSync counts the rows read and sends nothing), and in average before each
  meeting (the averaging, the word rows weighed by their readers, then the loop's loss/stop all-reduce): the
  barriers' time is waiting (for the other rank, plus one barrier's latency), the rest
  of the step beyond the compute is communicating.
Environment: BUCKET sets distributed.BUCKET_MB, ROWS=0 sends the word embedding dense (wrap(by_rows=False)).
Prints (and writes to --output) one JSON object. Run it alone: both ranks need a core each.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from tagger.config import Config, load_toml
from tagger.data import read_sentences
from tagger.encode import collate, length_batches
from tagger.training import distributed, setup
from tagger.training.distributed import World

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 10
distributed.BUCKET_MB = float(os.environ.get("BUCKET", distributed.BUCKET_MB))  # read again in spawned ranks
ROWS = os.environ.get("ROWS", "1") == "1"


def build(args, sync: str, world: World):
    """The recipe's network, data, wrapped module, optimizer, weight average and batches, seeded alike."""
    torch.manual_seed(1)
    config = Config.from_dict({**load_toml(ROOT / "configs/conll2003.toml"), "sync_period": args.period,
                               "sync": "step" if sync == "local" else sync, "sync_warmup": 0})
    train = [s for s in read_sentences(str(Path(args.data) / "train.txt")) if s.tokens]
    train = train[:args.sentences] if args.sentences else train
    trainable, _ = setup.build_trainable(config, train, "iob1")
    data = setup.prepare_data(trainable, train, [], None)
    model = distributed.wrap(trainable.model, world if sync != "local" else World(), by_rows=ROWS)  # local: no DDP
    optimizer = setup.make_optimizer(trainable.config, trainable.model)
    average = setup.WeightAverage(trainable.model, config.average) if world.leader else None
    generator = torch.Generator().manual_seed(1)
    batches = length_batches([len(e) for e in data.train], config.batch_size,
                             lambda n: torch.randperm(n, generator=generator).tolist())
    return config, data, model, optimizer, average, batches[:args.steps + WARMUP]


def timed(args, sync: str, world: World) -> dict:
    """ms a step on this rank: total and waiting (time in the barriers before a step's collectives)."""
    config, data, model, optimizer, average, batches = build(args, sync, world)
    local = world.sync.local if sync == "average" else None
    total = waiting = 0.0
    for k, ids in enumerate(batches):
        start = time.perf_counter()
        mine = world.shard(ids)
        loss = model(collate([data.train[i] for i in mine or ids[:1]]))
        optimizer.zero_grad(set_to_none=True)
        barrier = 0.0
        if sync == "step" or (local is not None and local.warming_up()):  # all-reduces run in backward
            barrier += wait()
        (loss * (world.size / len(ids) if mine else 0.0)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        if average is not None:
            average.update(k)
        if local is not None and local.due():  # a meeting: the averaging, then the loss and stop
            barrier += wait()
        if sync != "local":
            world.reduce_step(loss.item(), False)  # apart (average, between meetings): counts the step only
        if k >= WARMUP:
            total, waiting = total + time.perf_counter() - start, waiting + barrier
    steps = len(batches) - WARMUP
    return {"ms_per_step": 1000 * total / steps, "waiting": 1000 * waiting / steps}


def wait() -> float:
    start = time.perf_counter()
    dist.barrier()
    return time.perf_counter() - start


def ranks(args, out: str, world: World) -> None:
    """Each mode on both ranks; rank 0 writes compute / waiting / communicating to `out`."""
    torch.set_num_threads(1)
    result = {}
    compute = timed(args, "local", world)["ms_per_step"]
    for sync in ("step", "average"):
        dist.barrier()
        t = timed(args, sync, world)
        result[sync] = {"ms_per_step": t["ms_per_step"], "compute": compute, "waiting": t["waiting"],
                        "communicating": max(0.0, t["ms_per_step"] - compute - t["waiting"])}
    if world.leader:
        Path(out).write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/conll2003"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--sentences", type=int, default=4000, help="the first N training sentences (0: all)")
    parser.add_argument("--period", type=int, default=Config().sync_period, help="sync_period for average")
    parser.add_argument("--output", default="")
    args = parser.parse_args()
    torch.set_num_threads(1)
    one = timed(args, "local", World())["ms_per_step"]
    out = Path("/tmp") / f"ddp_phases-{distributed.free_port()}.json"
    with distributed.spawned(2, ranks, (args, str(out))) as world:
        ranks(args, str(out), world)
    two = json.loads(out.read_text())
    out.unlink()
    result = {"steps": args.steps, "sentences": args.sentences, "period": args.period, "ms_per_step": {
        "1 process": {"ms_per_step": one, "compute": one, "waiting": 0.0, "communicating": 0.0},
        "2 ranks, sync = step": two["step"], f"2 ranks, sync = average (every {args.period} steps)": two["average"]}}
    result["ms_per_step"] = {k: {p: round(v, 2) for p, v in row.items()} for k, row in result["ms_per_step"].items()}
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
