"""A character language model trained on raw text (`tagger lm RAW... --output LM/`), whose states are the
tagger's contextual string embeddings (`tagger train --embeddings lm:LM/`), after Akbik et al. 2018 (flair),
sized for a CPU.

The network: characters embedded (char_dim), one bidirectional LSTM layer (`hidden` a direction) and a
softmax over the characters for each direction. The forward LSTM reads left to right and predicts each next
character; the backward one reads right to left and predicts each previous one. The text is what the
tagger will feed it: the raw files cut into sentences and tokens by `tagger predict`'s tokeniser, tokens
joined by one space and sentences by a newline (tagger/lmtext.py). It is cut into chunks of `chunk`
characters, each read from a zero state, as the tagger reads each sentence (truncated back-propagation
without carried state); a seeded share of the chunks is held out to measure bits per character.

LM/ is a directory a user can read: config.json (LMOptions, the files and their SHA-256, each epoch's bits
per character), vocab.json (the characters; row 0 is <unk>) and model.safetensors: `context.*`, the tensors
a tagger copies in (tagger/tensors.py), and `decoder.*`, the softmax layers only this training uses.
Ctrl-C (or SIGTERM) writes LM/checkpoint/ at the batch boundary (so does every `checkpoint_minutes`), from
which `--resume` continues bit for bit (with as many threads; a resume may change the threads, the time
limit and raise the epochs, nothing else); the finished LM replaces it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from tagger import lmtext, rawtext, store
from tagger.errors import ConfigError, InputError, ModelError
from tagger.training.checkpoints import check_unchanged, files_origin, optimizer_dict, optimizer_state
from tagger.training.lm_dir import FORMAT, FORMAT_VERSION
from tagger.training.loop import StopOnSigint, torch_threads
from tagger.training.state import Interrupted

CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class LMOptions:
    """Everything that shapes a character LM, saved in its config.json."""

    hidden: int = 256           # LSTM units a direction: the tagger reads 2 x hidden numbers a token
    char_dim: int = 32
    chunk: int = 250            # characters a training sequence, read from a zero state
    batch_size: int = 32        # chunks a step
    lr: float = 0.002           # Adam
    clip: float = 1.0           # gradient norm
    dropout: float = 0.1        # on the embedded characters and the LSTM's output
    epochs: int = 1             # passes over the text
    max_minutes: float = 0.0    # stop training (and save) after this many minutes (0: no limit)
    max_chars: int = 0          # read at most this many characters of text (0: all)
    min_count: int = 5          # characters seen fewer times read as <unk>
    max_vocab: int = 500        # the most frequent characters kept
    heldout: float = 0.005      # share of the chunks held out to measure bits per character
    seed: int = 1
    threads: int = 0            # torch threads (0: torch's default, one a core)
    checkpoint_minutes: float = 10.0

    def validate(self) -> "LMOptions":
        for name in ("hidden", "char_dim", "epochs", "batch_size", "min_count", "max_vocab"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.chunk < 2:
            raise ConfigError(f"chunk must be at least 2 characters, not {self.chunk}")
        for name in ("max_minutes", "max_chars", "threads", "clip"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be at least 0, not {getattr(self, name)}")
        if not (0 <= self.dropout < 1 and 0 < self.heldout < 1 and self.lr > 0 and self.checkpoint_minutes > 0):
            raise ConfigError("dropout must be in [0, 1), heldout in (0, 1), lr and checkpoint_minutes positive")
        return self


class LMReporter(Protocol):
    def start_epoch(self, epoch: int, chars: int) -> None: ...
    def advance(self, chars: int, bits: float) -> None: ...
    def end_epoch(self, metrics: dict) -> None: ...
    def message(self, text: str) -> None: ...


class Quiet:
    def start_epoch(self, epoch: int, chars: int) -> None: ...
    def advance(self, chars: int, bits: float) -> None: ...
    def end_epoch(self, metrics: dict) -> None: ...
    def message(self, text: str) -> None: ...


class CharLM(nn.Module):
    """Embedded characters -> one BiLSTM layer -> next (forward) and previous (backward) character scores."""

    def __init__(self, chars: int, options: LMOptions):
        super().__init__()
        self.embed = nn.Embedding(chars, options.char_dim)
        self.lstm = nn.LSTM(options.char_dim, options.hidden, batch_first=True, bidirectional=True)
        self.forward_decoder = nn.Linear(options.hidden, chars)
        self.backward_decoder = nn.Linear(options.hidden, chars)
        self.dropout = nn.Dropout(options.dropout)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats) a predicted character, both directions, of chunks x (B, L)."""
        h, _ = self.lstm(self.dropout(self.embed(x)))  # (B, L, 2H)
        h = self.dropout(h)
        hidden = h.shape[2] // 2
        ahead = self.forward_decoder(h[:, :-1, :hidden])  # (B, L-1, V): the state after t predicts t+1
        behind = self.backward_decoder(h[:, 1:, hidden:])  # (B, L-1, V): the state after t (read backwards) predicts t-1
        scores = torch.cat([ahead, behind]).flatten(0, 1)
        return nn.functional.cross_entropy(scores, torch.cat([x[:, 1:], x[:, :-1]]).flatten())

    def tensors(self) -> dict[str, np.ndarray]:
        """The LM as named tensors: context.* as a tagger keeps them (tagger/tensors.py), then decoder.*."""
        s = {k: v.detach().numpy().copy() for k, v in self.state_dict().items()}
        out = {"context.embedding": s["embed.weight"]}
        for d, suffix in (("forward", ""), ("backward", "_reverse")):
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                out[f"context.0.{d}.{w}"] = s[f"lstm.{w}_l0{suffix}"]
            out |= {f"decoder.{d}.weight": s[f"{d}_decoder.weight"], f"decoder.{d}.bias": s[f"{d}_decoder.bias"]}
        return out


@dataclass
class Corpus:
    chars: list[str]
    train: np.ndarray  # (n, chunk) character ids
    heldout: np.ndarray  # (k, chunk)
    files: list[dict[str, str]]


def build_corpus(paths: Sequence[str | Path], options: LMOptions, chars: list[str] | None = None) -> Corpus:
    """The chunks of the files' text, a seeded share held out; `chars` given (a resume) or chosen here."""
    rawtext.check_text_files(paths)
    text = lmtext.read_text(paths, options.max_chars)
    chars = chars if chars is not None else lmtext.choose_chars(text, options.min_count, options.max_vocab)
    ids = lmtext.char_ids(text, chars)
    n = len(ids) // options.chunk
    if n < 2:
        raise InputError(f"too little text for a character LM: {len(ids):,} characters, at least 2 chunks of "
                         f"{options.chunk} needed", path=str(paths[0]))
    chunks = ids[: n * options.chunk].reshape(n, options.chunk)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(options.seed)).numpy()
    held = max(1, round(n * options.heldout))
    return Corpus(chars, chunks[np.sort(order[held:])], chunks[np.sort(order[:held])], files_origin(paths))


def train_lm(paths: Sequence[str | Path], output: Path, options: LMOptions, *, resume: bool = False,
             force: bool = False, reporter: LMReporter | None = None) -> dict:
    """Train (or resume) a character LM on raw text files and write it to `output`; its summary."""
    reporter, options = reporter or Quiet(), options.validate()
    output = Path(output)
    saved = _resume_state(output, paths) if resume else None
    if saved is None:
        _check_output(output, force)
    else:
        options = LMOptions(**{**saved["options"], "max_minutes": options.max_minutes, "threads": options.threads,
                               "epochs": max(options.epochs, saved["options"]["epochs"])})
    torch.manual_seed(options.seed)
    corpus = build_corpus(paths, options, saved["chars"] if saved else None)
    reporter.message(f"{len(corpus.chars)} characters; {corpus.train.size:,} to train on in {len(corpus.train):,} "
                     f"chunks, {corpus.heldout.size:,} held out")
    model = CharLM(len(corpus.chars), options)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    state = {"epoch": 0, "step": 0, "seconds": 0.0, "chars": 0, "history": []}
    if saved is not None:
        state = _restore(output / CHECKPOINT, saved, model, optimizer)
    with torch_threads(options.threads), StopOnSigint(also_sigterm=True) as stop:
        _loop(model, optimizer, corpus, options, state, output, stop, reporter)
    return _save_lm(output, model, corpus, options, state)


def _loop(model: CharLM, optimizer: torch.optim.Optimizer, corpus: Corpus, options: LMOptions, state: dict,
          output: Path, stop: StopOnSigint, reporter: LMReporter) -> None:
    """Epochs from state's (epoch, step) until done, out of time, or stopped (then a checkpoint, Interrupted)."""
    per_epoch = math.ceil(len(corpus.train) / options.batch_size)
    saved_at = time.perf_counter()
    while state["epoch"] < options.epochs:
        order = torch.randperm(len(corpus.train), generator=torch.Generator().manual_seed(
            options.seed * 100_003 + state["epoch"])).numpy()
        reporter.start_epoch(state["epoch"] + 1, corpus.train.size)
        reporter.advance(state["step"] * options.batch_size * options.chunk, float("nan"))
        while state["step"] < per_epoch:
            if options.max_minutes and state["seconds"] >= 60 * options.max_minutes:
                reporter.message(f"stopped after max_minutes = {options.max_minutes:g} (epoch {state['epoch'] + 1}, "
                                 f"step {state['step']} of {per_epoch})")
                return
            rows = order[state["step"] * options.batch_size:(state["step"] + 1) * options.batch_size]
            started = time.perf_counter()
            nats = _step(model, optimizer, torch.from_numpy(corpus.train[rows]), options.clip)
            state["seconds"] += time.perf_counter() - started
            state["step"] += 1
            state["chars"] += rows.size * options.chunk
            reporter.advance(len(rows) * options.chunk, nats / math.log(2))
            if stop.requested or time.perf_counter() - saved_at > 60 * options.checkpoint_minutes:
                _save_checkpoint(output, model, optimizer, corpus, options, state)
                saved_at = time.perf_counter()
                if stop.requested:
                    raise Interrupted(output / CHECKPOINT, state["epoch"] + 1, state["step"])
        metrics = {"epoch": state["epoch"] + 1, "heldout_bits_per_char": heldout_bits(model, corpus.heldout),
                   "train_seconds": round(state["seconds"], 1)}
        state["history"].append(metrics)
        reporter.end_epoch(metrics)
        state["epoch"], state["step"] = state["epoch"] + 1, 0


def _step(model: CharLM, optimizer: torch.optim.Optimizer, x: torch.Tensor, clip: float) -> float:
    model.train()
    loss = model.loss(x.long())
    optimizer.zero_grad()
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def heldout_bits(model: CharLM, chunks: np.ndarray, batch_size: int = 64) -> float:
    """Bits per character of the held-out chunks, both directions' mean (no dropout)."""
    model.eval()
    total = sum(float(model.loss(torch.from_numpy(chunks[k:k + batch_size]).long())) * len(chunks[k:k + batch_size])
                for k in range(0, len(chunks), batch_size))
    return round(total / len(chunks) / math.log(2), 4)


def _save_lm(output: Path, model: CharLM, corpus: Corpus, options: LMOptions, state: dict) -> dict:
    """The LM directory, written file by file atomically, config.json last; the checkpoint then removed."""
    if state["step"] or not state["history"]:  # stopped inside an epoch (max_minutes): its figures too
        state["history"].append({"epoch": state["epoch"] + 1, "partial": True,
                                 "heldout_bits_per_char": heldout_bits(model, corpus.heldout),
                                 "train_seconds": round(state["seconds"], 1)})
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.tensors().items()}
    from safetensors.numpy import save as st_save

    blobs = {"vocab.json": json.dumps({"chars": corpus.chars}, ensure_ascii=False).encode("utf-8"),
             "model.safetensors": st_save(tensors)}
    for name, data in blobs.items():
        store.atomic_write(output / name, data)
    summary = {"chars": len(corpus.chars), "train_chars": int(corpus.train.size), "epochs": state["history"],
               "train_seconds": round(state["seconds"], 1),
               "chars_per_s": round(state["chars"] / max(state["seconds"], 1e-9))}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "options": dataclasses.asdict(options),
            "files": corpus.files, "training": summary, "sha256": {k: store.sha256(v) for k, v in blobs.items()}}
    store.atomic_write(output / "config.json", (json.dumps(meta, indent=2) + "\n").encode())
    shutil.rmtree(output / CHECKPOINT, ignore_errors=True)
    return summary | {"output": str(output)}


def _check_output(output: Path, force: bool) -> None:
    if output.exists() and not output.is_dir():
        raise InputError("the LM's --output must be a directory, and this is a file", path=str(output))
    if output.is_dir() and any(output.iterdir()) and not force:
        hint = " (an interrupted run: add --resume)" if (output / CHECKPOINT).is_dir() else ""
        raise InputError(f"output directory is not empty{hint}; use --force to overwrite it", path=str(output))
    if force and output.is_dir():
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)


def _save_checkpoint(output: Path, model: CharLM, optimizer: torch.optim.Optimizer, corpus: Corpus,
                     options: LMOptions, state: dict) -> None:
    """LM/checkpoint/: weights, optimizer and random state (safetensors) and where training stands (JSON),
    written beside the old checkpoint and swapped in whole."""
    tensors, opt_meta = optimizer_state(optimizer)
    tensors |= {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    tensors["rng"] = torch.get_rng_state()
    new, final, old = output / f"{CHECKPOINT}.new", output / CHECKPOINT, output / f"{CHECKPOINT}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    blob = save_tensors(tensors)
    store.atomic_write(new / "trainer.safetensors", blob)
    meta = {"options": dataclasses.asdict(options), "chars": corpus.chars, "files": corpus.files, "optimizer": opt_meta,
            "state": state, "sha256": store.sha256(blob)}
    store.atomic_write(new / "trainer.json", json.dumps(meta).encode())
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _resume_state(output: Path, paths: Sequence[str | Path]) -> dict:
    """The checkpoint's JSON, after checking it is there and the text files are the ones it trained on."""
    path = output / CHECKPOINT / "trainer.json"
    if not path.is_file():
        raise InputError("--resume: no LM checkpoint here (it is written on Ctrl-C and every checkpoint_minutes)",
                         path=str(output))
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"unreadable LM checkpoint: {e}", path=str(path)) from None
    if [str(Path(p).resolve()) for p in paths] != [f["path"] for f in saved["files"]]:
        raise InputError("--resume takes the same text files as the interrupted run, in the same order: "
                         + " ".join(f["path"] for f in saved["files"]), path=str(output))
    check_unchanged(saved["files"], "text")
    return saved


def _restore(directory: Path, saved: dict, model: CharLM, optimizer: torch.optim.Optimizer) -> dict:
    blob = (directory / "trainer.safetensors").read_bytes()
    if store.sha256(blob) != saved["sha256"]:
        raise ModelError("the LM checkpoint's tensors do not match their checksum", path=str(directory))
    tensors = load_tensors(blob)
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(optimizer_dict(saved["optimizer"], tensors))
    torch.set_rng_state(tensors["rng"])
    return saved["state"]
