"""Tokens/s of onnxruntime on an exported model against the numpy engine, and the files' sizes.

    flock /tmp/cpu.lock python bench/onnx_speed.py --model /tmp/onnx-conll [--quantize] \
        [--out bench/results-onnx-speed.json]

Exports MODEL (`tagger export --to onnx`) into a temporary directory and tags the CoNLL-2003 test sentences
with the numpy engine (one BLAS thread, as `Tagger` runs it) and with onnxruntime on one intra-op thread and on
its default (one per core). Two timings each, best of --repeat runs after a warm-up:

- end to end: tokens -> tags (`Tagger.model_tags`: the project's encoder, mixed-length batches of 256, the
  engine); the export runs the same encoder, so the difference is the engine;
- engine only: the already encoded batches through the network and Viterbi (`engine.tag`).

Also checks that both engines give the same tags (sentences that differ: must be 0) and their test F1.
--quantize adds onnxruntime's int8 dynamic quantisation of model.onnx (weights of its MatMuls and LSTMs),
with its F1 change.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's matrix products on one thread, as Tagger limits them


def best_time(fn, repeat: int) -> float:
    """Seconds of the fastest of `repeat` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def sizes(directory: Path, names: list[str]) -> dict[str, int]:
    return {name: (directory / name).stat().st_size for name in names if (directory / name).exists()}


def measure(name: str, tagger, sentences, batches, tokens: int, repeat: int) -> dict:
    end_to_end = best_time(lambda: tagger.model_tags(sentences), repeat)
    engine = best_time(lambda: [tagger.engine.tag(b) for b in batches], repeat)
    row = {"engine": name, "end_to_end_tokens_per_s": round(tokens / end_to_end),
           "engine_only_tokens_per_s": round(tokens / engine), "end_to_end_s": round(end_to_end, 3),
           "engine_only_s": round(engine, 3)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("/tmp/onnx-conll"))
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/conll2003")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quantize", action="store_true", help="also int8 dynamic quantisation (onnxruntime)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args()

    from corpora.conll import read_conll
    from tagger.api import Tagger
    from tagger.encode import collate, sorted_batches
    from tagger.export import export_onnx
    from tagger.export.runtime import OnnxTagger
    from tagger.tagging import pipeline

    test = [s for s in read_conll(args.data / "test.txt") if s.tokens]
    sentences = [list(s.tokens) for s in test]
    tokens = sum(map(len, sentences))
    reference = Tagger.load(args.model)
    encoded = [reference.encode(s) for s in sentences]
    order = sorted_batches(list(map(len, encoded)), pipeline.BATCH_SIZE)
    batches = [collate([encoded[i] for i in ids]) for ids in order]
    workdir = Path(tempfile.mkdtemp(prefix="onnx-speed-"))
    start = time.perf_counter()
    export_onnx(args.model, workdir / "export")
    export_s = time.perf_counter() - start
    results = {"model": str(args.model), "sentences": len(sentences), "tokens": tokens, "cores": os.cpu_count(),
               "export_s": round(export_s, 2), "rows": [],
               "model_dir_bytes": sizes(args.model, ["model.safetensors", "vocab.json", "config.json"]),
               "export_bytes": sizes(workdir / "export", ["model.onnx", "lookup.onnx", "preprocess.json"])}
    print(json.dumps({k: v for k, v in results.items() if k != "rows"}), flush=True)

    import onnxruntime

    results["onnxruntime"] = onnxruntime.__version__
    expected = reference.model_tags(sentences)
    results["rows"].append(measure("numpy, 1 thread", reference, sentences, batches, tokens, args.repeat))
    results["f1"] = f1(reference, test)
    for label, threads in (("onnxruntime, 1 thread", 1), ("onnxruntime, default threads", 0)):
        onnx_tagger = OnnxTagger.load(workdir / "export", threads=threads)
        row = measure(label, onnx_tagger, sentences, batches, tokens, args.repeat)
        row["sentences_tagged_differently"] = sum(a != b for a, b in zip(onnx_tagger.model_tags(sentences), expected))
        results["rows"].append(row)
    if args.quantize:
        results["int8"] = quantized(workdir / "export", test, sentences, batches, tokens, args.repeat, results["f1"])
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def f1(tagger, test) -> float:
    return round(100 * tagger.evaluate(test)["f1"], 2)


def quantized(export: Path, test, sentences, batches, tokens: int, repeat: int, f1_float: float) -> dict:
    """int8 dynamic quantisation of model.onnx: its size, F1 and speed on one thread."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from tagger.export.runtime import OnnxTagger

    int8 = export.parent / "int8"
    shutil.copytree(export, int8)
    logging.getLogger().setLevel(logging.ERROR)  # the quantiser warns about every non-float tensor it skips
    quantize_dynamic(export / "model.onnx", int8 / "model.onnx", weight_type=QuantType.QInt8)
    tagger = OnnxTagger.load(int8, threads=1)
    row = measure("onnxruntime int8, 1 thread", tagger, sentences, batches, tokens, repeat)
    row["model_onnx_bytes"] = (int8 / "model.onnx").stat().st_size
    row["f1"] = f1(tagger, test)
    row["f1_change"] = round(row["f1"] - f1_float, 2)
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
