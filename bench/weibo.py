"""Weibo NER (weiboNER_2nd_conll: BIO with PER.NAM / PER.NOM ... types) with the character defaults (bigrams
on, no character CNN), adding in turn jieba's lexicon, the character vectors of jieba's LAC model and LAC as a
frozen context encoder; several seeds: test F1 mean +- sd, training seconds per epoch, and tagging throughput
on raw Chinese text (characters/s).

    python bench/weibo.py [--data ../shared/data/weibo-ner] [--seeds 1 2 3] [--jobs 2] [--variants NAME ...]
                          [--grid] [--epochs N (a quick check of this script only)] [--reuse] [--out FILE]

Each run is `tagger train TRAIN --dev DEV --seed S --quiet` (one thread; with --jobs N, N runs at once, each
pinned to a core of its own) and `tagger evaluate --json` on test. Dev alone chooses: the epoch (the saved
model is the best on dev; training stops after `patience` epochs without a better one) and, with --grid, the
setting of GRID with the best mean dev F1, whose test F1 is then reported. Test is read only by `tagger
evaluate` after training. Throughput is measured after all training, alone. Needs jieba (pip install jieba);
the data are research-use only and stay in ../shared.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runcli import on_cores, run  # noqa: E402

LEXICON = ["--lexicon", "jieba"]
VECTORS = ["--embeddings", "jieba"]
CONTEXT = ["--context", "jieba"]
VARIANTS = {"chars": [], "chars + lexicon": LEXICON, "chars + LAC vectors + lexicon": VECTORS + LEXICON,
            "chars + LAC vectors + LAC context": VECTORS + CONTEXT,
            "chars + LAC vectors + LAC context + lexicon": VECTORS + CONTEXT + LEXICON}
# candidate settings (TOML) that --grid compares on dev; "" is the defaults
GRID = {"defaults": "", "dropout 0.3": "dropout = 0.3\n", "hidden 200": "hidden_size = 200\n"}
TAGGER = [sys.executable, "-m", "cli.main"]


def one_run(data: Path, out: Path, seed: int, extra: list[str], setting: str, core: int | None,
            reuse: bool = False) -> dict:
    config = out.with_suffix(".toml")
    if not (reuse and (out / "metrics.jsonl").is_file() and config.is_file()
            and config.read_text(encoding="utf-8") == setting):
        config.write_text(setting, encoding="utf-8")
        run([*TAGGER, "train", str(data / "train.txt"), "--dev", str(data / "dev.txt"), "--output", str(out), "--seed",
             str(seed), "--quiet", "--force", "--config", str(config), *extra], core)
    test = json.loads(run([*TAGGER, "evaluate", str(out), str(data / "test.txt"), "--json"], core)[0])
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda m: m["dev_f1"])
    return {"seed": seed, "test_f1": test["f1"], "dev_f1": best["dev_f1"], "best_epoch": best["epoch"],
            "epochs": len(metrics), "epoch_seconds": statistics.mean(m["seconds"] for m in metrics),
            "per_type": {k: v["f1"] for k, v in test["per_type"].items()}}


def raw_texts(path: Path) -> list[str]:
    """The test sentences as raw text: their characters joined."""
    from corpora.conll import read_conll

    return ["".join(s.tokens) for s in read_conll(path)]


def throughput(model: Path, texts: list[str], repeats: int) -> dict:
    """Characters/s of Tagger.predict on raw text (the model loaded first, timed apart)."""
    from tagger.api import Tagger

    start = time.perf_counter()
    t = Tagger.load(model)
    load = time.perf_counter() - start
    texts = texts * repeats
    start = time.perf_counter()
    for _ in t.predict(texts):
        pass
    seconds = time.perf_counter() - start
    chars = sum(map(len, texts))
    return {"characters": chars, "seconds": seconds, "chars_per_s": chars / seconds, "load_seconds": load}


def summary(runs: list[dict]) -> dict:
    f1 = [r["test_f1"] for r in runs]
    return {"test_f1_mean": statistics.mean(f1), "test_f1_sd": statistics.stdev(f1) if len(f1) > 1 else 0.0,
            "dev_f1_mean": statistics.mean(r["dev_f1"] for r in runs),
            "epoch_seconds": statistics.mean(r["epoch_seconds"] for r in runs), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "weibo-ner")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one core and thread each")
    parser.add_argument("--grid", action="store_true", help="choose among GRID's settings by mean dev F1")
    parser.add_argument("--epochs", type=int, help="cap the epochs (a quick check of this script, not a result)")
    parser.add_argument("--repeats", type=int, default=20, help="times the test text is tagged for characters/s")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-weibo", help="where models go")
    parser.add_argument("--reuse", action="store_true", help="score the models already in --runs (trained "
                        "with the same setting) instead of training them again")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if not (args.data / "train.txt").is_file():
        raise SystemExit(f"{args.data}: no Weibo NER here (train.txt, dev.txt, test.txt)")
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    grid = GRID if args.grid else {"defaults": ""}
    args.runs.mkdir(parents=True, exist_ok=True)
    todo = [(name, label, seed) for name in args.variants for label in grid for seed in args.seeds]

    def work(item: tuple[str, str, int], core: int | None) -> dict:
        name, label, seed = item
        out = args.runs / f"{name}-{label}-{seed}".replace(" ", "_").replace("+", "")
        result = one_run(args.data, out, seed, [*VARIANTS[name], *epochs], grid[label], core, args.reuse)
        print(f"{name} [{label}] seed {seed}: test F1 {100 * result['test_f1']:.2f} (dev "
              f"{100 * result['dev_f1']:.2f}, epoch {result['best_epoch']})", file=sys.stderr, flush=True)
        return {**result, "model": str(out)}

    done = dict(zip(todo, on_cores(work, todo, args.jobs)))
    results: dict = {"data": str(args.data), "seeds": args.seeds, "jobs": args.jobs, "variants": {}}
    texts = raw_texts(args.data / "test.txt")
    for name in args.variants:
        by_setting = {label: summary([done[(name, label, s)] for s in args.seeds]) for label in grid}
        chosen = max(by_setting, key=lambda k: by_setting[k]["dev_f1_mean"])  # dev alone decides
        results["variants"][name] = {"setting": chosen, **by_setting[chosen],
                                     "dev_f1_by_setting": {k: v["dev_f1_mean"] for k, v in by_setting.items()},
                                     "predict": throughput(Path(done[(name, chosen, args.seeds[0])]["model"]),
                                                           texts, args.repeats)}
    if "chars" in results["variants"] and "chars + lexicon" in results["variants"]:
        plain, lexicon = results["variants"]["chars"], results["variants"]["chars + lexicon"]
        results["lexicon_epoch_cost"] = lexicon["epoch_seconds"] / plain["epoch_seconds"]
    text = json.dumps(results, indent=2, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
