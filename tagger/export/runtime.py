"""Tagging through onnxruntime from an export directory, reading only model.onnx and preprocess.json.

The reference consumer of the export: `OnnxTagger` is a `Tagger` whose engine is the ONNX graph, so every
door (tagger predict on text, tokens or CoNLL, with --scores too; evaluate; the Python API) runs on it
unchanged, and any input can be compared between the two engines. Its vocabulary, config and lexicon come from
preprocess.json and its encoder is the project's own (tagger/encode.py): what other languages reimplement
from preprocess.json's rules, checked against its test vectors.

onnxruntime's session is made on first use in each process: a forked --workers process makes its own
(a session's thread pool does not survive fork).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tagger.tagging.tagger import Tagger
from tagger.config import Config
from tagger.encode import Batch
from tagger.errors import ModelError
from tagger import store
from tagger.export import LOOKUP_FILE, MODEL_FILE, ONNX_HINT, PREPROCESS_FILE
from tagger.lexicon import Lexicon
from tagger.vocab import Vocab

FORMAT = "bilstm-tagger-onnx"
VERSION = 1


def is_export(path: str | os.PathLike) -> bool:
    """Whether `path` is an export directory: it holds model.onnx and preprocess.json, and it is not a model
    directory (config.json) that an export was written into, which keeps tagging with the numpy engine."""
    path = Path(path)
    return (path / MODEL_FILE).is_file() and (path / PREPROCESS_FILE).is_file() and not (path / "config.json").exists()


def read_spec(directory: str | os.PathLike) -> dict:
    """preprocess.json of an export directory, checked for its format and version."""
    path = Path(directory) / PREPROCESS_FILE
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read the export's preprocessing spec ({e})", path=str(path)) from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise ModelError(f"not a {FORMAT} preprocessing spec", path=str(path))
    if spec.get("version") != VERSION:
        raise ModelError(f"preprocess.json version {spec.get('version')} is not supported (this tagger reads "
                         f"version {VERSION})", path=str(path))
    return spec


def check_files(directory: str | os.PathLike, spec: dict) -> None:
    """model.onnx and lookup.onnx against the SHA-256 preprocess.json records (as tagger/store.py checks a
    model directory's files): ModelError naming the file that was altered, truncated or is missing."""
    recorded = spec.get("sha256")
    if not isinstance(recorded, dict):
        raise ModelError("records no checksums of model.onnx and lookup.onnx (an export of an older tagger): "
                         "export the model again", path=str(Path(directory) / PREPROCESS_FILE))
    for name in (MODEL_FILE, LOOKUP_FILE):
        path = Path(directory) / name
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(f"cannot read the export's graph ({e.strerror})", path=str(path)) from None
        if store.sha256(data) != recorded.get(name):
            raise ModelError("checksum does not match preprocess.json: the file was altered, truncated or "
                             "half-written", path=str(path))


def char_ids(batch: Batch) -> np.ndarray:
    """(B, T, L) character ids of each token, 0 after its end and on padding: model.onnx's `chars` from the
    batch's distinct spellings laid end to end."""
    lengths = batch.spelling_lengths  # (U,)
    table = np.zeros((len(lengths), int(lengths.max())), dtype=np.int64)  # (U, L)
    table[np.arange(table.shape[1]) < lengths[:, None]] = batch.spellings
    out = table[batch.types]  # (B, T, L)
    out[~batch.mask] = 0
    return out


def feeds(batch: Batch, inputs: set[str]) -> dict[str, np.ndarray]:
    """model.onnx's inputs (those named in `inputs`) from a batch the project's encoder made."""
    out = {"word_ids": batch.words, "casing": batch.casing, "lengths": batch.mask.sum(1).astype(np.int64)}
    optional = {"chars": lambda: char_ids(batch), "bigram_ids": lambda: batch.bigrams,
                "lexicon": lambda: batch.lexicon, "context_ids": lambda: batch.context,
                "feature_ids": lambda: batch.features}
    return out | {name: make() for name, make in optional.items() if name in inputs}


class OnnxEngine:
    """tagger.tagging.engine.Engine's interface (tag, emissions, crf) on model.onnx through onnxruntime."""

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.path, self.threads = Path(path), threads  # threads: onnxruntime's intra-op threads (0: its default)
        self._session, self._pid, self._crf = None, None, None

    @property
    def session(self):
        if self._session is None or self._pid != os.getpid():
            try:
                import onnxruntime
            except ImportError:
                raise ModelError(f"tagging with an ONNX export needs onnxruntime: {ONNX_HINT}") from None
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            try:
                self._session = onnxruntime.InferenceSession(str(self.path), options,
                                                             providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own exception types for an unreadable graph
                raise ModelError(f"onnxruntime cannot load the graph ({str(e).splitlines()[0]})",
                                 path=str(self.path)) from None
            self._pid = os.getpid()
        return self._session

    def run(self, batch: Batch) -> dict[str, np.ndarray]:
        """The graph's outputs for one batch: tags (B, T), emissions (B, T, K), score (B,)."""
        session = self.session
        names = [o.name for o in session.get_outputs()]
        inputs = {i.name for i in session.get_inputs()}
        return dict(zip(names, session.run(names, feeds(batch, inputs))))

    def tag(self, batch: Batch) -> list[list[int]]:
        """Best tag ids of each sentence of the batch, unpadded."""
        tags = self.run(batch)["tags"]
        return [row[:n] for row, n in zip(tags.tolist(), batch.mask.sum(1).tolist())]

    def emissions(self, batch: Batch) -> np.ndarray:
        """(B, T, K) tag scores."""
        return self.run(batch)["emissions"]

    @property
    def crf(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start, transitions, end), read back from the graph's initializers: what probabilities (--scores)
        need besides the emissions. Needs the onnx package."""
        if self._crf is None:
            from tagger.export.onnx import CRF, import_onnx

            onnx = import_onnx()
            found = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(self.path)).graph.initializer
                     if t.name in CRF}
            start, to_from, end = (found[name] for name in CRF)
            self._crf = (start, np.ascontiguousarray(to_from.T), end)
        return self._crf


class OnnxTagger(Tagger):
    """A Tagger on an export directory: the ONNX graph for the network and Viterbi, preprocess.json for the
    vocabulary, config and lexicon. It cannot be saved as a model directory (it has no tensors)."""

    def __init__(self, directory: str | os.PathLike, spec: dict, threads: int = 1):
        lexicon = Lexicon(dict(spec["lexicon"]["words"])) if spec.get("lexicon") else None
        config = Config.from_dict(spec["config"], source=str(Path(directory) / PREPROCESS_FILE))
        super().__init__(config, Vocab.from_json(spec["vocab"], lexicon), {}, dict(spec.get("meta", {})),
                         engine=OnnxEngine(Path(directory) / MODEL_FILE, threads))
        self.directory = Path(directory)

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int = 1) -> "OnnxTagger":
        """An export directory (`tagger export`); threads: onnxruntime's intra-op threads (0: its default)."""
        if not all((Path(path) / name).is_file() for name in (MODEL_FILE, PREPROCESS_FILE)):
            raise ModelError(f"not an ONNX export directory: it lacks {MODEL_FILE} or {PREPROCESS_FILE}",
                             path=str(path))
        spec = read_spec(path)
        check_files(path, spec)
        try:
            return cls(path, spec, threads)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed preprocessing spec ({e!r})", path=str(Path(path) / PREPROCESS_FILE)) from None

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        raise ModelError("an ONNX export holds no trainable tensors: it cannot be saved as a model directory",
                         path=str(self.directory))
