"""Reading a `tagger lm` directory (tagger/training/lm.py writes it) for `tagger train --embeddings lm:DIR`:
its characters and the tensors a tagger copies in, checked against config.json's checksums. No torch."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tagger import store
from tagger.errors import ModelError

FORMAT = "tagger-charlm"
FORMAT_VERSION = 1


def read_lm(directory: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """A `tagger lm` directory's characters and the tensors a tagger copies in (`context.*`), checked
    against config.json's checksums; its embedding rounded to float16, as a model saves it (tagger/tensors.py),
    so training sees what tagging will. ModelError names what is wrong."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    directory = Path(directory)
    meta = check_lm_dir(directory)
    blobs = {name: (directory / name).read_bytes() for name in ("vocab.json", "model.safetensors")}
    for name, data in blobs.items():
        if store.sha256(data) != meta.get("sha256", {}).get(name):
            raise ModelError(f"{name} does not match the checksum in config.json (altered or damaged)",
                             path=str(directory / name))
    try:
        chars, tensors = json.loads(blobs["vocab.json"])["chars"], st_load(blobs["model.safetensors"])
    except (ValueError, KeyError, SafetensorError) as e:
        raise ModelError(f"unreadable LM: {e}", path=str(directory)) from None
    tensors = {k: v for k, v in tensors.items() if k.startswith("context.")}
    tensors["context.embedding"] = tensors["context.embedding"].astype(np.float16).astype(np.float32)
    return chars, tensors


def check_lm_dir(directory: Path) -> dict:
    """config.json of a `tagger lm` directory; ModelError when it is not one (a tagger model, say)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ModelError("not a character LM directory (`tagger lm` writes one): no config.json", path=str(directory))
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"unreadable config.json: {e}", path=str(path)) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError("not a character LM directory (`tagger lm` writes one; lm: takes no tagger model)",
                         path=str(directory))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"LM format version {meta.get('format_version')} is not supported (this tagger reads "
                         f"{FORMAT_VERSION})", path=str(directory))
    return meta
