"""The training loop: length-grouped batches, SGD or Adam, dev F1 each epoch, early stopping, checkpoints.

The output directory holds the best model on dev (a loadable model directory), `metrics.jsonl` (one line an
epoch) and `checkpoint/` (the last state, from which `resume=True` continues, bit for bit, even mid-epoch).

With a `World` of several processes (tagger/training/distributed.py) each rank trains on its slice of every global batch
and rank 0 alone scores, saves, logs and decides; the others follow its decisions.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator, Protocol, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel

from corpora import schemes
from corpora.conll import Sentence
from tagger import lac, store
from tagger.training import distributed
from tagger.reports import plots
from tagger.training import unseen
from tagger.training.distributed import LossModule, World, wrap
from tagger.api import feature_columns, model_scheme
from tagger.config import Config
from tagger.encode import Batch, Encoded, collate, iter_batches, length_batches
from tagger.errors import ConfigError, InputError
from tagger.reports.metrics import score
from tagger.lexicon import Lexicon
from tagger.training.model import Trainable
from tagger.vocab import Index, build_vocab


class Reporter(Protocol):
    """What the loop tells the outside world (the CLI draws it with rich; tests pass Silent)."""

    def start_epoch(self, epoch: int, sentences: int) -> None: ...
    def advance(self, sentences: int, loss: float) -> None: ...
    def end_epoch(self, metrics: dict) -> None: ...
    def message(self, text: str) -> None: ...


class Silent:
    def start_epoch(self, epoch: int, sentences: int) -> None: ...
    def advance(self, sentences: int, loss: float) -> None: ...
    def end_epoch(self, metrics: dict) -> None: ...
    def message(self, text: str) -> None: ...


class Interrupted(Exception):
    """Training was stopped by Ctrl-C after a checkpoint was saved."""

    def __init__(self, checkpoint: Path, epoch: int, step: int):
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step
        super().__init__(f"interrupted in epoch {epoch + 1} after {step} batches; checkpoint saved in {checkpoint}")


@dataclass
class Progress:
    """Where training stands: saved in every checkpoint."""

    epoch: int = 0           # the epoch being trained (0-based)
    step: int = 0            # batches of that epoch already done
    best_f1: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    seconds: float = 0.0     # training time so far, for max_minutes
    epoch_loss: float = 0.0  # sums over the batches of the current epoch done so far (they survive a resume)
    epoch_tokens: int = 0
    epoch_seconds: float = 0.0
    updates: int = 0         # optimizer steps since the start (for the weight average's warm-up)


@dataclass
class Data:
    train: list[Encoded]
    dev: list[Encoded]
    dev_gold: list[list[str]]
    scheme: str | None


class WeightAverage:
    """An exponential moving average of the trainable weights (Polyak averaging), the model that is scored
    and saved: it smooths SGD's noise late in training. Its decay warms up as min(decay, (1+n)/(10+n))."""

    def __init__(self, model: torch.nn.Module, decay: float, state: dict[str, torch.Tensor] | None = None):
        self.decay = decay
        self.params = dict(p for p in model.named_parameters() if p[1].requires_grad)
        self.average = state or {k: p.detach().clone() for k, p in self.params.items()}

    @torch.no_grad()
    def update(self, updates: int) -> None:
        decay = min(self.decay, (1 + updates) / (10 + updates))
        keys = list(self.params)
        torch._foreach_lerp_([self.average[k] for k in keys], [self.params[k] for k in keys], 1 - decay)

    @contextmanager
    def applied(self):
        """The model holds the averaged weights inside this block, its own weights again after it."""
        own = {k: p.detach().clone() for k, p in self.params.items()}
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(self.average[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(own[k])


def set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def build_tagger(config: Config, train: Sequence[Sentence], source_scheme: str | None,
                 vectors: tuple[list[str], np.ndarray] | None, reporter: Reporter, neighbours: bool = True,
                 lexicon: Lexicon | None = None, bigram_vectors: tuple[list[str], np.ndarray] | None = None,
                 context: tuple[list[str], dict[str, np.ndarray]] | None = None
                 ) -> tuple[Trainable, unseen.Pretrained | None]:
    """Vocabulary from the training corpus (+ pretrained words), a fresh network, pretrained rows copied in;
    and, for pretrained_swap or unseen_drift, what training keeps of the pretrained vectors (tagger/training/unseen.py).
    neighbours=False skips the unseen words' neighbour search (ranks other than 0 never score nor save).
    The config's `auto` settings are decided here and saved with the model: the tokenizer, then the encoders
    that suit it (Config.resolved); lexicon is on when a lexicon is given; bigram vectors turn bigrams on;
    context, the characters and tensors of a frozen context encoder (tagger/lac.py), sets context = "lac"."""
    if vectors is not None:
        config = dataclasses.replace(config, word_dim=vectors[1].shape[1])
    if config.tokenizer == "auto":
        config = dataclasses.replace(config, tokenizer=choose_tokenizer(train))
        reporter.message(f"raw text will be split into {config.tokenizer} (tokenizer = \"{config.tokenizer}\")")
    config = _with_inputs(config, lexicon, bigram_vectors, context is not None, reporter)
    scheme = model_scheme(config, source_scheme)
    vocab = build_vocab((s.tokens for s in train), (_convert(s.tags, source_scheme, scheme) for s in train),
                        [[feature_columns(s, [c])[0] for s in train] for c in config.features],
                        pretrained=vectors[0] if vectors else (), min_count=config.min_word_count,
                        lowercase=config.lowercase_lookup, source_scheme=source_scheme,
                        with_bigrams=config.bigrams == "on", lexicon=lexicon)
    if context is not None:
        vocab.context = Index(context[0], specials=False)
    set_seed(config.seed)
    tagger = Trainable.build(config, vocab)
    if context is not None:
        tagger.model.context = dict(context[1])
    if bigram_vectors is not None:
        _copy_bigram_vectors(tagger, bigram_vectors, reporter)
    if vectors is None:
        return tagger, None
    rows = _copy_vectors(tagger, vectors, reporter, train)
    if not (config.pretrained_swap or config.unseen_drift):
        return tagger, None
    pretrained = unseen.Pretrained(rows, tagger.model.word.weight.detach()[rows].clone())
    if neighbours and config.unseen_drift and len(rows) and len(vocab.frozen):
        start = time.perf_counter()
        pretrained = pretrained.with_neighbours(tagger.model.frozen, config.unseen_neighbours)
        reporter.message(f"nearest trained words of {len(vocab.frozen):,} unseen pretrained words found in "
                         f"{time.perf_counter() - start:.1f}s")
    return tagger, pretrained


def _with_inputs(config: Config, lexicon: Lexicon | None, bigram_vectors: tuple[list[str], np.ndarray] | None,
                 context: bool, reporter: Reporter) -> Config:
    """The config with its encoders decided (after the tokenizer) and said when `auto` chose them."""
    if config.lexicon and lexicon is None:
        raise ConfigError("lexicon = true needs a lexicon: train with --lexicon FILE (or --lexicon jieba)")
    if config.context != "none" and not context:
        raise ConfigError(f'context = "{config.context}" needs its encoder: train with --context jieba')
    if bigram_vectors is not None:
        if config.bigrams == "off":
            raise ConfigError("bigram vectors were given but the config has bigrams = \"off\"")
        config = dataclasses.replace(config, bigrams="on", bigram_dim=bigram_vectors[1].shape[1])
    resolved = dataclasses.replace(config.resolved(), lexicon=lexicon is not None, context="lac" if context else "none")
    if resolved.tokenizer == "chars" and (config.char_encoder == "auto" or config.bigrams == "auto"):
        reporter.message(f"{resolved.tokenizer} defaults: char_encoder = \"{resolved.char_encoder}\", bigrams = "
                         f"\"{resolved.bigrams}\"{f', lexicon of {len(lexicon):,} words' if lexicon else ''}")
    return resolved


def _copy_bigram_vectors(tagger: Trainable, vectors: tuple[list[str], np.ndarray], reporter: Reporter) -> None:
    """Pretrained bigram vectors into the rows of the training bigrams they have (the others stay random)."""
    words, matrix = vectors
    row = {w: i for i, w in enumerate(words)}
    items = tagger.vocab.bigrams.items
    rows = [i for i, key in enumerate(items[2:], start=2) if key in row]
    with torch.no_grad():
        tagger.model.bigrams.weight[rows] = torch.from_numpy(matrix[[row[items[i]] for i in rows]])
    reporter.message(f"bigram vectors: {len(words):,} x {matrix.shape[1]}; they cover {len(rows):,} of "
                     f"{len(items) - 2:,} training bigrams ({100 * len(rows) / max(len(items) - 2, 1):.1f}%)")


def choose_tokenizer(train: Sequence[Sentence]) -> str:
    """"chars" when nearly every training token is one character (one-character-a-line corpora)."""
    tokens = [t for s in train for t in s.tokens]
    single = sum(len(t) == 1 for t in tokens)
    return "chars" if tokens and single >= 0.9 * len(tokens) else "words"


def _convert(tags, source: str | None, target: str | None) -> list[str]:
    return list(tags) if source is None or target is None else schemes.convert(tags, source, target)


def _copy_vectors(tagger: Trainable, vectors: tuple[list[str], np.ndarray], reporter: Reporter,
                  train: Sequence[Sentence]) -> torch.Tensor:
    """Pretrained vectors into the trainable rows and the frozen buffer; returns the rows that got one."""
    words, matrix = vectors
    row = {w: i for i, w in enumerate(words)}
    model, vocab = tagger.model, tagger.vocab
    rows = [i for i, key in enumerate(vocab.words.items[2:], start=2) if key in row]
    with torch.no_grad():
        model.word.weight[rows] = torch.from_numpy(matrix[[row[vocab.words.items[i]] for i in rows]])
        # rounded to float16, as the model saves them (tagger/tensors.py): training sees what tagging will
        model.frozen.copy_(torch.from_numpy(matrix[[row[w] for w in vocab.frozen.items]]).half())
    types = {w for s in train for w in s.tokens}
    covered = sum(1 for w in types if w in row or (vocab.lowercase and w.lower() in row))
    reporter.message(f"pretrained vectors: {len(words):,} x {matrix.shape[1]}; they cover {covered:,} of "
                     f"{len(types):,} training word types ({100 * covered / max(len(types), 1):.1f}%)")
    return torch.tensor(rows, dtype=torch.long)


def prepare_data(tagger: Trainable, train: Sequence[Sentence], dev: Sequence[Sentence],
                 dev_scheme: str | None) -> Data:
    """Encode both corpora once (ids, characters, features), so epochs only batch tensors."""
    cfg, vocab, scheme = tagger.config, tagger.vocab, tagger.scheme
    src = vocab.source_scheme

    def enc(s: Sentence, tags) -> Encoded:
        return tagger.encode(s.tokens, tags, feature_columns(s, cfg.features) if cfg.features else ())

    train_enc = [enc(s, _convert(s.tags, src, scheme)) for s in train if s.tokens]
    if cfg.context != "none":
        add_context_features(train_enc, lac.ContextNetwork(tagger.model.context))
    dev = [s for s in dev if s.tokens]
    dev_gold = [_convert(s.tags, dev_scheme or src, scheme) for s in dev]
    return Data(train_enc, [enc(s, None) for s in dev], dev_gold, scheme)


def add_context_features(encoded: Sequence[Encoded], context: lac.ContextNetwork, batch_size: int = 256) -> None:
    """Each sentence's context features, computed once in batches of neighbouring lengths: the encoder is
    frozen, so every epoch would compute the same numbers (tagging computes them per batch instead)."""
    for ids, batch in iter_batches(encoded, batch_size, mixed=True):
        features = context.features(batch.context, batch.mask)  # (B, T, lac.FEATURES)
        for row, i in enumerate(ids):
            encoded[i].context_features = features[row, : len(encoded[i])]


def make_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "nadam":  # Adam with Nesterov momentum (Dozat 2016; Reimers & Gurevych 2017)
        return torch.optim.NAdam(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           foreach=True)


def train(config: Config, train_sents: Sequence[Sentence], dev_sents: Sequence[Sentence], output: str | Path,
          source_scheme: str | None, dev_scheme: str | None = None,
          vectors: tuple[list[str], np.ndarray] | None = None, resume: bool = False,
          reporter: Reporter | None = None, given: Collection[str] = (), world: World | None = None,
          lexicon: Lexicon | None = None, bigram_vectors: tuple[list[str], np.ndarray] | None = None,
          context: tuple[list[str], dict[str, np.ndarray]] | None = None) -> Progress:
    """Train (or resume training) and keep the best model on dev in `output`.

    On resume the checkpoint's config is used, except for the settings named in `given` (those the user set:
    the CLI's options and config file): epochs, max_minutes and threads take `config`'s values; any other that
    differs from the checkpoint's is a ConfigError. `world`: this process's rank among data-parallel training
    processes (tagger/training/distributed.py), in a process group already set up; one process when None. `lexicon`,
    `bigram_vectors` and `context` (tagger/lexicon.py, tagger/embeddings.py, tagger/lac.py) start a new training
    only: a checkpoint has its own."""
    reporter = reporter or Silent()
    output, world = Path(output), world or World()
    if resume:
        tagger, optimizer, progress, average, pretrained = load_checkpoint(output, world)
        config = tagger.config = resumed_config(tagger.config, config, given, output, len(tagger.vocab.frozen) > 0)
        check_left(config, progress, output)
        reporter.message(f"resuming from epoch {progress.epoch + 1}, batch {progress.step}")
    else:
        tagger, pretrained = build_tagger(config, train_sents, source_scheme, vectors, reporter, world.leader,
                                          lexicon, bigram_vectors, context)
        config = tagger.config
        optimizer, progress = make_optimizer(config, tagger.model), Progress()
        average = WeightAverage(tagger.model, config.average) if config.average else None
        if not world.leader:  # its own dropout draws (the weights are the same on every rank)
            torch.manual_seed(config.seed + 7919 * world.rank)
    if not world.leader:
        average = None  # rank 0's average is the one scored and saved
    if pretrained is not None and config.pretrained_swap:
        tagger.model.keep_pretrained(pretrained.rows, pretrained.start)
    data = prepare_data(tagger, train_sents, dev_sents if world.leader else (), dev_scheme)
    if world.leader:
        _trim_metrics(output / "metrics.jsonl", progress.epoch)
    curves = plots.Redrawer(output, reporter.message) if world.leader else None  # training.svg, each epoch
    with torch_threads(config.threads), StopOnSigint(also_sigterm=world.size > 1) as stop, \
            distributed.peers_watched(world):
        model = wrap(tagger.model, world)
        while progress.epoch < config.epochs and not _stop(config, progress):
            metrics = run_epoch(tagger, optimizer, data, progress, reporter, stop, average, model, world)
            if metrics is None:  # Ctrl-C: the batches done so far are in the checkpoint
                _checkpoint(output, tagger, optimizer, progress, average, pretrained, world)
                raise Interrupted(output / "checkpoint", progress.epoch, progress.step)
            if world.leader:
                with average.applied() if average else nullcontext(), \
                        unseen.drifted(tagger.model, pretrained, config.unseen_drift):
                    _evaluate_and_keep(tagger, data, progress, metrics, output)
                with open(output / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(metrics) + "\n")
                reporter.end_epoch(metrics)
                curves.request()
            progress.epoch, progress.step = progress.epoch + 1, 0
            _checkpoint(output, tagger, optimizer, progress, average, pretrained, world)
            progress = Progress(**world.share(progress.__dict__))  # rank 0's scores and clock decide for all
            if world.any(stop.requested):
                raise Interrupted(output / "checkpoint", progress.epoch, 0)
    if curves is not None:
        curves.close()
    return progress


def resumed_config(saved: Config, config: Config, given: Collection[str], output: Path,
                   pretrained: bool = False) -> Config:
    """The checkpoint's config with the settings that may change on resume taken from `config`. Settings that
    training resolved are not compared: tokenizer = "auto" (became words or chars), and word_dim when the
    model has pretrained vectors (their dimension won)."""
    resolved = {"version", "lexicon", "context", *(["tokenizer"] if config.tokenizer == "auto" else []),
                *(["char_encoder"] if config.char_encoder == "auto" else []),
                *(["bigrams"] if config.bigrams == "auto" else []), *(["word_dim"] if pretrained else [])}
    changing = {name for name in given if name in RESUMABLE}
    fixed = sorted(name for name in given if name not in RESUMABLE and name not in resolved
                   and getattr(config, name) != getattr(saved, name))
    if fixed:
        raise ConfigError(f"--resume cannot change {', '.join(fixed)} (the checkpoint has "
                          f"{', '.join(f'{n} = {getattr(saved, n)!r}' for n in fixed)}); only "
                          f"{', '.join(RESUMABLE)} may change", path=str(output / "checkpoint"))
    return Config.from_dict({**saved.to_dict(), **{n: getattr(config, n) for n in changing}})


RESUMABLE = ("epochs", "max_minutes", "threads")


def check_left(config: Config, progress: Progress, output: Path) -> None:
    """Refuse to resume a training that has nothing left to do, saying why it ended."""
    if progress.epoch >= config.epochs:
        why = f"all {config.epochs} epochs are trained (raise --epochs to train more)"
    elif progress.bad_epochs >= config.patience:
        why = f"it stopped early: no better dev F1 in {progress.bad_epochs} epochs (patience = {config.patience})"
    elif _stop(config, progress):
        why = f"it used its max_minutes = {config.max_minutes} (raise it in the config to train more)"
    else:
        return
    raise InputError(f"nothing left to train: {why}; the best model is epoch {progress.best_epoch}",
                     path=str(output))


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block (0: torch's default), restored after it."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _checkpoint(output: Path, tagger: Trainable, optimizer: torch.optim.Optimizer, progress: Progress,
                average: WeightAverage | None, pretrained: unseen.Pretrained | None, world: World) -> None:
    """Rank 0 saves, with every rank's random state; the others wait until it is on disk."""
    states = world.gather(torch.get_rng_state())
    if world.leader:
        save_checkpoint(output, tagger, optimizer, progress, average, pretrained, states)
    world.barrier()


class StopOnSigint:
    """Ctrl-C asks the loop to stop at the next batch boundary (so a checkpoint is exact); a second
    Ctrl-C interrupts at once. With also_sigterm (several processes), SIGTERM asks the same, never more:
    torchrun forwards the terminal's Ctrl-C to its workers as SIGTERM, next to the SIGINT they get."""

    def __init__(self, also_sigterm: bool = False):
        self.requested = False
        self.previous: dict[int, object] = {}
        self.signals = (signal.SIGINT, signal.SIGTERM) if also_sigterm else (signal.SIGINT,)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopOnSigint":
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def _stop(config: Config, progress: Progress) -> bool:
    if progress.bad_epochs >= config.patience:
        return True
    return bool(config.max_minutes) and progress.seconds >= 60 * config.max_minutes


def run_epoch(tagger: Trainable, optimizer: torch.optim.Optimizer, data: Data, progress: Progress,
              reporter: Reporter, stop: StopOnSigint, average: WeightAverage | None = None,
              model: torch.nn.Module | None = None, world: World | None = None) -> dict | None:
    """One pass over the training batches (from `progress.step` on); None when stopped by Ctrl-C.

    Every rank makes the same global batches (same seed) and trains on its slice of each, so all take the
    same number of steps; a rank whose slice is empty (a batch smaller than the world) trains on a copy of
    the batch's first sentence with weight 0, which keeps DDP's all-reduce going and adds nothing."""
    cfg, world = tagger.config, world or World()
    model = model or wrap(tagger.model, world)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr / (1 + cfg.lr_decay * progress.epoch)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + progress.epoch)
    lengths = [len(e) for e in data.train]
    batches = length_batches(lengths, cfg.batch_size, generator)
    reporter.start_epoch(progress.epoch, len(data.train))
    tagger.model.train()
    stopping = False
    for k in range(progress.step, len(batches)):  # a resumed epoch starts where it stopped
        if stopping or (world.size == 1 and stop.requested):
            return None
        start = time.perf_counter()
        ids = batches[k]
        mine = world.shard(ids)
        batch = collate([data.train[i] for i in mine or ids[:1]])
        loss = train_step(model, optimizer, batch, cfg.clip, weight=world.size / len(ids) if mine else 0.0)
        if average is not None:
            average.update(progress.updates)
        progress.updates += 1
        total, stopping = world.reduce_step(loss.item() if mine else 0.0, stop.requested)
        seconds = time.perf_counter() - start
        progress.step = k + 1
        progress.epoch_loss += total
        progress.epoch_tokens += sum(lengths[i] for i in ids)
        progress.epoch_seconds += seconds
        progress.seconds += seconds
        reporter.advance(len(ids), total / len(ids))
    metrics = {"epoch": progress.epoch + 1, "loss": progress.epoch_loss / max(len(data.train), 1),
               "lr": optimizer.param_groups[0]["lr"],
               "tokens_per_s": progress.epoch_tokens / max(progress.epoch_seconds, 1e-9),
               "seconds": progress.epoch_seconds}
    if world.size > 1:
        metrics["processes"] = world.size
    progress.epoch_loss, progress.epoch_tokens, progress.epoch_seconds = 0.0, 0, 0.0
    return metrics


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, clip: float,
               weight: float | None = None) -> torch.Tensor:
    """One update on the batch's loss times `weight` (default 1 / sentences: the mean), gradients clipped to
    norm `clip` if set; returns the summed loss. `model(batch)` is the summed loss (distributed.wrap), or
    `model` is the network itself. Under DDP, which averages gradients over ranks, weight = ranks / global
    batch gives every rank the global batch's mean, as one process training on the whole batch."""
    loss = model(batch) if isinstance(model, (LossModule, DistributedDataParallel)) else model.loss(batch)
    optimizer.zero_grad(set_to_none=True)
    (loss * (1 / len(batch) if weight is None else weight)).backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss


def _evaluate_and_keep(tagger: Trainable, data: Data, progress: Progress, metrics: dict, output: Path) -> None:
    start = time.perf_counter()
    if data.dev:
        result = score(data.dev_gold, tagger.tagger().tag_encoded(data.dev), data.scheme)
        metrics |= {"dev_precision": result["precision"], "dev_recall": result["recall"], "dev_f1": result["f1"]}
    else:  # no dev data: the last epoch is the model
        metrics |= {"dev_f1": float(progress.epoch)}
    metrics["eval_seconds"] = time.perf_counter() - start
    if metrics["dev_f1"] > progress.best_f1:
        progress.best_f1, progress.best_epoch, progress.bad_epochs = metrics["dev_f1"], progress.epoch + 1, 0
        tagger.save(output, {"epoch": progress.epoch + 1, "dev_f1": metrics["dev_f1"]})
        metrics["best"] = True
    else:
        progress.bad_epochs += 1
    metrics["minutes"] = progress.seconds / 60


def _trim_metrics(path: Path, epochs_done: int) -> None:
    """On resume, drop lines of epochs the checkpoint does not contain (a kill between the two writes)."""
    if not path.exists():
        return
    lines = [l for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
    kept = [l for l in lines if json.loads(l).get("epoch", 0) <= epochs_done]
    if len(kept) != len(lines):
        store.atomic_write(path, "".join(l + "\n" for l in kept).encode())


# -- checkpoints: a model directory + trainer state, swapped in as a whole -------------------------------

def save_checkpoint(output: Path, tagger: Trainable, optimizer: torch.optim.Optimizer, progress: Progress,
                    average: WeightAverage | None = None, pretrained: unseen.Pretrained | None = None,
                    rng_states: Sequence[torch.Tensor] | None = None) -> None:
    """Write the new checkpoint beside the old one and swap directories, so a kill never loses both.
    rng_states: every rank's torch random state, rank 0's first (default: this process's)."""
    final, new, old = output / "checkpoint", output / "checkpoint.new", output / "checkpoint.old"
    shutil.rmtree(new, ignore_errors=True)
    tagger.save(new)
    tensors, meta = _optimizer_state(optimizer)
    states = list(rng_states) if rng_states is not None else [torch.get_rng_state()]
    tensors["rng.torch"] = states[0]
    tensors |= {f"rng.torch.{rank}": state for rank, state in enumerate(states) if rank}
    if average is not None:
        tensors |= {f"average.{k}": v for k, v in average.average.items()}
    if pretrained is not None:
        tensors |= pretrained.state()
    save_file(tensors, str(new / "trainer.safetensors"))
    meta["progress"] = progress.__dict__
    meta["processes"] = len(states)
    store.atomic_write(new / "trainer.json", json.dumps(meta).encode())
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(output: Path, world: World | None = None) -> tuple[Trainable, torch.optim.Optimizer, Progress,
                                                                       WeightAverage | None, unseen.Pretrained | None]:
    """The state `save_checkpoint` wrote, this rank's random state restored. Another number of processes
    than the checkpoint's resumes too: the same global batches, but new dropout draws on the extra ranks."""
    world = world or World()
    directory = output / "checkpoint"
    if not directory.exists() and (output / "checkpoint.old").exists():
        directory = output / "checkpoint.old"  # killed between the two renames
    if not (directory / "trainer.json").exists():
        raise InputError("nothing to resume: no checkpoint here (train without --resume)", path=str(output))
    tagger = Trainable.load(directory)
    tagger.model.train()
    meta = json.loads((directory / "trainer.json").read_text(encoding="utf-8"))
    tensors = load_file(str(directory / "trainer.safetensors"))
    optimizer = make_optimizer(tagger.config, tagger.model)
    optimizer.load_state_dict(_optimizer_dict(meta, tensors))
    rng = tensors.get("rng.torch" if world.leader else f"rng.torch.{world.rank}")
    if rng is not None:
        torch.set_rng_state(rng)
    else:
        torch.manual_seed(tagger.config.seed + 7919 * world.rank + 104_729 * meta["progress"]["updates"])
    averaged = {k.removeprefix("average."): v for k, v in tensors.items() if k.startswith("average.")}
    average = WeightAverage(tagger.model, tagger.config.average, averaged) if tagger.config.average else None
    return tagger, optimizer, Progress(**meta["progress"]), average, unseen.Pretrained.from_state(tensors)


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = optimizer.state_dict()
    tensors = {f"opt.{i}.{k}": v.detach().clone() for i, s in state["state"].items()
               for k, v in s.items() if isinstance(v, torch.Tensor)}
    scalars = {str(i): {k: v for k, v in s.items() if not isinstance(v, torch.Tensor)}
               for i, s in state["state"].items()}
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_dict(meta: dict, tensors: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(s) for i, s in meta["scalars"].items()}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def train_processes(processes: int, config: Config, train_sents: Sequence[Sentence], dev_sents: Sequence[Sentence],
                    output: str | Path, source_scheme: str | None, dev_scheme: str | None = None,
                    vectors: tuple[list[str], np.ndarray] | None = None, resume: bool = False,
                    reporter: Reporter | None = None, given: Collection[str] = (), lexicon: Lexicon | None = None,
                    bigram_vectors: tuple[list[str], np.ndarray] | None = None,
                    context: tuple[list[str], dict[str, np.ndarray]] | None = None) -> tuple[Progress, World]:
    """train() data-parallel: in the world torchrun set up (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or on
    `processes` processes of this machine with this one as rank 0, or in this process alone. Returns this
    rank's Progress (rank 0's decisions: the same on every rank) and its World."""
    env = distributed.env_world()
    if env is not None:
        if processes > 1:
            raise ConfigError(f"--processes {processes} under torchrun, which started {env.size} processes: "
                              "leave --processes out and set --nproc-per-node instead")
        with distributed.process_group(env) as world:
            return train(config, train_sents, dev_sents, output, source_scheme, dev_scheme, vectors, resume,
                         reporter if world.leader else Silent(), given, world, lexicon, bigram_vectors, context), world
    if processes <= 1:
        return train(config, train_sents, dev_sents, output, source_scheme, dev_scheme, vectors, resume, reporter,
                     given, None, lexicon, bigram_vectors, context), World()
    others = (config, train_sents, (), output, source_scheme, dev_scheme, vectors, resume, Silent(), given)
    with distributed.spawned(processes, functools.partial(train, lexicon=lexicon, bigram_vectors=bigram_vectors,
                                                             context=context),
                             others, agreed=(Interrupted,)) as world:
        return train(config, train_sents, dev_sents, output, source_scheme, dev_scheme, vectors, resume, reporter,
                     given, world, lexicon, bigram_vectors, context), world
