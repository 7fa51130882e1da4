"""Train the CoNLL-2003 recipe with several seeds, score each on test, print one JSON object.

    python bench/conll2003.py --data ../shared/data/conll2003 --seeds 1 2 3 [--jobs 2]

Each seed runs `tagger train` in a subprocess (so its peak RSS is measured alone), then `tagger evaluate`.
With --jobs N, N seeds train at once, each pinned to its own core with one thread (OMP_NUM_THREADS=1).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from runcli import on_cores, run  # noqa: E402


def mean_std(values: list[float]) -> dict:
    return {"values": values, "mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def one_seed(args, seed: int, core: int | None) -> dict:
    out = Path(args.out) / f"seed{seed}"
    tagger = [sys.executable, "-m", "cli.main"]
    start = time.time()
    config = ["--config", args.config] if args.config else []  # "": the library's defaults
    _, peak_mb = run(tagger + ["train", f"{args.data}/train.txt", "--dev", f"{args.data}/valid.txt", "--embeddings",
                               args.embeddings, *config, "--seed", str(seed), "--output", str(out),
                               "--force", "--quiet", *args.extra], core)
    wall = time.time() - start
    test = json.loads(run(tagger + ["evaluate", str(out), f"{args.data}/test.txt", "--json"], core)[0])
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(epochs, key=lambda m: m["dev_f1"])
    to_best = sum(m["seconds"] + m["eval_seconds"] for m in epochs if m["epoch"] <= best["epoch"])
    return {"seed": seed, "dev_f1": best["dev_f1"], "test_f1": test["f1"], "epochs": len(epochs),
            "best_epoch": best["epoch"], "seconds_per_epoch": statistics.mean(m["seconds"] for m in epochs),
            "train_tokens_per_s": statistics.mean(m["tokens_per_s"] for m in epochs),
            "minutes_to_best": to_best / 60, "wall_minutes": wall / 60, "peak_rss_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/conll2003"))
    parser.add_argument("--embeddings", default=str(ROOT.parent / "shared/embeddings/glove.6B.50d.txt.gz"))
    parser.add_argument("--config", default=str(ROOT / "configs/conll2003.toml"),
                        help='the recipe; "" trains with the library\'s defaults (bench/defaults.py --conll)')
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default=str(ROOT / "runs/bench-conll2003"))
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, one core and thread each")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `tagger train` options")
    args = parser.parse_args()
    runs = on_cores(lambda seed, core: one_seed(args, seed, core), args.seeds, args.jobs)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {"config": args.config, "commit": commit, "runs": runs,
              "dev_f1": mean_std([r["dev_f1"] for r in runs]), "test_f1": mean_std([r["test_f1"] for r in runs]),
              "epochs": [r["epochs"] for r in runs],
              "seconds_per_epoch": statistics.mean(r["seconds_per_epoch"] for r in runs),
              "train_tokens_per_s": statistics.mean(r["train_tokens_per_s"] for r in runs),
              "minutes_to_best": [r["minutes_to_best"] for r in runs],
              "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
    text = json.dumps(result, indent=2)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "result.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
