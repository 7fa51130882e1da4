"""Cold start: the wall time of `tagger predict MODEL` tagging one sentence from standard input, a fresh
process each time, median of --runs (issue 35's target: 0.5 s or less with the recipe's GloVe-50d model).

    python bench/cold_start.py --model runs/accuracy/teacher-seed1 --importtime   # the recipe's model
    python bench/cold_start.py                               # the sample model (`make demo`'s models/sample-en)

Without --model the sample model is used, trained first as `make demo` trains it when it is missing. Each run
is the console script itself (the .venv's `tagger`), so interpreter start, imports, model loading, tagging
and exit all count. Two settings, runs interleaved:

- "cached": bytecode cached, as an installed package runs (a `pip install` compiles it; here a private
  PYTHONPYCACHEPREFIX that the warm-up run fills, so the checkout gets no __pycache__);
- "compiling": PYTHONDONTWRITEBYTECODE=1, every module of ours compiled from source at each start (how the
  sessions' environment runs the checkout, and so what earlier figures measured).

Each gives the median and all wall times, and the median CPU time (user + system) of the process: on a busy
machine wall time waits for a core, CPU time much less, so it is the figure to compare changes by there.
`--importtime` adds one `python -X importtime` run: the modules imported, the slowest ones and the import
time by top-level package. Prints one JSON object. Run it alone on the machine for the README's figure.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_MODEL = ROOT / "models" / "sample-en"
SENTENCE = "Ilse Yilmaz, a spokesman for Quantix Labs, said shares of Helix Systems rose 3 percent in Stonehaven.\n"
TAGGER = Path(sys.executable).with_name("tagger")  # the console script beside this interpreter


def sample_model() -> Path:
    """models/sample-en, trained as `make demo` trains it if it is not there yet."""
    if not (SAMPLE_MODEL / "config.json").is_file():
        subprocess.run([str(TAGGER), "train", "samples/en/train.txt", "--dev", "samples/en/dev.txt", "--output",
                        str(SAMPLE_MODEL), "--config", "configs/sample.toml", "--force", "--quiet"], cwd=ROOT,
                       check=True)
    return SAMPLE_MODEL


def environments(cache_dir: str) -> dict[str, dict[str, str]]:
    """The two settings' environments: bytecode cached in `cache_dir`, or compiled at every start."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    return {"cached": {**base, "PYTHONPYCACHEPREFIX": cache_dir},
            "compiling": {**base, "PYTHONDONTWRITEBYTECODE": "1"}}


def one_run(model: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) from starting `tagger predict MODEL` to its exit, one sentence on stdin."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([str(TAGGER), "predict", str(model)], input=SENTENCE, capture_output=True, text=True,
                          env=env)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not done.stdout.startswith('{"text"'):
        raise SystemExit(f"tagger predict failed (exit {done.returncode}): {done.stderr.strip()}")
    return seconds, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def timed(model: Path, runs: int, envs: dict[str, dict[str, str]]) -> dict[str, dict]:
    """`runs` cold starts in each setting, interleaved, after one warm-up run each (the page cache, and the
    bytecode cache of "cached"): the median and every wall time, and the median CPU time."""
    for env in envs.values():
        one_run(model, env)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in envs}
    for _ in range(runs):
        for name, env in envs.items():
            times[name].append(one_run(model, env))
    return {name: {"median_seconds": round(statistics.median(w for w, _ in pairs), 3),
                   "seconds": [round(w, 3) for w, _ in pairs],
                   "median_cpu_seconds": round(statistics.median(c for _, c in pairs), 3)}
            for name, pairs in times.items()}


def import_profile(model: Path, env: dict[str, str], top: int = 15) -> dict:
    """One `tagger predict` run under `python -X importtime`: how many modules it imported, the `top` slowest
    (cumulative microseconds) and the self time summed by top-level package, largest first."""
    code = "import sys; from cli.main import main; sys.argv = ['tagger', 'predict', sys.argv[1]]; main()"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, str(model)], input=SENTENCE,
                          capture_output=True, text=True, cwd=ROOT, env=env)
    rows = re.findall(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", done.stderr)
    slowest = sorted(rows, key=lambda r: -int(r[1]))[:top]
    packages: Counter[str] = Counter()
    for own, _, _, name in rows:
        packages[name.split(".")[0]] += int(own)
    return {"modules_imported": len(rows),
            "slowest_imports": [{"module": name, "cumulative_us": int(total), "depth": len(indent) // 2}
                                for _, total, indent, name in slowest],
            "self_us_by_package": dict(packages.most_common(top))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="model directory (default: the sample model, models/sample-en)")
    p.add_argument("--runs", type=int, default=5, help="cold starts to time in each setting (default 5)")
    p.add_argument("--importtime", action="store_true", help="also profile the imports of one run")
    args = p.parse_args()
    model = args.model or sample_model()
    with tempfile.TemporaryDirectory(prefix="cold-start-pycache-") as cache_dir:
        envs = environments(cache_dir)
        result = {"model": str(model), "runs": args.runs, "cpus": len(os.sched_getaffinity(0)),
                  **timed(model, args.runs, envs)}
        if args.importtime:
            result["imports"] = import_profile(model, envs["cached"])
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
