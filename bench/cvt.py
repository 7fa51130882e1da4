"""Cross-view training on unlabelled text (`tagger train --unlabeled`) on CoNLL-2003 (issue 28).

    python bench/cvt.py --sizes all --text none reuters --seeds 1 2 3 [--ratio 1.0] [--jobs 2]
    python bench/cvt.py --sizes 1000 3000 --text none reuters --seeds 1 2 3
    python bench/cvt.py --cost --text none reuters reuters+wiki --models M1 M2 ...   (alone on the machine)

For each training-set size (the first N sentences of train.txt, or all of it) and each unlabelled text
(none; reuters: the shared Reuters-21578 text; reuters+wiki: with the Wikipedia sample too), the recipe
(configs/conll2003.toml, GloVe-50d, without its time cap: F1 must not depend on the machine's load) trains per
seed through bench/conll2003.py, which scores test once at the end with `tagger evaluate`. Dev picks each
run's epoch and stops it (patience), or --epochs caps every setting alike. The subsets are written under
runs/cvt/ (never into the repository: the corpus may not be redistributed). Prints one JSON object, also
written to --out. --jobs 2 trains two seeds at once, one core each: F1 is unaffected (no time cap binds at
these sizes), the timings are not the machine's alone; measure speed with --jobs 1.

--cost measures what the unlabelled text costs, one command at a time: the second of two training epochs on
all of train.txt for each text (seconds, labelled tokens/s, unlabelled sentences), and the tagging speed of
each model in --models (bench/predict.py's model_alone: encoding, network and Viterbi on CoNLL test).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
TEXTS = {"none": [], "reuters": ["reuters21578.txt.gz"],
         "reuters+wiki": ["reuters21578.txt.gz", "wikipedia-en-2015-sample.txt.gz"]}


def subset(data: Path, size: str, work: Path) -> Path:
    """A folder with train.txt cut to its first `size` sentences (-DOCSTART- lines kept), valid and test."""
    if size == "all":
        return data
    folder = work / f"conll2003-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    kept, sentences, sentence = [], 0, False
    for line in (data / "train.txt").read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.strip():
            sentences += sentence
            sentence = False
            if sentences >= int(size):
                break
        elif not line.startswith("-DOCSTART-"):
            sentence = True
        kept.append(line)
    (folder / "train.txt").write_text("".join(kept), encoding="utf-8")
    for name in ("valid.txt", "test.txt"):
        if not (folder / name).exists():
            (folder / name).symlink_to(data / name)
    return folder


def cost(args, work: Path) -> dict:
    """Seconds per training epoch with each unlabelled text, and tagging tokens/s of the given models."""
    from predict import model_alone, test_sentences  # bench/ is on sys.path when a script in it runs

    result: dict = {"epochs": {}, "tagging": {}}
    for text in args.text:
        out = work / f"cost-{text}"
        extra = [x for f in TEXTS[text] for x in ("--unlabeled", str(Path(args.raw) / f))]
        subprocess.run([sys.executable, "-m", "cli.main", "train", f"{args.data}/train.txt", "--dev",
                        f"{args.data}/valid.txt", "--embeddings", str(SHARED / "embeddings/glove.6B.50d.txt.gz"),
                        "--config", str(ROOT / "configs/conll2003.toml"), "--epochs", "2", "-o", str(out), "--force",
                        "--quiet", *extra], check=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
        second = json.loads((out / "metrics.jsonl").read_text().splitlines()[1])
        result["epochs"][text] = {k: second.get(k) for k in ("seconds", "tokens_per_s", "unlabeled_sentences",
                                                             "eval_seconds")}
    sentences = test_sentences(Path(args.data))
    for model in args.models:
        result["tagging"][model] = model_alone(Path(model), sentences, 256)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "data/conll2003"))
    parser.add_argument("--raw", default=str(SHARED / "data/raw-en"))
    parser.add_argument("--sizes", nargs="+", default=["all"], help="training sentences: numbers or all")
    parser.add_argument("--text", nargs="+", default=["none", "reuters"], choices=list(TEXTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--ratio", type=float, help="unlabeled_ratio: unlabelled batches a labelled one (default: "
                        "the library's)")
    parser.add_argument("--weight", type=float, help="unlabeled_weight: the cross-view loss's weight (default: the "
                        "library's)")
    parser.add_argument("--epochs", type=int, help="the epoch cap, for every setting alike (default: the recipe's)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--work", default=str(ROOT / "runs/cvt"))
    parser.add_argument("--out", default=str(ROOT / "bench/results-cvt.json"))
    parser.add_argument("--cost", action="store_true", help="time an epoch per text and tag with --models")
    parser.add_argument("--models", nargs="*", default=[], help="--cost: model directories to time tagging with")
    args = parser.parse_args()
    work = Path(args.work)
    if args.cost:
        print(json.dumps(cost(args, work), indent=2))
        return
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for size in args.sizes:
        data = subset(Path(args.data), size, work)
        for text in args.text:
            name = f"{size}/{text}" + (f"/ratio{args.ratio:g}" if text != "none" and args.ratio else "") \
                + (f"/weight{args.weight:g}" if text != "none" and args.weight else "")
            out = work / name.replace("/", "-")
            out.mkdir(parents=True, exist_ok=True)
            recipe = out / "recipe.toml"  # the recipe; its [bench] table sets the ratio and lifts the time cap
            settings = {"unlabeled_ratio": args.ratio, "unlabeled_weight": args.weight, "max_minutes": 0.0}
            recipe.write_text((ROOT / "configs/conll2003.toml").read_text(encoding="utf-8") + "\n[bench]\n" +
                              "".join(f"{k} = {v}\n" for k, v in settings.items() if v is not None), encoding="utf-8")
            extra = [x for f in TEXTS[text] for x in ("--unlabeled", str(Path(args.raw) / f))]
            extra += ["--epochs", str(args.epochs)] if args.epochs else []
            subprocess.run([sys.executable, str(ROOT / "bench/conll2003.py"), "--data", str(data), "--out", str(out),
                            "--config", str(recipe), "--jobs", str(args.jobs), "--seeds", *map(str, args.seeds),
                            "--extra", *extra], check=True, stdout=subprocess.DEVNULL)
            results[name] = json.loads((out / "result.json").read_text()) | {"epoch_cap": args.epochs or "recipe's",
                                                                              "unlabeled_ratio": args.ratio,
                                                                              "unlabeled_weight": args.weight}
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
            print(name, json.dumps(results[name]["test_f1"]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
