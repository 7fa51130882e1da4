"""Accuracy on CoNLL-2003 (issue 34): the recipe's models (the teachers), their ensemble (`tagger ensemble`),
and students distilled from the ensemble (`tagger train --teacher`, with and without raw text).

    python bench/accuracy.py --seeds 1 2 3 --weights 1 3 --text none --jobs 2            # trains; dev only
    python bench/accuracy.py --seeds 1 2 3 --weights 1 --text none reuters --test         # + test, read once
    python bench/accuracy.py --seeds 1 2 3 --weights 1 --text none reuters --speed        # ALONE on the machine
    python bench/accuracy.py --seeds 1 2 3 4 5 --lm runs/lm/reuters --lm-seeds 1 2 3     # + a character LM

The recipe is configs/conll2003.toml without its time cap (F1 must not depend on the machine's load), GloVe
6B 50d, trained on train.txt; dev (valid.txt) picks each run's epoch and ends it (patience), and every choice
(the soft loss's weight, the raw text) is read off dev. The ensemble is of the teachers of --seeds; the
students learn from the ensemble of --teacher-seeds (default: the same), as --teacher ENSEMBLE with
teacher_weight W, with their own seeds (--student-seeds). Finished runs under --work are reused, so a later call with --test only
evaluates; --test scores every model on test.txt once. Runs train --jobs at a time, one core and one thread
each: F1 does not depend on that, seconds do.

--speed measures what each method costs, one command at a time, so run it alone on the machine: the second
of two training epochs of the recipe, of a student, and of a student with raw text (seconds), and each
model's tagging speed on test (bench/predict.py's model_alone: encoding, network, Viterbi; tokens/s).
Writes --out (JSON) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "bench"))

from runcli import on_cores, run  # noqa: E402

TEXTS = {"none": [], "reuters": ["reuters21578.txt.gz"],
         "reuters+wiki": ["reuters21578.txt.gz", "wikipedia-en-2015-sample.txt.gz"]}
TAGGER = [sys.executable, "-m", "cli.main"]


def recipe(work: Path, name: str, **settings) -> Path:
    """The recipe with its time cap lifted and `settings` set, as a TOML file under `work`."""
    path = work / f"{name}.toml"
    values = {"max_minutes": 0.0, **settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((ROOT / "configs/conll2003.toml").read_text(encoding="utf-8") + "\n[bench]\n" +
                    "".join(f"{k} = {v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def finished(model: Path) -> bool:
    """Whether a training ran to its end there (train records its data in config.json last)."""
    try:
        return "training" in json.loads((model / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def train(args, out: Path, seed: int, config: Path, extra: list[str], core: int | None) -> dict:
    """Train one model (unless a finished one is there) and summarise its metrics.jsonl."""
    if not finished(out) and not args.no_train:
        run(TAGGER + ["train", f"{args.data}/train.txt", "--dev", f"{args.data}/valid.txt", "--embeddings",
                      args.embeddings, "--config", str(config), "--seed", str(seed), "--threads", "1", "--output",
                      str(out), "--force", "--quiet", *extra], core)
    return summary(out, seed) | {"finished": finished(out)}


def summary(out: Path, seed: int) -> dict:
    """Best dev F1 and epoch, epochs run, seconds per epoch and training minutes from metrics.jsonl."""
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = max(epochs, key=lambda m: m["dev_f1"])
    return {"model": str(out), "seed": seed, "dev_f1": 100 * best["dev_f1"], "best_epoch": best["epoch"],
            "epochs": len(epochs), "seconds_per_epoch": statistics.mean(m["seconds"] for m in epochs),
            "train_minutes": sum(m["seconds"] + m["eval_seconds"] for m in epochs) / 60,
            "unlabeled_sentences": epochs[-1].get("unlabeled_total", 0)}


def evaluate(model: Path, split: str, args) -> float:
    """Entity F1 (0-100) of a model on valid.txt or test.txt."""
    out, _ = run(TAGGER + ["evaluate", str(model), f"{args.data}/{split}.txt", "--json"])
    return 100 * json.loads(out)["f1"]


def teachers(args, work: Path) -> list[dict]:
    config = recipe(work, "recipe")
    return on_cores(lambda seed, core: train(args, work / f"teacher-seed{seed}", seed, config, [], core),
                    args.seeds, args.jobs)


def ensemble(args, work: Path, members: list[dict], prefix: str = "ensemble") -> dict:
    out = work / f"{prefix}-{'-'.join(str(m['seed']) for m in members)}"
    if not (out / "config.json").is_file():
        run(TAGGER + ["ensemble", *(m["model"] for m in members), "--output", str(out), "--force"])
    return {"model": str(out), "seeds": [m["seed"] for m in members], "dev_f1": evaluate(out, "valid", args)}


def student_runs(args, specs: list[str] | None) -> list[tuple[float, str, int]]:
    """(teacher_weight, raw text, seed) of each student: the specs' W:TEXT pairs (each with every
    --student-seeds) or W:TEXT:SEED triples, else every --weights x --text x --student-seeds."""
    if not specs:
        return [(w, text, seed) for w in args.weights for text in args.text for seed in args.student_seeds]
    runs = []
    for w, text, *seed in (p.split(":") for p in specs):
        runs += [(float(w), text, int(s)) for s in (seed or args.student_seeds)]
    return runs


def students(args, work: Path, teacher: Path, specs: list[str] | None) -> list[dict]:
    """Each (weight, raw text, seed) student distilled from `teacher`."""
    def one(item: tuple[float, str, int], core: int | None) -> dict:
        weight, text, seed = item
        config = recipe(work, f"student-w{weight:g}", teacher_weight=weight)
        extra = ["--teacher", str(teacher)] + [x for f in TEXTS[text] for x in ("--unlabeled", f"{args.raw}/{f}")]
        out = work / f"student-{teacher.name}-w{weight:g}-{text}-seed{seed}"
        result = train(args, out, seed, config, extra, core)
        return result | {"teacher_weight": weight, "text": text}

    return on_cores(one, student_runs(args, specs), args.jobs)


def lm_models(args, work: Path) -> list[dict]:
    """The recipe reading a `tagger lm` character LM (`--embeddings lm:DIR` beside GloVe), for --lm-seeds."""
    if not args.lm:
        return []
    config, name = recipe(work, "recipe"), Path(args.lm).name
    return on_cores(lambda seed, core: train(args, work / f"lm-{name}-seed{seed}", seed, config,
                                             ["--embeddings", f"lm:{args.lm}"], core) | {"lm": args.lm},
                    args.lm_seeds, args.jobs)


def speed(args, work: Path, models: list[str]) -> dict:
    """Seconds of a second training epoch per method, and tagging tokens/s per model (alone on the machine)."""
    from predict import model_alone, test_sentences

    teacher = json.loads((Path(args.out)).read_text())["students_teacher"]["model"]
    weight = args.weights[0]
    student = recipe(work, f"student-w{weight:g}", teacher_weight=weight)
    methods = {"recipe": (recipe(work, "recipe"), []), "student": (student, ["--teacher", teacher]),
               "student + reuters": (student, ["--teacher", teacher, "--unlabeled",
                                               f"{args.raw}/reuters21578.txt.gz"])}
    if args.lm:
        methods["recipe + LM"] = (recipe(work, "recipe"), ["--embeddings", f"lm:{args.lm}"])
    result: dict = {"epoch_seconds": {}, "tokens_per_s": {}}
    for name, (config, extra) in methods.items():
        out = work / f"cost-{name.replace(' + ', '-')}"
        run(TAGGER + ["train", f"{args.data}/train.txt", "--dev", f"{args.data}/valid.txt", "--embeddings",
                      args.embeddings, "--config", str(config), "--epochs", "2", "--threads", "1", "-o", str(out),
                      "--force", "--quiet", *extra], 0)
        result["epoch_seconds"][name] = json.loads((out / "metrics.jsonl").read_text().splitlines()[1])["seconds"]
    if args.lm:  # the LM's own training speed: one minute of `tagger lm` with its settings, one thread
        options = json.loads((Path(args.lm) / "config.json").read_text())["options"]
        out = work / "cost-lm"
        run(TAGGER + ["lm", f"{args.raw}/reuters21578.txt.gz", "--output", str(out), "--hidden", str(options["hidden"]),
                      "--char-dim", str(options["char_dim"]), "--max-minutes", "1", "--max-chars", "3000000",
                      "--threads", "1", "--force", "--quiet"], 0)
        result["lm_chars_per_s"] = json.loads((out / "config.json").read_text())["training"]["chars_per_s"]
    sentences = test_sentences(Path(args.data))
    for model in models:
        result["tokens_per_s"][model] = model_alone(Path(model), sentences, 256)["with_encoding_tokens_per_s"]
    return result


def table(result: dict) -> str:
    """The results as a Markdown table: dev F1 (and test F1 when read), mean ± sd over seeds."""
    rows = [("teacher (recipe)", result["teachers"]), ("ensemble", [result["ensemble"]])]
    if result["students_teacher"]["model"] != result["ensemble"]["model"]:
        rows.append(("the students' teacher (ensemble)", [result["students_teacher"]]))
    groups: dict = {}
    for s in result["students"]:
        groups.setdefault(f"student w={s['teacher_weight']:g} text={s['text']}", []).append(s)
    rows += list(groups.items())
    if result.get("lm"):
        rows.append((f"recipe + LM {Path(result['lm'][0]['lm']).name}", result["lm"]))
    if result.get("lm_ensemble"):
        rows.append(("ensemble of the LM models", [result["lm_ensemble"]]))
        rows += [(f"student of the LM ensemble w={s['teacher_weight']:g}", [s]) for s in result["lm_students"]]
    lines = ["| model | seeds | dev F1 | test F1 |", "|---|---|---|---|"]
    for name, runs in rows:
        seeds = " ".join(str(r.get("seed", "+".join(map(str, r.get("seeds", []))))) for r in runs)
        lines.append(f"| {name} | {seeds} | {_mean(runs, 'dev_f1')} | {_mean(runs, 'test_f1')} |")
    return "\n".join(lines)


def _mean(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs if key in r]
    if not values:
        return "-"
    sd = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{sd} ({' '.join(f'{v:.2f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED / "data/conll2003"))
    parser.add_argument("--embeddings", default=str(SHARED / "embeddings/glove.6B.50d.txt.gz"))
    parser.add_argument("--raw", default=str(SHARED / "data/raw-en"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="the teachers' seeds")
    parser.add_argument("--teacher-seeds", type=int, nargs="+", help="the teachers whose ensemble teaches the "
                        "students (default: all of --seeds)")
    parser.add_argument("--student-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0], help="teacher_weight values")
    parser.add_argument("--text", nargs="+", default=["none"], choices=list(TEXTS), help="raw text of students")
    parser.add_argument("--students", nargs="+", metavar="W:TEXT", help="students as weight:text pairs or "
                        "weight:text:seed triples (e.g. 1:none 3:none:1 3:none:2 1:reuters) instead of every "
                        "--weights x --text")
    parser.add_argument("--lm", help="a `tagger lm` directory: also train the recipe with --embeddings lm:LM")
    parser.add_argument("--lm-seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--lm-teacher-seeds", type=int, nargs="+", help="the LM models whose ensemble teaches "
                        "--lm-students (default: all of --lm-seeds)")
    parser.add_argument("--lm-students", nargs="+", metavar="W:TEXT", help="students (as --students) of the LM "
                        "models' ensemble: plain models, no LM")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once, one core and thread each")
    parser.add_argument("--no-train", action="store_true", help="train nothing: report the runs under --work as "
                        "they are (a run stopped early is marked \"finished\": false)")
    parser.add_argument("--test", action="store_true", help="score every model on test.txt (once, at the end)")
    parser.add_argument("--speed", action="store_true", help="time training epochs and tagging (run it alone)")
    parser.add_argument("--work", default=str(ROOT / "runs/accuracy"))
    parser.add_argument("--out", default=str(ROOT / "bench/results-accuracy.json"))
    args = parser.parse_args()
    work = Path(args.work)
    if args.speed:
        done = json.loads(Path(args.out).read_text())
        models = [r["model"] for r in [*done["teachers"], done["ensemble"], *done["students"], *done.get("lm", []),
                                       *([done["lm_ensemble"], *done["lm_students"]] if "lm_ensemble" in done else [])]]
        done["speed_alone"] = speed(args, work, models)
        Path(args.out).write_text(json.dumps(done, indent=2) + "\n")
        print(json.dumps(done["speed_alone"], indent=2))
        return
    found = teachers(args, work)
    ens = ensemble(args, work, found)
    chosen = [t for t in found if t["seed"] in (args.teacher_seeds or args.seeds)]
    teacher = ens if len(chosen) == len(found) else ensemble(args, work, chosen)
    result = {"commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip(),
              "teachers": found, "ensemble": ens, "students_teacher": teacher,
              "students": students(args, work, Path(teacher["model"]), args.students), "lm": lm_models(args, work)}
    if result["lm"] and args.lm_students:  # students of the LM models' ensemble: one model's speed, no LM
        chosen = [m for m in result["lm"] if m["seed"] in (args.lm_teacher_seeds or args.lm_seeds)]
        result["lm_ensemble"] = ensemble(args, work, chosen, "ensemble-lm")
        result["lm_students"] = students(args, work, Path(result["lm_ensemble"]["model"]), args.lm_students)
    if args.test:
        for r in [*result["teachers"], result["ensemble"], *result["students"], *result["lm"],
                  *([result["lm_ensemble"], *result["lm_students"]] if "lm_ensemble" in result else [])] + \
                 ([teacher] if teacher is not ens else []):
            r["test_f1"] = evaluate(Path(r["model"]), "test", args)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
