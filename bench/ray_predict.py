"""Ray Data prediction against plain `tagger predict --workers N` on one machine: tokens/s and their ratio.

    python bench/ray_predict.py --model models/conll2003 --data ../shared/data/conll2003 --mb 100 \\
        --json bench/results-ray-predict-100mb.json

Input: N MB of raw text, the CoNLL file's sentences (tokens joined by spaces, one a line) repeated, split into
--shards text files (or synthetic sentences with --synthetic). Both runs are `tagger predict` child processes
over the same shards, timed end to end (the Ray one includes starting a local Ray and its actors: --mb large
enough makes that small). Tokens are the input's space-separated tokens. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def conll_lines(data: Path) -> list[str]:
    from corpora.conll import read_conll

    return [" ".join(s.tokens) for s in read_conll(data / "train.txt") if s.tokens]


def synthetic_lines(n: int = 5000, seed: int = 0) -> list[str]:
    """Sentences of capitalised names, places and lower-case words: something to tag without licensed data."""
    rng = random.Random(seed)
    names, words = ["John", "Mary", "Paris", "Berlin", "Siemens", "Acme"], ["visited", "the", "in", "met", "for"]
    return [" ".join(rng.choice(names if rng.random() < 0.3 else words) for _ in range(rng.randint(5, 30)))
            for _ in range(n)]


def write_shards(lines: list[str], mb: float, shards: int, directory: Path) -> int:
    """Repeat `lines` to `mb` MB over `shards` files; returns the number of space-separated tokens."""
    target, written, tokens = mb * 1e6, 0, 0
    files = [open(directory / f"part-{i:04d}.txt", "w", encoding="utf-8") for i in range(shards)]
    try:
        i = 0
        while written < target:
            line = lines[i % len(lines)]
            files[i % shards].write(line + "\n")
            written += len(line.encode("utf-8")) + 1
            tokens += len(line.split())
            i += 1
    finally:
        for f in files:
            f.close()
    return tokens


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"tagger {' '.join(args)} failed: {run.stderr.strip()[-2000:]}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models/conll2003")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/conll2003")
    p.add_argument("--synthetic", action="store_true", help="synthetic sentences instead of --data")
    p.add_argument("--mb", type=float, default=100.0)
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="--workers of plain predict, actors of Ray")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", type=Path, help="also write the result here")
    a = p.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # both children on one BLAS thread from the start (Tagger limits it anyway)
    lines = synthetic_lines() if a.synthetic else conll_lines(a.data)
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        shards = Path(tmp) / "in"
        shards.mkdir()
        tokens = write_shards(lines, a.mb, a.shards, shards)
        files = sorted(map(str, shards.iterdir()))
        common = ["--batch-size", str(a.batch_size), "--workers", str(a.workers)]
        plain = timed(["predict", str(a.model), *files, "--output", f"{tmp}/plain.jsonl", *common])
        ray = timed(["predict", str(a.model), str(shards), "--ray", "--output", f"{tmp}/ray-out", *common])
    result = {"mb": a.mb, "shards": a.shards, "tokens": tokens, "workers": a.workers, "batch_size": a.batch_size,
              "input": "synthetic" if a.synthetic else str(a.data / "train.txt"), "cpus": os.cpu_count(),
              "plain_seconds": plain, "ray_seconds": ray,
              "plain_tokens_per_s": tokens / plain, "ray_tokens_per_s": tokens / ray,
              "ray_per_actor_tokens_per_s": tokens / ray / a.workers, "ray_over_plain": plain / ray}
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
