"""Training throughput by processes and threads, quiet and beside a busy process; and the all-reduce cost model.

    python bench/train_scaling.py --data ../shared/data/conll2003 --config configs/conll2003.toml \
        --embeddings ../shared/embeddings/glove.6B.50d.txt.gz --epochs 1 --output bench/results-train-scaling.json
    python bench/train_scaling.py --setups 1x1 2x1-step 2x1 --epochs 4 --profile   # issue 38's table

"2x1" is `--processes 2` as it trains by default (sync = "average": the weights averaged every sync_period
steps, tagger/training/averaging.py); "2x1-step" is `--processes 2 --sync step` (DDP every step). With
--profile, bench/ddp_phases.py then times a step of each (compute, waiting, communicating) into the same JSON.

Each set-up runs `tagger train` in a subprocess for `--epochs` epochs: 1 process x 1 thread, 1 x 2 threads,
2 processes x 1 thread, then 2 x 1 and 1 x 2 again while a Python busy loop (`while True: pass`, one
process, one core) runs beside it. From metrics.jsonl: training tokens/s (dev scoring excluded) and dev F1
after the last epoch. Then the cost model: bytes all-reduced per step (every trainable gradient, float32),
the time of one all-reduce of that size between 2 processes on localhost (gloo), and the compute time of
one step (1 x 1's epoch seconds / steps); and the same with the word embedding averaged by the rows a
global batch reads (tagger/training/distributed.py's RowSync: the other gradients dense, a one-bit mask a
row, the union's rows), over this epoch's batches. Writes one JSON object to --output and to standard output.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tagger.config import Config, load_toml

ROOT = Path(__file__).resolve().parent.parent
SETUPS = [  # (name, processes, threads, beside a busy loop, --sync)
    ("1x1", 1, 1, False, None), ("1x2", 1, 2, False, None), ("2x1", 2, 1, False, None),
    ("2x1-step", 2, 1, False, "step"),
    ("1x1+busy", 1, 1, True, None), ("2x1+busy", 2, 1, True, None), ("1x2+busy", 1, 2, True, None),
]
BUSY = "while True: pass"


def train(args, processes: int, threads: int, busy: bool, output: Path, sync: str | None = None) -> dict:
    """One `tagger train` run: its last metrics line, with tokens_per_s and seconds over every epoch but the
    first (whose start-up is not training speed) when there are several: one epoch alone varied by 20% here."""
    cmd = [sys.executable, "-m", "cli.main", "train", f"{args.data}/{args.train}", "--dev", f"{args.data}/{args.dev}",
           "-o", str(output), "--epochs", str(args.epochs), "--processes", str(processes), "--threads", str(threads),
           "--force", "-q"]
    cmd += ["--config", args.config] if args.config else []
    cmd += ["--embeddings", args.embeddings] if args.embeddings else []
    cmd += ["--sync", sync] if sync else []
    print("$", " ".join(cmd), "(beside a busy loop)" if busy else "", file=sys.stderr, flush=True)
    loop = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        subprocess.run(cmd, cwd=ROOT, check=True)
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    epochs = [json.loads(line) for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    timed = epochs[1:] or epochs
    seconds = sum(m["seconds"] for m in timed)
    tokens = sum(m["tokens_per_s"] * m["seconds"] for m in timed)
    return {**epochs[-1], "tokens_per_s": round(tokens / seconds), "seconds": seconds / len(timed),
            "epochs_timed": len(timed)}


def gradient_floats(model_dir: Path) -> int:
    """Trainable numbers of the trained network: what DDP all-reduces every step."""
    from tagger.training.model import Trainable

    model = Trainable.load(model_dir).model
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _all_reduce(messages: list[tuple[int, str]], repeats: int, out: str, world=None) -> None:
    import torch
    import torch.distributed as dist

    tensors = [torch.ones(n, dtype=getattr(torch, dtype)) for n, dtype in messages]
    for t in tensors:  # warm-up: connections made
        dist.all_reduce(t)
    start = time.perf_counter()
    for _ in range(repeats):
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.BOR if t.dtype == torch.uint8 else dist.ReduceOp.SUM)
    if world.rank == 0:
        Path(out).write_text(json.dumps((time.perf_counter() - start) / repeats))


def all_reduce_seconds(messages: int | list[tuple[int, str]], repeats: int = 20) -> float:
    """Mean time of one all-reduce of `messages` float32 (or of each (count, dtype) in turn: uint8 ones
    OR-reduced, as RowSync's mask) between 2 processes on this machine (gloo)."""
    from tagger.training import distributed

    messages = [(messages, "float32")] if isinstance(messages, int) else messages
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/seconds.json"
        with distributed.spawned(2, _all_reduce, (messages, repeats, out)) as world:
            _all_reduce(messages, repeats, out, world=world)
        return json.loads(Path(out).read_text())


def row_messages(model_dir: Path, args) -> tuple[list[tuple[int, str]], dict]:
    """What one step all-reduces when the word embedding is averaged by rows (distributed.RowSync): the other
    gradients dense, then the word rows' mask (a bit a row) and the rows a global batch reads (its distinct
    trained words, plus <unk> for word dropout), at the mean over the epoch's batches; and those figures."""
    from tagger.data import read_sentences
    from tagger.encode import length_batches
    from tagger.training import distributed
    from tagger.training.model import Trainable
    from tagger.training.setup import prepare_data

    tagger = Trainable.load(model_dir)
    model, tables = tagger.model, distributed.row_tables(tagger.model)
    if set(tables) != {"word.weight"}:
        raise SystemExit(f"row tables {sorted(tables)}: this cost model counts the word embedding's rows only")
    dense = sum(p.numel() for p in model.parameters() if p.requires_grad) - model.word.weight.numel()
    train = [s for s in read_sentences(f"{args.data}/{args.train}") if s.tokens]
    data = prepare_data(tagger, train, [], None)
    rows, dim = model.word.weight.shape
    batches = length_batches([len(e) for e in data.train], tagger.config.batch_size)
    touched = [len({w for i in ids for w, _, _ in data.train[i].tokens if 0 < w < rows} | {1}) for ids in batches]
    mean = sum(touched) / len(touched)
    figures = {"dense_floats": dense, "word_rows": rows, "word_dim": dim, "rows_read_mean": round(mean, 1),
               "rows_read_max": max(touched), "bytes_per_step": round(4 * dense + (rows + 7) // 8 + 4 * dim * mean)}
    return [(dense, "float32"), ((rows + 7) // 8, "uint8"), (round(mean) * dim, "float32")], figures


ALPHA = 25e-6  # seconds a message between machines (TCP), assumed as in bench/README.md: not measured here


def cost_table(dense_bytes: int, rows_bytes: int, word_bytes: int, word_rows: int, compute_s: float,
               period: int) -> list[dict]:
    """ms a step and speed-up over one process for 8-64 processes at 10 and 100 Gb/s: a ring all-reduce
    sends 2(N-1)/N x its bytes and pays 2(N-1) message latencies (ALPHA). step: `rows_bytes` a step (the other
    gradients and the word rows) in 4 collectives (DDP's bucket, the mask, the rows, the loop's loss/stop).
    average (the default): nothing between meetings; every `period` steps every weight (`dense_bytes`), the
    word rows' marks (a bit a row a step) and reads (4 bytes a row) in 5 collectives (the marks, the reads, the
    word rows, the other weights, the loss/stop). rows-every-step: the previous default, the word rows'
    `word_bytes` every step in 2 (RowSync's mask and rows), the rest as average's meetings in 2."""
    rows = []
    for n in (8, 16, 32, 64):
        for gbps in (10, 100):
            ring, latency = 2 * (n - 1) / n / (gbps * 1e9 / 8), 2 * (n - 1) * ALPHA
            marks = period * (word_rows + 7) // 8 + 4 * word_rows
            steps = {"step": rows_bytes * ring + 4 * latency,
                     "average": ((dense_bytes + marks) * ring + 5 * latency) / period,
                     "rows_every_step": word_bytes * ring + 2 * latency + (dense_bytes * ring + 2 * latency) / period}
            row = {"processes": n, "gbps": gbps}
            for name, sent in steps.items():
                step = compute_s / n + sent
                row |= {f"{name}_ms": round(1000 * step, 2), f"{name}_speedup": round(compute_s / step, 1)}
            rows.append(row)
    return rows


def profile(steps: int) -> dict:
    """bench/ddp_phases.py's ms a step by phase: 1 process, 2 ranks with sync = step and with averaging."""
    out = subprocess.run([sys.executable, str(ROOT / "bench/ddp_phases.py"), "--steps", str(steps)], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def steps_per_epoch(args) -> int:
    from tagger.data import read_sentences
    from tagger.encode import length_batches

    batch = Config.from_dict(load_toml(args.config) if args.config else {}).batch_size
    train = [s for s in read_sentences(f"{args.data}/{args.train}") if s.tokens]
    return len(length_batches([len(s.tokens) for s in train], batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/conll2003"))
    parser.add_argument("--train", default="train.txt")
    parser.add_argument("--dev", default="valid.txt")
    parser.add_argument("--config", default=str(ROOT / "configs/conll2003.toml"), help="'' for the defaults")
    parser.add_argument("--embeddings", default=str(ROOT.parent / "shared/embeddings/glove.6B.50d.txt.gz"),
                        help="'' for none")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--setups", nargs="+", default=[s[0] for s in SETUPS], choices=[s[0] for s in SETUPS])
    parser.add_argument("--output", default=str(ROOT / "bench/results-train-scaling.json"))
    parser.add_argument("--profile", action="store_true", help="then bench/ddp_phases.py's ms a step by phase")
    parser.add_argument("--profile-steps", type=int, default=150, help="steps bench/ddp_phases.py times")
    parser.add_argument("--cost-only", nargs=6, type=float, metavar=("DENSE_BYTES", "ROWS_BYTES", "WORD_BYTES",
                        "WORD_ROWS", "COMPUTE_MS", "PERIOD"),
                        help="print cost_table for these figures and stop (no training)")
    args = parser.parse_args()
    if args.cost_only:
        dense, rows, word, word_rows, compute_ms, period = args.cost_only
        print(json.dumps(cost_table(int(dense), int(rows), int(word), int(word_rows), compute_ms / 1000, int(period)),
                         indent=1))
        return
    result: dict = {"epochs": args.epochs, "config": args.config, "busy": f"python -c '{BUSY}'", "setups": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, processes, threads, busy, sync in (s for s in SETUPS if s[0] in args.setups):
            m = train(args, processes, threads, busy, Path(tmp) / name, sync)
            result["setups"][name] = {"processes": processes, "threads": threads, "busy": busy, "sync": sync,
                                      "tokens_per_s": round(m["tokens_per_s"]), "dev_f1": m.get("dev_f1"),
                                      "seconds": m["seconds"]}
            print(json.dumps({name: result["setups"][name]}), file=sys.stderr, flush=True)
        floats = gradient_floats(Path(tmp) / args.setups[0])
        messages, by_rows = row_messages(Path(tmp) / args.setups[0], args)
    quiet = result["setups"]
    for name in ("2x1", "2x1-step"):
        if "1x1" in quiet and name in quiet:
            result[f"speedup_{name}_over_1x1"] = round(quiet[name]["tokens_per_s"] / quiet["1x1"]["tokens_per_s"], 3)
    for name in ("1x1", "2x1", "1x2"):
        if name in quiet and f"{name}+busy" in quiet:
            result[f"kept_beside_busy_{name}"] = round(quiet[f"{name}+busy"]["tokens_per_s"]
                                                        / quiet[name]["tokens_per_s"], 3)
    steps = steps_per_epoch(args)
    seconds = all_reduce_seconds(floats)
    result["cost_model"] = {"all_reduce_bytes_per_step": 4 * floats, "all_reduce_seconds_2_processes": seconds,
                            "steps_per_epoch": steps}
    if "1x1" in quiet:
        result["cost_model"]["compute_seconds_per_step_1x1"] = quiet["1x1"]["seconds"] / steps  # an epoch's
    print(f"all-reduce: {4 * floats:,} bytes a step; one all-reduce between 2 processes: {1000 * seconds:.2f} ms",
          file=sys.stderr)
    by_rows["all_reduce_seconds_2_processes"] = all_reduce_seconds(messages)
    result["cost_model"]["word_rows"] = by_rows
    print(f"word embedding by rows: {by_rows['bytes_per_step']:,} bytes a step; its all-reduces between 2 "
          f"processes: {1000 * by_rows['all_reduce_seconds_2_processes']:.2f} ms", file=sys.stderr)
    period = Config.from_dict(load_toml(args.config) if args.config else {}).sync_period
    result["cost_model"]["averaging"] = {  # one all-reduce of every trainable weight every `period` steps
        "period": period, "bytes_per_meeting": 4 * floats, "bytes_per_step": round(4 * floats / period),
        "all_reduce_seconds_2_processes_per_step": seconds / period}
    if "1x1" in quiet:
        word = by_rows["bytes_per_step"] - 4 * by_rows["dense_floats"]  # the mask and the rows read
        result["cost_model"]["averaging"]["table"] = cost_table(
            4 * floats, by_rows["bytes_per_step"], word, by_rows["word_rows"],
            result["cost_model"]["compute_seconds_per_step_1x1"], period)
    if args.profile:
        result["phases"] = profile(args.profile_steps)
    text = json.dumps(result, indent=2)
    Path(args.output).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
