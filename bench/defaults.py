"""Test F1 of `tagger train` without --config (today's defaults) against the defaults before them, on the
bundled samples (English word-level NER in IOB2, Chinese character-level NER in BMES), a few seeds each.

    python bench/defaults.py --seeds 1 2 3 [--corpora en zh] [--epochs N (a quick check only)]
    python bench/defaults.py --conll --seeds 1 2 3 [--settings defaults recipe]

--conll: CoNLL-2003 with GloVe-50d instead, `tagger train` without --config (the defaults) against the recipe
(configs/conll2003.toml), each through bench/conll2003.py (runs/defaults-conll/SETTING/result.json).

One run at a time, one thread each (OMP_NUM_THREADS=1), `--quiet`; then `tagger evaluate --json` on test.
Prints one JSON object: per corpus, per setting, per seed, the test F1, best dev F1 and its epoch.
Dev only picks the best epoch and stops training; test is never seen before the end.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from runcli import tagger  # noqa: E402  (bench/ is on sys.path when a script in it runs)

# tagger/config.py's defaults before they became Adam 0.002, BiLSTM 100, batch 64, weight average 0.999
OLD_DEFAULTS = """hidden_size = 200
optimizer = "sgd"
lr = 0.015
batch_size = 32
average = 0.0
"""


def one_run(corpus: Path, config: list[str], seed: int, out: Path, epochs: list[str]) -> dict:
    tagger("train", str(corpus / "train.txt"), "--dev", str(corpus / "dev.txt"), "--output", str(out),
           "--seed", str(seed), "--quiet", "--force", *config, *epochs)
    test = json.loads(tagger("evaluate", str(out), str(corpus / "test.txt"), "--json"))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(metrics, key=lambda m: m["dev_f1"])
    return {"seed": seed, "test_f1": test["f1"], "dev_f1": best["dev_f1"], "best_epoch": best["epoch"],
            "epochs": len(metrics)}


def conll(seeds: list[int], settings: list[str]) -> dict:
    """Defaults against the recipe on CoNLL-2003: bench/conll2003.py's result for each, one seed at a time."""
    configs = {"defaults": "", "recipe": str(ROOT / "configs/conll2003.toml")}
    results = {}
    for name in settings:
        out = ROOT / "runs/defaults-conll" / name
        subprocess.run([sys.executable, str(ROOT / "bench/conll2003.py"), "--config", configs[name], "--out", str(out),
                        "--seeds", *map(str, seeds)], check=True, stdout=subprocess.DEVNULL)
        results[name] = json.loads((out / "result.json").read_text())
    if len(results) == 2:
        results["defaults_minus_recipe"] = results["defaults"]["test_f1"]["mean"] - results["recipe"]["test_f1"]["mean"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--corpora", nargs="+", default=["en", "zh"], help="folders of samples/")
    parser.add_argument("--epochs", type=int, help="cap the epochs (a quick check of this script, not a result)")
    parser.add_argument("--conll", action="store_true", help="CoNLL-2003: the defaults against the recipe")
    parser.add_argument("--settings", nargs="+", default=["defaults", "recipe"], choices=["defaults", "recipe"])
    args = parser.parse_args()
    if args.conll:
        print(json.dumps(conll(args.seeds, args.settings), indent=2))
        return
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old-defaults.toml"
        old.write_text(OLD_DEFAULTS, encoding="utf-8")
        settings = {"old": ["--config", str(old)], "new": []}
        for corpus in args.corpora:
            for name, config in settings.items():
                runs = [one_run(ROOT / "samples" / corpus, config, seed, Path(tmp) / f"{corpus}-{name}-{seed}", epochs)
                        for seed in args.seeds]
                f1 = [r["test_f1"] for r in runs]
                results.setdefault(corpus, {})[name] = {
                    "runs": runs, "test_f1_mean": statistics.mean(f1),
                    "test_f1_std": statistics.stdev(f1) if len(f1) > 1 else 0.0}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
