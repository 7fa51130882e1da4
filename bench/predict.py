"""Prediction speed and memory: raw text -> JSONL, end to end and model alone, cold start, peak RSS.

    python bench/predict.py --model models/conll2003 --data ../shared/data/conll2003

Inputs: the CoNLL-2003 test sentences as raw text (tokens joined by spaces, one sentence a line), and a
large file made by repeating them (--large-mb). Each `tagger predict` run is a separate process whose
peak RSS is read from os.wait4; the one-sentence cold start is run --cold-runs times. The model alone
(encoding, network, Viterbi) is timed in this process. `--extra` passes options to `tagger predict`
(e.g. --extra=--scores, or --extra "--n-best 5"; a lone option needs the `=`), and the model-alone
timing does the same scoring. Prints one JSON object.
The cost of scores: run it with --extra="", --extra=--scores and --extra="--n-best 5", and compare tokens/s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVERY = 1.0  # seconds between memory samples of a running `tagger predict`
sys.path.insert(0, str(ROOT))


def test_sentences(data: Path) -> list[list[str]]:
    from corpora.conll import read_conll

    return [list(s.tokens) for s in read_conll(data / "test.txt")]


def tree_pss_mb(pid: int) -> float:
    """Memory of a process and all its descendants (worker processes) in MB: the sum of their proportional
    set sizes, so pages that forked workers share with their parent count once, not once per process."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(next(l.split()[1] for l in rollup.splitlines() if l.startswith("Pss:")))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue  # it just ended
    return total / 1024


def run_cli(args: list[str], stdin: Path | None = None) -> dict:
    """Run `tagger ...` in a child process: wall seconds, its own peak RSS in MB (from wait4; this process
    must not hold much memory when it forks, since Linux carries the forked copy's peak over exec), and the
    peak memory of it and its worker processes together (PSS, sampled every SAMPLE_EVERY seconds: reading
    smaps_rollup walks the page tables in the kernel, and sampling every 50 ms slowed a 2-worker run by 30%)."""
    start = time.perf_counter()
    peak_tree = [0.0]
    with open(stdin or os.devnull, "rb") as inp:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], stdin=inp, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, cwd=ROOT)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(SAMPLE_EVERY):
                peak_tree[0] = max(peak_tree[0], tree_pss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"tagger {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "peak_pss_all_processes_mb": peak_tree[0]}


def score_options(extra: str):
    """The scoring that `--extra` asks `tagger predict` for (--scores, --min-score P, --n-best K), so that the
    model-alone figure measures the same work."""
    from tagger.tagging.confidence import ScoreOptions

    words = extra.split()
    value = lambda name: words[words.index(name) + 1] if name in words else None  # noqa: E731
    min_score, n_best = value("--min-score"), value("--n-best")
    return ScoreOptions(scores="--scores" in words, min_score=None if min_score is None else float(min_score),
                        n_best=int(n_best or 0))


def model_alone(model: Path, sentences: list[list[str]], batch_size: int, extra: str = "") -> dict:
    """Tokens/s of encoding + network + Viterbi (and the scoring `extra` asks for) on pre-tokenised sentences
    (three passes), in this process."""
    from tagger.api import Tagger

    from tagger.tagging import pipeline

    tagger = Tagger.load(model)
    options = score_options(extra)
    tag = ((lambda e: pipeline.score_encoded(tagger, e, options, batch_size)) if options.active
           else (lambda e: pipeline.tag_encoded(tagger, e, batch_size)))
    encoded = [tagger.encode(s) for s in sentences]
    tokens = sum(map(len, sentences))
    tag(encoded[:500])  # warm up
    start = time.perf_counter()
    for _ in range(3):
        tag(encoded)
    network = (time.perf_counter() - start) / 3
    start = time.perf_counter()
    for _ in range(3):
        (pipeline.scored_tokens(tagger, sentences, options=options, batch_size=batch_size) if options.active
         else tagger.predict_tokens(sentences, batch_size=batch_size))
    with_encoding = (time.perf_counter() - start) / 3
    return {"tokens": tokens, "batch_size": batch_size, "scoring": extra,
            "network_and_viterbi_tokens_per_s": tokens / network, "with_encoding_tokens_per_s": tokens / with_encoding}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models/conll2003")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/conll2003")
    p.add_argument("--large-mb", type=float, default=100.0)
    p.add_argument("--small-mb", type=float, default=5.0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0, help="0: the default (one per core for large inputs)")
    p.add_argument("--extra", default="", help="more `tagger predict` options, e.g. --extra=--scores")
    p.add_argument("--cold-runs", type=int, default=5)
    args = p.parse_args()
    sentences = test_sentences(args.data)
    result: dict = {"model": str(args.model), "workers": args.workers, "extra": args.extra}
    extra = ["--batch-size", str(args.batch_size), "--workers", str(args.workers), *args.extra.split()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        text = "".join(" ".join(s) + "\n" for s in sentences)
        tokens = sum(map(len, sentences))
        files = {"test": (1, tokens)}
        for name, mb in (("small", args.small_mb), ("large", args.large_mb)):
            copies = max(1, round(mb * 2**20 / len(text.encode())))
            files[name] = (copies, copies * tokens)
        for name, (copies, n_tokens) in files.items():
            path = tmp / f"{name}.txt"
            with open(path, "w", encoding="utf-8") as f:
                for _ in range(copies):
                    f.write(text)
            out = tmp / f"{name}.jsonl"
            run = run_cli(["predict", str(args.model), str(path), "--output", str(out), *extra])
            lines = sum(1 for _ in open(out, encoding="utf-8"))
            result[f"end_to_end_{name}"] = {"input_mb": path.stat().st_size / 2**20, "tokens": n_tokens,
                                            "lines_out": lines, "tokens_per_s": n_tokens / run["seconds"], **run}
            path.unlink()
            out.unlink()
        one = tmp / "one.txt"
        one.write_text("Angela Merkel met Emmanuel Macron in Paris on Monday.\n")
        cold = [run_cli(["predict", str(args.model), str(one)]) for _ in range(args.cold_runs)]
        seconds = sorted(run["seconds"] for run in cold)
        result["cold_start_one_sentence"] = {"seconds": seconds, "median_seconds": seconds[len(seconds) // 2],
                                             "peak_rss_mb": max(run["peak_rss_mb"] for run in cold)}
    # in this process, after the child processes (whose peak RSS would otherwise include this one's)
    result["model_alone"] = model_alone(args.model, sentences, args.batch_size, args.extra)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
