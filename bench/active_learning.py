"""Simulated active learning on CoNLL-2003: how many labels each selection strategy needs.

    python bench/active_learning.py --full --seeds 1 2 --max-fraction 0.49 --warm mnlp   # the experiment
    python bench/active_learning.py --plot docs/active-learning.png                         # its figure
    python bench/active_learning.py --time-select MODEL        # seconds to select from the whole pool

The pool is CoNLL-2003 train (14,041 sentences) with its tags hidden: a sentence's tags are read only once
it is selected ("labelled"). Each run starts from a random 1 % (the same sentences for every strategy of a
seed), then, each round, trains a model on the labelled sentences, scores it on test, and has the strategy
(tagger/tagging/selection.py, `select`) pick 2 % more of the pool from that model, until --max-fraction. Every
round's model is trained from scratch with the same recipe (RECIPE below; the first --dev-limit sentences of
CoNLL-2003 valid pick the epoch); --warm STRATEGY... also runs those strategies with warm-started rounds (the
previous round's model as `tagger train --init`, half the epochs). --full trains the recipe on the whole
pool once per seed: the full-data F1 the curves are compared to.

Everything runs in this process, one thread, so the run measures the methods and not process start-up; the
GloVe vectors are read once. Results are written after every round and a second call with the same --out
continues where the first stopped (runs and rounds already there are skipped): the experiment can be split
into runs shorter than the shared CPU lock's 10 minutes, e.g. `flock /tmp/cpu.lock timeout 540 python ...`.
--plot only draws the figure from --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import math
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

DATA = Path(os.environ.get("TAGGER_DATA", ROOT.parent / "shared" / "data")) / "conll2003"
GLOVE = ROOT.parent / "shared" / "embeddings" / "glove.6B.50d.txt.gz"
START, STEP = 0.01, 0.02  # the first labels (random), then each round's purchase, as fractions of the pool

# A small, fast BiLSTM-CRF (GloVe 50d, BiLSTM 64, char CNN 30): enough updates at every size. The epochs
# give about MIN_STEPS updates (between MIN_EPOCHS and MAX_EPOCHS); dev picks the best epoch.
RECIPE = dict(hidden_size=64, char_filters=30, char_dim=25, casing_dim=10, batch_size=32, optimizer="adam",
              lr=0.002, dropout=0.5, patience=8, threads=1, tag_scheme="bioes")
MIN_STEPS, MIN_EPOCHS, MAX_EPOCHS = 500, 8, 50


def epochs_for(sentences: int) -> int:
    steps = math.ceil(sentences / RECIPE["batch_size"])
    return max(MIN_EPOCHS, min(MAX_EPOCHS, math.ceil(MIN_STEPS / steps)))


class Corpus:
    """The pool (train), dev and test, read once, and the vectors."""

    def __init__(self, dev_limit: int | None):
        from tagger.data import check_tags, read_sentences
        from tagger.embeddings import load_vectors

        self.pool = read_sentences(DATA / "train.txt")
        self.dev = read_sentences(DATA / "valid.txt")[:dev_limit]
        self.test = read_sentences(DATA / "test.txt")
        self.scheme = check_tags(self.pool, "train", None)
        self.tokens = sum(len(s.tokens) for s in self.pool)
        self.dev_scheme = check_tags(self.dev, "valid", None)
        start = time.perf_counter()
        words, matrix = load_vectors(GLOVE)
        # only the rows a word of the corpus can look up (its form or its lower case): the same lookups, and
        # the model keeps 20k frozen rows instead of 400k, which each checkpoint would write again
        forms = {w for part in (self.pool, self.dev, self.test) for s in part for t in s.tokens for w in (t, t.lower())}
        keep = [i for i, w in enumerate(words) if w in forms]
        self.vectors = ([words[i] for i in keep], matrix[keep])
        print(f"pool {len(self.pool):,}, dev {len(self.dev):,}, test {len(self.test):,}; GloVe read in "
              f"{time.perf_counter() - start:.1f}s, {len(keep):,} of its {len(words):,} words kept", file=sys.stderr,
              flush=True)


class NoPlot:
    def __init__(self, *args):
        pass

    def request(self) -> None:
        pass

    def close(self) -> None:
        pass


def train_round(corpus: Corpus, labelled: list[int], seed: int, out: Path, warm: Path | None = None) -> dict:
    """Train the recipe on the labelled sentences into `out`, from scratch or, with `warm`, from that model
    (tagger train --init: half the epochs); its test F1, best dev F1 and the seconds spent."""
    from tagger.api import Tagger
    from tagger.config import Config
    from tagger.training import loop
    from tagger.training.loop import train
    from tagger.training.setup import Inputs
    from tagger.training.warmstart import WarmStart

    loop.plots.Redrawer = NoPlot  # no training.svg: its drawing thread would compete for the one core
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sentences = [corpus.pool[i] for i in labelled]
    epochs = epochs_for(len(sentences))
    if warm is not None:
        epochs = max(MIN_EPOCHS // 2, epochs // 2)
    config = dataclasses.replace(Config(), **RECIPE, epochs=epochs, seed=seed)
    inputs = Inputs(vectors=corpus.vectors) if warm is None else \
        Inputs(init=WarmStart(warm, given=frozenset({*RECIPE, "epochs", "seed"})))
    start = time.perf_counter()
    progress = train(config=config, train_sents=sentences, dev_sents=corpus.dev, output=out,
                     source_scheme=corpus.scheme, dev_scheme=corpus.dev_scheme, inputs=inputs)
    seconds = time.perf_counter() - start
    test = Tagger.load(out).evaluate(corpus.test)
    return {"test_f1": test["f1"], "dev_f1": progress.best_f1, "best_epoch": progress.best_epoch,
            "epochs": progress.epoch, "train_s": round(seconds, 1)}


def choose(corpus: Corpus, model: Path, labelled: list[int], k: int, strategy: str, seed: int) -> tuple[list[int], float]:
    """The k pool sentences `strategy` picks from the unlabelled ones (their tokens only), and the seconds."""
    from tagger.api import Tagger
    from tagger.tagging.selection import select

    taken = set(labelled)
    rest = [i for i in range(len(corpus.pool)) if i not in taken]
    tagger = Tagger.load(model)
    start = time.perf_counter()
    chosen = select(tagger, (corpus.pool[i].tokens for i in rest), k, strategy, seed=seed)
    return [rest[c.index] for c in chosen], time.perf_counter() - start


def one_run(corpus: Corpus, strategy: str, seed: int, max_fraction: float, results: dict, save, work: Path,
            warm: bool = False) -> None:
    """Rounds of train -> score -> select, continued from what `results` already holds for this run. `warm`:
    each round after the first starts from the previous round's model (--init) instead of from scratch."""
    key = f"{strategy}{'-warm' if warm else ''}/{seed}"
    run = results["runs"].setdefault(key, {"strategy": strategy, "seed": seed, "rounds": [], "warm": warm})
    n = len(corpus.pool)
    if not run["rounds"]:
        rng = np.random.default_rng(seed)
        run["labelled"] = sorted(rng.choice(n, size=round(START * n), replace=False).tolist())
    k = round(STEP * n)
    def slot(r: int) -> Path:  # round r's model directory; two slots, so the last round's stays
        return work / f"{strategy}{'-warm' if warm else ''}-{seed}-{r % 2}"

    while True:
        labelled = run["labelled"]
        r = len(run["rounds"])
        scored = r and run["rounds"][-1]["labelled"] == len(labelled)
        if scored and not (slot(r - 1) / "model.safetensors").exists():  # scored, but its model is gone: again
            run["rounds"].pop()
            r, scored = r - 1, False
        if not scored:
            scores = train_round(corpus, labelled, seed, slot(r), slot(r - 1) if warm and r else None)
            tokens = sum(len(corpus.pool[i].tokens) for i in labelled)
            run["rounds"].append({"round": r, "labelled": len(labelled), "fraction": len(labelled) / n,
                                  "tokens": tokens, "token_fraction": tokens / corpus.tokens, **scores})
            print(f"{key} round {r}: {len(labelled):,} labelled ({100 * len(labelled) / n:.1f}%) test F1 "
                  f"{100 * scores['test_f1']:.2f} ({scores['epochs']} epochs, {scores['train_s']:.0f}s)",
                  file=sys.stderr, flush=True)
            save()
            r += 1
        model = slot(r - 1)
        if len(run["rounds"]) >= 1 + round((max_fraction - START) / STEP):
            return
        picked, seconds = choose(corpus, model, labelled, k, strategy, seed * 1000 + r - 1)
        run["rounds"][-1]["select_s"] = round(seconds, 2)
        run["labelled"] = sorted(labelled + picked)
        save()


def full_run(corpus: Corpus, seed: int, results: dict, save, work: Path) -> None:
    if str(seed) in results["full"]:
        return
    scores = train_round(corpus, list(range(len(corpus.pool))), seed, work / f"full-{seed}")
    results["full"][str(seed)] = scores
    print(f"full pool, seed {seed}: test F1 {100 * scores['test_f1']:.2f} ({scores['train_s']:.0f}s)",
          file=sys.stderr, flush=True)
    save()


def reached(rounds: list[dict], target: float) -> float | None:
    """The labelled fraction of the first round whose test F1 reaches `target`; None if none does."""
    return next((r["fraction"] for r in rounds if r["test_f1"] >= target), None)


def summary(results: dict) -> dict:
    """Per strategy: the mean curve over seeds, and where it reaches 95 % and 99 % of the mean full-data F1."""
    full = [v["test_f1"] for v in results["full"].values()]
    if not full:
        return {}
    reference = float(np.mean(full))
    out = {"full_f1": reference, "strategies": {}}
    by_strategy: dict[str, list[list[dict]]] = {}
    for run in results["runs"].values():
        by_strategy.setdefault(run["strategy"] + ("-warm" if run.get("warm") else ""), []).append(run["rounds"])
    for strategy, runs in by_strategy.items():
        depth = min(len(r) for r in runs)
        curve = [{"fraction": float(np.mean([r[i]["fraction"] for r in runs])),
                  "test_f1": float(np.mean([r[i]["test_f1"] for r in runs])),
                  "sd": float(np.std([r[i]["test_f1"] for r in runs]))} for i in range(depth)]
        out["strategies"][strategy] = {"seeds": len(runs), "curve": curve,
                                       "reaches_95": reached(curve, 0.95 * reference),
                                       "reaches_99": reached(curve, 0.99 * reference),
                                       "per_seed": [[reached(r, 0.95 * reference), reached(r, 0.99 * reference)]
                                                    for r in runs],
                                       "train_s": [sum(x["train_s"] for x in r[:depth]) for r in runs]}
    return out


def table(results: dict) -> str:
    """The README's table: per strategy, test F1 at some label fractions (mean ± sd over seeds), where the
    mean curve reaches 95 % and 99 % of the full-data F1, and the training time of a run."""
    s = summary(results)
    marks = (0.01, 0.05, 0.09, 0.11, 0.25, 0.49)
    head = ["strategy", "seeds", *(f"F1 at {100 * m:g} %" for m in marks), "95 % of full at", "99 % of full at",
            "tokens labelled at the last round", "training s / run"]
    from corpora.conll import read_conll

    lengths = [len(x.tokens) for x in read_conll(DATA / "train.txt", labelled=False)]
    tokens: dict[str, list[float]] = {}
    for run in results["runs"].values():  # at the curve's last round: recorded, or the run's final set
        name = run["strategy"] + ("-warm" if run.get("warm") else "")
        last = run["rounds"][len(s["strategies"][name]["curve"]) - 1]
        if "token_fraction" in last:
            tokens.setdefault(name, []).append(last["token_fraction"])
        elif last["labelled"] == len(run["labelled"]):
            tokens.setdefault(name, []).append(sum(lengths[i] for i in run["labelled"]) / sum(lengths))
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for strategy, v in s["strategies"].items():
        cells = [strategy, str(v["seeds"])]
        for m in marks:
            point = next((p for p in v["curve"] if abs(p["fraction"] - m) < 0.005), None)
            cells.append(f"{100 * point['test_f1']:.2f} ± {100 * point['sd']:.2f}" if point else "-")
        for key in ("reaches_95", "reaches_99"):
            cells.append(f"{100 * v[key]:.0f} %" if v[key] is not None else "not by "
                         f"{100 * v['curve'][-1]['fraction']:.0f} %")
        cells.append(f"{100 * np.mean(tokens[strategy]):.0f} %" if tokens.get(strategy) else "-")
        cells.append(f"{np.mean(v['train_s']):.0f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(results)
    fig, (ax, by_tokens) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    full = 100 * s["full_f1"]
    for strategy, v in s["strategies"].items():
        x = [100 * p["fraction"] for p in v["curve"]]
        y = np.array([100 * p["test_f1"] for p in v["curve"]])
        sd = np.array([100 * p["sd"] for p in v["curve"]])
        ax.plot(x, y, marker="o", ms=3, label=f"{strategy} ({v['seeds']} seed{'s' * (v['seeds'] > 1)})")
        ax.fill_between(x, y - sd, y + sd, alpha=0.15)
    for i, (key, run) in enumerate(results["runs"].items()):  # runs that recorded their tokens every round
        if all("token_fraction" in r for r in run["rounds"]):
            name = run["strategy"] + ("-warm" if run.get("warm") else "")
            colour = f"C{list(s['strategies']).index(name)}"
            by_tokens.plot([100 * r["token_fraction"] for r in run["rounds"]], [100 * r["test_f1"] for r in run["rounds"]],
                           marker="o", ms=3, color=colour, label=f"{name}, seed {run['seed']}")
    for a, what in ((ax, "labelled sentences"), (by_tokens, "labelled tokens")):
        a.axhline(full, color="black", lw=1, label=f"all labels, from scratch: {full:.2f}")
        a.axhline(0.99 * full, color="grey", lw=0.8, ls="--", label="99 % of it")
        a.set_xlabel(f"{what} (% of the CoNLL-2003 train pool)")
        a.set_ylabel("test F1")
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="lower right")
    ax.set_title("by sentences: mean over seeds, band = ±1 sd", fontsize=9)
    by_tokens.set_title("by tokens (what a person labels): the runs that recorded them", fontsize=9)
    fig.suptitle("Simulated active learning on CoNLL-2003, BiLSTM-CRF (GloVe 50d), retrained from scratch each "
                 "round; -warm: from the previous round's model (--init)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def time_select(model: Path, repeats: int = 3) -> dict:
    """Seconds to select 2 % of the whole pool (CoNLL-2003 train, tokens only) with each strategy: the best of
    `repeats` runs of `select` on a loaded model (reading the file once, outside the timing)."""
    from corpora.conll import read_conll
    from tagger.api import Tagger
    from tagger.tagging.selection import STRATEGIES, select

    tagger = Tagger.load(model)
    pool = [s.tokens for s in read_conll(DATA / "train.txt", labelled=False)]
    out = {"model": str(model), "sentences": len(pool), "k": round(STEP * len(pool)), "seconds": {}}
    for strategy in STRATEGIES:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            select(tagger, pool, out["k"], strategy)
            times.append(time.perf_counter() - start)
        out["seconds"][strategy] = round(min(times), 2)
        print(f"{strategy}: {min(times):.2f}s (best of {repeats})", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--strategies", nargs="+", default=["least-confidence", "mnlp", "random"])
    parser.add_argument("--max-fraction", type=float, default=0.25)
    parser.add_argument("--warm", nargs="*", default=[], help="strategies also run with warm-started rounds")
    parser.add_argument("--full", action="store_true", help="train the recipe on the whole pool (per seed)")
    parser.add_argument("--dev-limit", type=int, default=1000, help="the first N dev sentences pick the "
                        "epoch (a small dev set, as a labelling project has; 0: all 3,250)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-active-learning.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tagger-active-learning"))
    parser.add_argument("--plot", type=Path, help="draw the curves from --out into this PNG and exit")
    parser.add_argument("--time-select", type=Path, metavar="MODEL", help="time selecting from the whole pool "
                        "with MODEL (each strategy, best of 3) and exit")
    args = parser.parse_args()
    if args.time_select:
        print(json.dumps(time_select(args.time_select)))
        return
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}, "full": {}}
    if args.plot:
        plot(results, args.plot)
        print(json.dumps(summary(results), indent=1))
        print(table(results), file=sys.stderr)
        return
    if not DATA.is_dir():
        raise SystemExit(f"no CoNLL-2003 at {DATA} (set TAGGER_DATA)")
    results["recipe"] = {**RECIPE, "embeddings": GLOVE.name, "min_steps": MIN_STEPS, "epochs": [MIN_EPOCHS, MAX_EPOCHS],
                         "start": START, "step": STEP, "dev_limit": args.dev_limit, "retrain": "from scratch"}

    def save() -> None:
        tmp = args.out.with_suffix(".tmp")
        text = json.dumps(results, indent=1)  # the labelled indices on one line each:
        flat = re.sub(r"\[\n\s+(\d[\d,\n\s]*?)\n\s+\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
        tmp.write_text(flat)
        tmp.replace(args.out)

    corpus = Corpus(args.dev_limit or None)
    if args.full:
        for seed in args.seeds:
            full_run(corpus, seed, results, save, args.work)
    for seed in args.seeds:
        for strategy in args.strategies:
            one_run(corpus, strategy, seed, args.max_fraction, results, save, args.work)
    for seed in args.seeds:
        for strategy in args.warm:
            one_run(corpus, strategy, seed, args.max_fraction, results, save, args.work, warm=True)
    print(json.dumps(summary(results), indent=1))


if __name__ == "__main__":
    main()
