"""Weibo NER (weiboNER_2nd_conll: BIO with PER.NAM / PER.NOM ... types) with the character defaults (bigrams
on, no character CNN), without and with a lexicon (jieba's dictionary), several seeds: test F1 mean +- sd,
training seconds per epoch, and tagging throughput on raw Chinese text (characters/s) with the lexicon.

    python bench/weibo.py [--data ../shared/data/weibo-ner] [--seeds 1 2 3] [--lexicon jieba]
                          [--grid] [--epochs N (a quick check of this script only)] [--out results-weibo.json]

Each run is `tagger train TRAIN --dev DEV --seed S --quiet` (one thread) and `tagger evaluate --json` on
test. Dev alone chooses: the epoch (the saved model is the best on dev; training stops after `patience`
epochs without a better one) and, with --grid, the setting of GRID with the best mean dev F1, whose test F1
is then reported. Test is read only by `tagger evaluate` after training. Needs jieba (pip install jieba) for
`--lexicon jieba`; the data are research-use only and stay in ../shared.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runcli import tagger  # noqa: E402

# candidate settings (TOML) that --grid compares on dev; "" is the defaults
GRID = {"defaults": "", "dropout 0.3": "dropout = 0.3\n", "bigram_dim 100": "bigram_dim = 100\n"}


def one_run(data: Path, out: Path, seed: int, extra: list[str], setting: str, tmp: Path) -> dict:
    config = tmp / "setting.toml"
    config.write_text(setting, encoding="utf-8")
    tagger("train", str(data / "train.txt"), "--dev", str(data / "dev.txt"), "--output", str(out), "--seed",
           str(seed), "--quiet", "--force", "--config", str(config), *extra)
    test = json.loads(tagger("evaluate", str(out), str(data / "test.txt"), "--json"))
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
    """Characters/s of Tagger.predict_texts on raw text (the model loaded first, not timed)."""
    from tagger.api import Tagger

    start = time.perf_counter()
    t = Tagger.load(model)
    load = time.perf_counter() - start
    texts = texts * repeats
    start = time.perf_counter()
    for _ in t.predict_texts(texts):
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
    parser.add_argument("--lexicon", default="jieba", help="a `word [frequency]` file, or jieba")
    parser.add_argument("--grid", action="store_true", help="choose among GRID's settings by mean dev F1")
    parser.add_argument("--epochs", type=int, help="cap the epochs (a quick check of this script, not a result)")
    parser.add_argument("--repeats", type=int, default=20, help="times the test text is tagged for characters/s")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if not (args.data / "train.txt").is_file():
        raise SystemExit(f"{args.data}: no Weibo NER here (train.txt, dev.txt, test.txt)")
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    variants = {"chars": [], "chars + lexicon": ["--lexicon", args.lexicon]}
    grid = GRID if args.grid else {"defaults": ""}
    results: dict = {"data": str(args.data), "seeds": args.seeds, "lexicon": args.lexicon, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, extra in variants.items():
            by_setting = {}
            for label, setting in grid.items():
                runs = []
                for seed in args.seeds:
                    out = tmp / f"{name}-{label}-{seed}".replace(" ", "_")
                    runs.append(one_run(args.data, out, seed, [*extra, *epochs], setting, tmp))
                    print(f"{name} [{label}] seed {seed}: test F1 {100 * runs[-1]['test_f1']:.2f} (dev "
                          f"{100 * runs[-1]['dev_f1']:.2f}, epoch {runs[-1]['best_epoch']})", file=sys.stderr)
                by_setting[label] = summary(runs)
            chosen = max(by_setting, key=lambda k: by_setting[k]["dev_f1_mean"])  # dev alone decides
            results["variants"][name] = {"setting": chosen, **by_setting[chosen],
                                         "dev_f1_by_setting": {k: v["dev_f1_mean"] for k, v in by_setting.items()}}
            if extra:
                model = tmp / f"{name}-{chosen}-{args.seeds[0]}".replace(" ", "_")
                results["variants"][name]["predict"] = throughput(model, raw_texts(args.data / "test.txt"),
                                                                  args.repeats)
    plain, lexicon = results["variants"]["chars"], results["variants"]["chars + lexicon"]
    results["lexicon_epoch_cost"] = lexicon["epoch_seconds"] / plain["epoch_seconds"]
    text = json.dumps(results, indent=2, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
