"""A model is a directory a user can read: config.json, vocab.json, model.safetensors.

Every file is written to a temporary name and renamed into place, so a kill leaves the old file or the
new one. config.json is written last and records the SHA-256 of the other two: a truncated, altered or
half-replaced model is refused on loading. Nothing is ever unpickled.

The weights are the tensors tagger/tensors.py names (format_version 2). Format 1 saved torch's state-dict
keys; such models still load, renamed on the way in.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tagger import tensors as spec
from tagger.config import Config
from tagger.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from tagger.lexicon import Lexicon

FORMAT = "bilstm-tagger"
FORMAT_1 = "bilstm-tagger/1"  # config.json's "format" in format 1, which had no format_version
FILES = ("config.json", "vocab.json", "model.safetensors")
LEXICON = "lexicon.txt"  # a model with lexicon features: one `word frequency` line per word
LEXICON_TRIE = "lexicon.safetensors"  # ... and the same lexicon's trie, built (tagger/lexicon.py: to_arrays)
ONNX_EXPORT = ("model.onnx", "preprocess.json")  # what `tagger export` writes (tagger/export/), told apart here


@contextmanager
def atomic_file(path: Path | None, text: bool = True) -> Iterator[IO]:
    """A file to write that appears at `path` only once the block ends without error (standard output when
    `path` is None or "-"). Its mode honours the umask, as open()'s does."""
    if path is None or str(path) == "-":
        yield sys.stdout if text else sys.stdout.buffer
        sys.stdout.flush()
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8", "newline": "\n"} if text else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, fsync, and rename it over `path`."""
    with atomic_file(path, text=False) as f:
        f.write(data)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(directory: str | Path, config: Config, vocab: dict, tensors: Mapping[str, np.ndarray],
               extra: dict[str, Any] | None = None, lexicon: "str | Lexicon | None" = None) -> None:
    """Write a model directory: tensors named as tagger/tensors.py says (float16 where it says so), and, when
    the model has a lexicon (tagger/lexicon.py: a Lexicon, or its text), its words as lexicon.txt and its trie
    as lexicon.safetensors, which loads without rebuilding it; config.json checksums each."""
    from tagger.lexicon import Lexicon, parse_saved

    directory = Path(directory)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float16 if k in spec.HALF else np.float32)
              for k, v in tensors.items()}
    blobs = {"vocab.json": json.dumps(vocab, ensure_ascii=False).encode("utf-8"), "model.safetensors": st_save(arrays)}
    if lexicon is not None:
        text, words = (lexicon.to_text(), lexicon) if isinstance(lexicon, Lexicon) else (lexicon, parse_saved(lexicon))
        blobs[LEXICON] = text.encode("utf-8")
        blobs[LEXICON_TRIE] = st_save(words.to_arrays())
    else:
        (directory / LEXICON).unlink(missing_ok=True)
        (directory / LEXICON_TRIE).unlink(missing_ok=True)
    for name, data in blobs.items():
        atomic_write(directory / name, data)
    meta = {"format": FORMAT, "format_version": spec.FORMAT_VERSION, "config": config.to_dict(),
            "sha256": {k: sha256(v) for k, v in blobs.items()}, **(extra or {})}
    atomic_write(directory / "config.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def update_config(directory: str | Path, changes: Mapping[str, Any]) -> None:
    """Change settings in a saved model's config.json, atomically (a kill leaves the old file or the new
    one). Its checksums cover vocab.json and model.safetensors, which stay as they are. The changed config
    is validated first: a bad value raises ConfigError and writes nothing. A Hub model (hf://) is refused:
    its files are Hugging Face's cache, shared by every revision that holds them."""
    if os.fspath(directory).startswith("hf:/"):
        raise ModelError("a model on the Hugging Face Hub is not changed in place: change a local copy (`hf "
                         "download ORG/NAME --local-dir DIR`) and push that", path=os.fspath(directory))
    path = Path(directory) / "config.json"
    meta = _read_json(path)
    _check_format(meta, path)
    values = {**meta["config"], **changes}
    Config.from_dict(values, source=str(path))
    meta["config"] = values
    atomic_write(path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def resolve(directory: str | os.PathLike) -> Path:
    """The model directory on disk that `directory` names: itself, or for "hf://ORG/NAME[@REV]" the snapshot
    tagger/hub.py fetches into Hugging Face's cache (huggingface_hub is imported only then)."""
    if os.fspath(directory).startswith("hf:/"):
        from tagger import hub

        return hub.download(directory)
    return Path(directory)


def read_meta(directory: str | Path) -> dict[str, Any]:
    """A model directory's config.json, parsed and its format checked (ModelError naming the file)."""
    path = resolve(directory) / "config.json"
    meta = _read_json(path)
    _check_format(meta, path)
    return meta


def check_model_dir(directory: Path) -> None:
    """ModelError unless `directory` holds a model's files: no such directory, not a directory, an ONNX export
    (saying which commands take one), or a file missing."""
    if not directory.exists():
        raise ModelError("no such model directory", path=str(directory))
    if not directory.is_dir():
        raise ModelError("is not a model directory (expected config.json, vocab.json, model.safetensors)",
                         path=str(directory))
    missing = [n for n in FILES if not (directory / n).is_file()]
    if missing and all((directory / n).is_file() for n in ONNX_EXPORT):
        raise ModelError("is an ONNX export (tagger export), not a model directory: `tagger predict`, `evaluate` "
                         "and `info` take one; `serve`, `select`, `calibrate` and `train --init` need the model "
                         "directory it was exported from", path=str(directory))
    if missing:
        raise ModelError(f"model directory lacks {', '.join(missing)}", path=str(directory))


def load_model(directory: str | Path, checkpoint: bool = False
               ) -> tuple[Config, dict, dict[str, np.ndarray], dict[str, Any]]:
    """Read and check a model directory: config, vocabulary (JSON), weights (numpy arrays, as saved: format 1
    has torch's keys, see from_format_1) and config.json's other entries. ModelError names the file and what
    is wrong with it. A training checkpoint (config.json's "checkpoint") is refused unless `checkpoint`: it
    holds the last weights, not the best, and may lack the pretrained-only rows. "hf://ORG/NAME[@REV]": a
    model on the Hugging Face Hub (resolve)."""
    directory = resolve(directory)
    check_model_dir(directory)
    meta = _read_json(directory / "config.json")
    _check_format(meta, directory / "config.json")
    if meta.get("checkpoint") and not checkpoint:
        raise ModelError("is a training checkpoint (what --resume continues from), not a model: load the "
                         "directory above it, which holds the best model on dev", path=str(directory))
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
    try:
        tensors = st_load(blobs["model.safetensors"])
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ModelError(f"unreadable weights: {e}", path=str(directory / "model.safetensors")) from None
    meta.setdefault("format_version", 1)
    return config, vocab, tensors, meta


def load_lexicon(directory: str | Path, meta: Mapping[str, Any]) -> str | None:
    """The text of a model's lexicon.txt, checked against config.json's checksum (None: the model has none)."""
    data = _checked_file(Path(directory), LEXICON, meta)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError("invalid UTF-8", path=str(Path(directory) / LEXICON)) from None


def load_lexicon_trie(directory: str | Path, meta: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The arrays of a model's lexicon.safetensors (Lexicon.from_arrays), checked against config.json's
    checksum; None when the model has none (no lexicon, or saved before the trie was kept: build it from
    lexicon.txt)."""
    data = _checked_file(Path(directory), LEXICON_TRIE, meta)
    if data is None:
        return None
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ModelError(f"unreadable lexicon trie: {e}", path=str(Path(directory) / LEXICON_TRIE)) from None


def _checked_file(directory: Path, name: str, meta: Mapping[str, Any]) -> bytes | None:
    """The bytes of an optional model file that config.json checksums (None: config.json names none)."""
    expected = meta.get("sha256", {}).get(name)
    if expected is None:
        return None
    path = directory / name
    if not path.is_file():
        raise ModelError(f"model directory lacks {name}", path=str(directory))
    data = path.read_bytes()
    if sha256(data) != expected:
        raise ModelError("checksum does not match config.json: the file was altered, truncated or half-written",
                         path=str(path))
    return data


def _check_format(meta: Any, path: Path) -> None:
    if isinstance(meta, dict) and meta.get("format") == FORMAT_1 and "format_version" not in meta:
        return
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(version, int):
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelError(f"not a model of this tagger (format {found!r}, expected {FORMAT!r})", path=str(path))
    if not 1 <= version <= spec.FORMAT_VERSION:
        raise ModelError(f"format_version {version} is newer than this tagger reads ({spec.FORMAT_VERSION}): "
                         "upgrade bilstm-tagger", path=str(path))


def from_format_1(state: Mapping[str, np.ndarray], config: Config, sizes: spec.Sizes,
                  directory: Path) -> dict[str, np.ndarray]:
    """A format-1 model's weights (torch's state-dict keys) under tagger/tensors.py's names."""
    try:
        return spec.from_torch(state, list(spec.shapes(config, sizes)))
    except KeyError as e:
        raise ModelError(f"weights do not match config.json and vocab.json (missing {e.args[0]})",
                         path=str(directory / "model.safetensors")) from None


def _read_json(path: Path) -> Any:
    return _parse_json(path.read_bytes(), path)


def _parse_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"invalid JSON: {e}", path=str(path)) from None
