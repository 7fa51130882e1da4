"""Cold start: the wall time of `tagger predict MODEL` tagging one sentence from standard input, a fresh
process each time, median of --runs (issue 35's target: 0.5 s or less with the recipe's GloVe-50d model).

    python bench/cold_start.py --model models/conll2003      # the recipe's model (configs/conll2003.toml)
    python bench/cold_start.py                               # the sample model (`make demo`'s models/sample-en)

Without --model the sample model is used, trained first as `make demo` trains it when it is missing. Each run
is the console script itself (the .venv's `tagger`), so interpreter start, imports, model loading, tagging
and exit all count. `--importtime` adds the modules that took longest to import in one extra run
(python -X importtime), to see where the time goes. Prints one JSON object. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
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


def one_run(model: Path) -> float:
    """Seconds from starting `tagger predict MODEL` to its exit, one sentence on standard input."""
    started = time.perf_counter()
    done = subprocess.run([str(TAGGER), "predict", str(model)], input=SENTENCE, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not done.stdout.startswith('{"text"'):
        raise SystemExit(f"tagger predict failed (exit {done.returncode}): {done.stderr.strip()}")
    return seconds


def slowest_imports(model: Path, top: int = 15) -> list[dict]:
    """The `top` modules with the largest cumulative import time in one `tagger predict` run (microseconds)."""
    code = "import sys; from cli.main import main; sys.argv = ['tagger', 'predict', sys.argv[1]]; main()"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code, str(model)], input=SENTENCE,
                          capture_output=True, text=True, cwd=ROOT)
    rows = re.findall(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", done.stderr)
    found = [{"module": name, "cumulative_us": int(total), "depth": len(indent) // 2}
             for _, total, indent, name in rows]
    return sorted(found, key=lambda r: -r["cumulative_us"])[:top]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="model directory (default: the sample model, models/sample-en)")
    p.add_argument("--runs", type=int, default=5, help="cold starts to time (default 5)")
    p.add_argument("--importtime", action="store_true", help="also list the slowest imports of one run")
    args = p.parse_args()
    model = args.model or sample_model()
    one_run(model)  # the first run reads the model into the page cache: a cold interpreter, not a cold disk
    seconds = [one_run(model) for _ in range(args.runs)]
    result = {"model": str(model), "runs": args.runs, "seconds": [round(s, 3) for s in seconds],
              "median_seconds": round(statistics.median(seconds), 3), "cpus": len(os.sched_getaffinity(0))}
    if args.importtime:
        result["slowest_imports"] = slowest_imports(model)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
