"""How long a model with a lexicon takes to load: its trie as saved (lexicon.safetensors) against the same
model as saved before the trie was kept (lexicon.txt only: the trie is built on loading).

    flock /tmp/cpu.lock python bench/lexicon_load.py --model M [--repeat 7] [--out results.json]

M: a model trained with a lexicon, e.g. `tagger train samples/zh/train.txt --dev samples/zh/dev.txt -o M
--lexicon jieba --epochs 1`. Prints JSON: for each layout, `Tagger.load` in this process (min and median of
--repeat runs after one warm-up) and a cold start in a fresh interpreter (`tagger info M`'s import + load).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tagger import store  # noqa: E402
from tagger.api import Tagger  # noqa: E402

COLD = "import sys, time; t = time.perf_counter(); from tagger.api import Tagger; Tagger.load(sys.argv[1]); " \
       "print(time.perf_counter() - t)"


def without_trie(model: Path, out: Path) -> Path:
    """A copy of `model` as saved before lexicon.safetensors: lexicon.txt alone, config.json without its sum."""
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("checkpoint*", store.LEXICON_TRIE))
    meta = json.loads((model / "config.json").read_text(encoding="utf-8"))
    meta["sha256"].pop(store.LEXICON_TRIE, None)
    (out / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def timings(model: Path, repeat: int) -> dict:
    Tagger.load(model)  # warm-up: the files in the page cache, the modules imported
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        Tagger.load(model)
        runs.append(time.perf_counter() - start)
    cold = [float(subprocess.run([sys.executable, "-c", COLD, str(model)], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout) for _ in range(3)]
    return {"load_s_min": round(min(runs), 4), "load_s_median": round(statistics.median(runs), 4),
            "cold_import_and_load_s_median": round(statistics.median(cold), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    meta = json.loads((args.model / "config.json").read_text(encoding="utf-8"))
    if store.LEXICON_TRIE not in meta.get("sha256", {}):
        sys.exit(f"{args.model} has no {store.LEXICON_TRIE}: train or save it with this version")
    lexicon = Tagger.load(args.model).vocab.lexicon
    with tempfile.TemporaryDirectory() as tmp:
        older = without_trie(args.model, Path(tmp) / "older")
        result = {"model": str(args.model), "lexicon_words": len(lexicon), "trie_nodes": len(lexicon.nodes),
                  "bytes": {name: (args.model / name).stat().st_size for name in (store.LEXICON, store.LEXICON_TRIE)},
                  "trie_built_on_loading": timings(older, args.repeat),
                  "trie_as_saved": timings(args.model, args.repeat)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
