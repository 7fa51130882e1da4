"""`tagger vectors` on the shared raw text, and what its vectors do for a CoNLL-2003 model (issue 28).

    python bench/vectors.py --seeds 1 2 3 --epochs 20 --lock /tmp/cpu.lock --out bench/results-vectors.json

1. `tagger vectors RAW --output WORK/raw.vec.txt.gz --dim 100` (skipped with --reuse when the file exists):
   its wall time and the words/s it prints.
2. The CoNLL-2003 recipe (configs/conll2003.toml, --epochs N) per seed with: no vectors, GloVe-50d, the
   trained vectors alone, and GloVe-50d stacked with them (`--embeddings A --embeddings B`). Dev picks each
   run's epoch; test is read once, by `tagger evaluate`, at the end of each run.

Every command runs alone when --lock names the lock file other jobs on the machine take (`flock`): the
vectors in one hold, then each seed's trainings and evaluations in one hold (about 6 minutes at 20 epochs).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command(*commands: list[str], lock: str | None) -> tuple[str, str, list[float]]:
    """Run `tagger ARGS` (this checkout's) for each ARGS in turn, all in one hold of `lock` when given (alone
    on the machine): their stdout, their stderr and the wall seconds of each, timed inside the lock."""
    script = [a for args in commands for a in ("--", sys.executable, "-m", "cli.main", *args)]
    cmd = [sys.executable, "-c", _TIMED, *script]
    if lock:
        cmd = ["flock", lock, *cmd]
    for args in commands:
        print("$ tagger", " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    lines = done.stderr.rstrip("\n").split("\n")
    walls = [float(line.removeprefix("wall ")) for line in lines if line.startswith("wall ")]
    return done.stdout, "\n".join(line for line in lines if not line.startswith("wall ")), walls


# run each `--`-led command of argv in turn, stopping at a failure; print each one's wall time on stderr
_TIMED = """
import itertools, subprocess, sys, time
argv = sys.argv[1:]
cuts = [i for i, a in enumerate(argv) if a == "--"] + [len(argv)]
for a, b in itertools.pairwise(cuts):
    t = time.perf_counter()
    code = subprocess.call(argv[a + 1:b])
    print(f"wall {time.perf_counter() - t:.3f}", file=sys.stderr, flush=True)
    if code:
        sys.exit(code)
"""


def train_vectors(raw: list[Path], out: Path, dim: int, lock: str | None) -> dict:
    args = ["vectors", *map(str, raw), "--output", str(out), "--dim", str(dim), "--force"]
    _, err, (wall,) = command(args, lock=lock)
    speed = re.search(r"\(([\d,]+) words/s\)", err)
    summary = err.strip().splitlines()[-1] if err.strip() else ""
    return {"command": "tagger " + " ".join(args[:-1]), "wall_s": wall,
            "words_per_s": int(speed.group(1).replace(",", "")) if speed else None, "summary": summary}


def seed_runs(data: Path, work: Path, seed: int, epochs: int, variants: dict[str, list[Path]],
              lock: str | None) -> dict[str, dict]:
    """Train and evaluate every variant with one seed, all in one hold of the lock (a few minutes at 20 epochs:
    fewer holds to wait for on a shared machine); test is read by `tagger evaluate` right after training."""
    commands = []
    for variant, embeddings in variants.items():
        model = work / f"m-{variant}-{seed}"
        train = ["train", str(data / "train.txt"), "--dev", str(data / "valid.txt"), "--output", str(model),
                 "--config", "configs/conll2003.toml", "--epochs", str(epochs), "--seed", str(seed), "--force",
                 "--quiet", *(a for path in embeddings for a in ("--embeddings", str(path)))]
        commands += [train, ["evaluate", str(model), str(data / "test.txt"), "--json"]]
    out, _, walls = command(*commands, lock=lock)
    tests, decoder, at = [], json.JSONDecoder(), 0
    while out[at:].strip():  # one JSON document per evaluation, one after the other
        found, end = decoder.raw_decode(out[at:].lstrip())
        at = len(out) - len(out[at:].lstrip()) + end
        tests.append(found)
    return {variant: _run(work / f"m-{variant}-{seed}", seed, test, wall)
            for variant, test, wall in zip(variants, tests, walls[::2])}


def _run(model: Path, seed: int, test: dict, wall: float) -> dict:
    metrics = [json.loads(line) for line in (model / "metrics.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda m: m["dev_f1"])
    return {"seed": seed, "dev_f1": 100 * best["dev_f1"], "best_epoch": best["epoch"], "test_f1": 100 * test["f1"],
            "epochs": len(metrics), "s_per_epoch": statistics.mean(m["seconds"] for m in metrics), "wall_s": wall,
            "word_dim": json.loads((model / "config.json").read_text())["config"]["word_dim"]}


def summarise(runs: list[dict]) -> dict:
    tests = [r["test_f1"] for r in runs]
    return {"test_f1_mean": statistics.mean(tests), "test_f1_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "dev_f1_mean": statistics.mean(r["dev_f1"] for r in runs),
            "s_per_epoch": statistics.mean(r["s_per_epoch"] for r in runs), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TAGGER_DATA", "../shared/data")))
    parser.add_argument("--glove", type=Path, default=Path("../shared/embeddings/glove.6B.50d.txt.gz"))
    parser.add_argument("--raw", type=Path, nargs="+", default=None, help="default: DATA/raw-en/reuters21578.txt.gz")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--variants", nargs="+", default=["none", "glove", "raw", "glove+raw"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-vectors"))
    parser.add_argument("--lock", default=None, help="a lock file to hold (flock) around each command")
    parser.add_argument("--reuse", action="store_true", help="keep WORK/raw.vec.txt.gz when it exists")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    raw = args.raw or [args.data / "raw-en" / "reuters21578.txt.gz"]
    args.work.mkdir(parents=True, exist_ok=True)
    vec = args.work / "raw.vec.txt.gz"
    result: dict = {"raw": [str(p) for p in raw], "epochs": args.epochs, "seeds": args.seeds}
    if not (args.reuse and vec.exists()):
        result["vectors"] = train_vectors(raw, vec, args.dim, args.lock)
        print(json.dumps(result["vectors"]), file=sys.stderr)
    files = {"none": [], "glove": [args.glove], "raw": [vec], "glove+raw": [args.glove, vec]}
    runs: dict[str, list[dict]] = {variant: [] for variant in args.variants}
    for seed in args.seeds:  # every variant once before the next seed: a cut-short run still compares them
        done = seed_runs(args.data / "conll2003", args.work, seed, args.epochs,
                         {v: files[v] for v in args.variants}, args.lock)
        for variant, run in done.items():
            print(variant, json.dumps(run), file=sys.stderr, flush=True)
            runs[variant].append(run)
        result["variants"] = {v: summarise(r) for v, r in runs.items() if r}
        if args.out:  # after every seed
            args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
