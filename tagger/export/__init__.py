"""Doors out for a trained model: ONNX (`tagger export MODEL --to onnx DIR`), with the spec of its inputs.

    onnx.py        model.onnx (the network and the CRF's Viterbi) and lookup.onnx (string -> id), built from
                   tagger/tensors.py's tensors and tagger/tagging/engine.py's maths, not traced
    preprocess.py  preprocess.json: vocabularies, every token -> id rule the graph leaves to its caller, and
                   test vectors (tokens -> ids -> tags) computed by the numpy engine; export_onnx adds the
                   graphs' SHA-256 ("sha256"), which runtime.py checks at load
    runtime.py     an onnxruntime-backed tagger that reads only model.onnx and preprocess.json

onnx and onnxruntime are optional (pip install 'bilstm-tagger[onnx]'): they are imported where used.
"""
from __future__ import annotations

import os

MODEL_FILE = "model.onnx"
LOOKUP_FILE = "lookup.onnx"
PREPROCESS_FILE = "preprocess.json"
ONNX_HINT = "pip install 'bilstm-tagger[onnx]'"
TOLERANCE = 1e-4  # emissions and path scores: onnxruntime's float32 sums against numpy's


def export_onnx(model: "str | os.PathLike", output: "str | os.PathLike", force: bool = False) -> dict:
    """Write model.onnx, lookup.onnx and preprocess.json (with the graphs' SHA-256, checked at load) of the
    model directory `model` into `output`, then tag preprocess.json's test vectors through onnxruntime (when
    installed) and compare with the numpy engine: a graph that disagrees is removed and refused. A directory
    holding a model is refused, even with `force`: its model would be the one `tagger predict` reads. Returns
    what was written and checked."""
    import json
    from pathlib import Path

    from tagger import store
    from tagger.tagging.tagger import Tagger
    from tagger.errors import InputError
    from tagger.export import lookup, onnx, preprocess

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError("exists and is not a directory", path=str(output))
    if (output / "config.json").exists():
        raise InputError("holds a model directory (config.json): export into a directory of its own", path=str(output))
    if output.is_dir() and any(output.iterdir()) and not force:
        raise InputError("already exists and is not empty: use --force to overwrite it", path=str(output))
    tagger = Tagger.load(model)
    if tagger.is_ensemble:  # its members' graphs and the averaging are not written as ONNX
        raise InputError("is an ensemble (tagger ensemble): export one of its members instead", path=str(model))
    if tagger.config.context == "lm":  # the LM reads a sentence's characters, an input the graph does not have
        raise InputError("reads a character LM (--embeddings lm:): ONNX export does not cover it yet; export a "
                         "model trained without it", path=str(model))
    name = tagger.meta.get("name") or Path(model).resolve().name
    graphs = {MODEL_FILE: onnx.build(tagger.config, tagger.vocab, tagger.tensors, name).SerializeToString(),
              LOOKUP_FILE: lookup.build_lookup(tagger.config, tagger.vocab, f"{name}_lookup").SerializeToString()}
    spec = preprocess.spec(tagger, name) | {"sha256": {file: store.sha256(data) for file, data in graphs.items()}}
    output.mkdir(parents=True, exist_ok=True)
    for file, data in graphs.items():
        store.atomic_write(output / file, data)
    store.atomic_write(output / PREPROCESS_FILE, (json.dumps(spec, ensure_ascii=False) + "\n").encode("utf-8"))
    written = {file: (output / file).stat().st_size for file in (MODEL_FILE, LOOKUP_FILE, PREPROCESS_FILE)}
    try:
        checked = check_export(output, tagger, spec["test_vectors"])
    except BaseException:
        for file in written:
            (output / file).unlink(missing_ok=True)
        raise
    return {"output": str(output), "bytes": written, "checked": checked, "tags": len(tagger.vocab.tags)}


def check_export(directory: "str | os.PathLike", tagger, vectors: list[dict]) -> "int | None":
    """How many test vectors onnxruntime tagged exactly as the numpy engine (emissions and scores within
    TOLERANCE); None when onnxruntime is not installed. ModelError on the first disagreement."""
    import importlib.util

    import numpy as np

    from tagger.encode import collate
    from tagger.errors import ModelError

    if importlib.util.find_spec("onnxruntime") is None:
        return None
    from tagger.export.runtime import OnnxTagger

    onnx_tagger = OnnxTagger.load(directory)
    for number, vector in enumerate(vectors, start=1):
        batch = collate([tagger.encode(vector["tokens"], features=vector.get("features", ()))])
        got = onnx_tagger.engine.run(batch)
        expected = tagger.engine.emissions(batch)
        problem = None
        if got["tags"][0].tolist() != vector["tag_ids"]:
            problem = f"tags {got['tags'][0].tolist()} instead of {vector['tag_ids']}"
        elif not np.allclose(got["emissions"], expected, rtol=TOLERANCE, atol=TOLERANCE):
            problem = f"emissions differ by up to {np.abs(got['emissions'] - expected).max():.2g}"
        elif not np.isclose(got["score"][0], vector["score"], rtol=TOLERANCE, atol=TOLERANCE):
            problem = f"best path score {got['score'][0]} instead of {vector['score']}"
        if problem:
            raise ModelError(f"the exported graph disagrees with the numpy engine on test vector {number} "
                             f"({problem}): nothing exported", path=str(directory))
    return len(vectors)
