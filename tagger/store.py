"""A model is a directory a user can read: config.json, vocab.json, model.safetensors.

Every file is written to a temporary name and renamed into place, so a kill leaves the old file or the
new one. config.json is written last and records the SHA-256 of the other two: a truncated, altered or
half-replaced model is refused on loading. Nothing is ever unpickled.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from tagger.config import Config
from tagger.errors import ConfigError, ModelError

if TYPE_CHECKING:
    import torch

FORMAT = "bilstm-tagger/1"
FILES = ("config.json", "vocab.json", "model.safetensors")


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, fsync, and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(directory: str | Path, config: Config, vocab: dict, state: dict[str, torch.Tensor],
               extra: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save as st_save

    directory = Path(directory)
    blobs = {"vocab.json": json.dumps(vocab, ensure_ascii=False).encode("utf-8"),
             "model.safetensors": st_save({k: v.contiguous() for k, v in state.items()})}
    for name, data in blobs.items():
        atomic_write(directory / name, data)
    meta = {"format": FORMAT, "config": config.to_dict(), "sha256": {k: sha256(v) for k, v in blobs.items()},
            **(extra or {})}
    atomic_write(directory / "config.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def load_model(directory: str | Path, arrays: str = "torch") -> tuple[Config, dict, dict, dict[str, Any]]:
    """Read and check a model directory; ModelError names the file and what is wrong with it.

    The weights come as torch tensors, or as numpy arrays with `arrays="numpy"` (torch is then not imported)."""
    directory = Path(directory)
    if not directory.exists():
        raise ModelError("no such model directory", path=str(directory))
    if not directory.is_dir():
        raise ModelError("is not a model directory (expected config.json, vocab.json, model.safetensors)",
                         path=str(directory))
    missing = [n for n in FILES if not (directory / n).is_file()]
    if missing:
        raise ModelError(f"model directory lacks {', '.join(missing)}", path=str(directory))
    meta = _read_json(directory / "config.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"not a model of this tagger (format {meta.get('format') if isinstance(meta, dict) else None!r},"
                         f" expected {FORMAT!r})", path=str(directory / "config.json"))
    try:
        config = Config.from_dict(meta["config"], source=str(directory / "config.json"))
    except ConfigError as e:
        raise ModelError(e.message, path=e.path) from None
    blobs = {n: (directory / n).read_bytes() for n in ("vocab.json", "model.safetensors")}
    for name, data in blobs.items():
        if sha256(data) != meta.get("sha256", {}).get(name):
            raise ModelError("checksum does not match config.json: the file was altered, truncated or "
                             "half-written", path=str(directory / name))
    vocab = _parse_json(blobs["vocab.json"], directory / "vocab.json")
    if arrays == "numpy":
        from safetensors.numpy import load as st_load
    else:
        from safetensors.torch import load as st_load
    try:
        state = st_load(blobs["model.safetensors"])
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ModelError(f"unreadable weights: {e}", path=str(directory / "model.safetensors")) from None
    return config, vocab, state, meta


def _read_json(path: Path) -> Any:
    return _parse_json(path.read_bytes(), path)


def _parse_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"invalid JSON: {e}", path=str(path)) from None
