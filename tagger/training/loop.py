"""The training loop: length-grouped batches, SGD or Adam, dev F1 each epoch, early stopping, checkpoints.

The output directory holds the best model on dev (a loadable model directory), `metrics.jsonl` (one line an
epoch) and `checkpoint/` (the last state, from which `resume=True` continues, tagger/training/checkpoints.py).

With a `World` of several processes (tagger/training/distributed.py) each rank trains on its slice of every
global batch and rank 0 alone scores, saves, logs and decides; the others follow its decisions.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import signal
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from corpora.conll import Sentence
from tagger.config import Config
from tagger.encode import Batch, Encoded, collate, length_batches
from tagger.errors import InputError
from tagger.reports import plots
from tagger.reports.metrics import measure
from tagger.tagging.charlm import context_network
from tagger.tagging.pipeline import tag_encoded
from tagger.training import checkpoints, cvt, distributed, teachers, unseen
from tagger.training.distributed import World, wrap
from tagger.training.objective import Objective
from tagger.training.model import Trainable
from tagger.training.setup import (
    Data,
    Inputs,
    WeightAverage,
    add_context_features,
    build_trainable,
    make_optimizer,
    prepare_data,
)
from tagger.training.state import Interrupted, Progress, Reporter, Silent
from tagger.training.unlabeled import Stream, due

__all__ = ["Interrupted", "Progress", "Reporter", "Silent", "run_epoch", "train", "train_step"]


def train(*, config: Config, train_sents: Sequence[Sentence], dev_sents: Sequence[Sentence], output: str | Path,
          source_scheme: str | None, dev_scheme: str | None = None, inputs: Inputs | None = None,
          resume: bool = False, reporter: Reporter | None = None, given: Collection[str] = (),
          world: World | None = None, origin: dict | None = None, unlabeled: Sequence[str | Path] = ()
          ) -> Progress:
    """Train (or resume training) and keep the best model on dev in `output`.

    On resume the checkpoint's config is used, except for the settings named in `given` (those the user set:
    the CLI's options and config file): epochs, max_minutes and threads take `config`'s values; any other that
    differs from the checkpoint's is a ConfigError. `world`: this process's rank among data-parallel training
    processes (tagger/training/distributed.py), in a process group already set up; one process when None.
    `inputs` start a new training only: a checkpoint has its own. `origin`: where the data and vectors came
    from, kept in every checkpoint (tagger/training/checkpoints.py); on resume, the checkpoint's by default.
    `unlabeled`: raw text files to learn from by cross-view training (tagger/training/cvt.py), the same on resume."""
    reporter, inputs = reporter or Silent(), inputs or Inputs()
    output, world = Path(output), world or World()
    start = _resumed if resume else functools.partial(_started, dev_sents=dev_sents)
    if resume and origin is None:
        origin = checkpoints.origin_of(output)
    teacher_files = (origin or {}).get("teachers") or []  # distillation (--teacher): unlabelled text is theirs
    trainable, optimizer, progress, average, pretrained = start(config, train_sents, source_scheme, inputs,
                                                                output, given, reporter, world,
                                                                bool(unlabeled) and not teacher_files)
    config = trainable.config
    if not world.leader:
        average = None  # rank 0's average is the one scored and saved
    if pretrained is not None and config.pretrained_swap:
        trainable.model.keep_pretrained(pretrained.rows, pretrained.start)
    data = prepare_data(trainable, train_sents, dev_sents if world.leader else (), dev_scheme)
    stream = unlabeled_stream(trainable, unlabeled, progress.unlabeled_position, world) if unlabeled else None
    teaching = _teaching(teacher_files, trainable, data, reporter)
    if world.leader:
        checkpoints.trim_metrics(output / "metrics.jsonl", progress.epoch)
    curves = plots.Redrawer(output, reporter.message) if world.leader else None  # training.svg, each epoch
    with torch_threads(config.threads), StopOnSigint(also_sigterm=world.size > 1) as stop, \
            distributed.peers_watched(world):
        model = wrap(trainable.model, world, views=trainable.views)
        while progress.epoch < config.epochs and not progress.out_of_time_or_patience(config):
            metrics = run_epoch(trainable, optimizer, data, progress, reporter, stop, average, model, world,
                                stream, teaching)
            if metrics is None:  # Ctrl-C: the batches done so far are in the checkpoint
                checkpoints.save_on_leader(output, trainable, optimizer, progress, average, pretrained, world, origin)
                raise Interrupted(output / "checkpoint", progress.epoch, progress.step)
            if world.leader:
                _end_epoch(trainable, data, progress, metrics, output, average, pretrained, reporter)
                curves.request()
            progress.epoch, progress.step = progress.epoch + 1, 0
            checkpoints.save_on_leader(output, trainable, optimizer, progress, average, pretrained, world, origin)
            progress = Progress(**world.share(progress.__dict__))  # rank 0's scores and clock decide for all
            if world.any(stop.requested):
                raise Interrupted(output / "checkpoint", progress.epoch, 0)
    if curves is not None:
        curves.close()
    return progress


def _started(config: Config, train_sents: Sequence[Sentence], source_scheme: str | None, inputs: Inputs,
             output: Path, given: Collection[str], reporter: Reporter, world: World, views: bool,
             dev_sents: Sequence[Sentence] = ()) -> tuple:
    """A new training: (network, optimizer, progress, weight average, pretrained) built from scratch, with
    cross-view training's modules if `views`. The dev tokens decide unseen_remedies = "auto": rank 0's, since
    spawned ranks are given no dev set."""
    dev = world.share([s.tokens for s in dev_sents] if world.leader else None)
    trainable, pretrained = build_trainable(config, train_sents, source_scheme, inputs=inputs, reporter=reporter,
                                            neighbours=world.leader, dev=dev)
    config = trainable.config
    if views:
        trainable = dataclasses.replace(trainable, views=cvt.Views.for_model(trainable.model))
    average = WeightAverage(trainable.model, config.average) if config.average else None
    if not world.leader:  # its own dropout draws (the weights are the same on every rank)
        torch.manual_seed(config.seed + 7919 * world.rank)
    return trainable, make_optimizer(config, trainable.model, trainable.views), Progress(), average, pretrained


def _resumed(config: Config, train_sents: Sequence[Sentence], source_scheme: str | None, inputs: Inputs,
             output: Path, given: Collection[str], reporter: Reporter, world: World, views: bool) -> tuple:
    """A resumed training: the same five from the checkpoint, its config changed where `given` may."""
    trainable, optimizer, progress, average, pretrained = checkpoints.load_checkpoint(output, world, reporter)
    resumed = checkpoints.resumed_config(trainable.config, config, given, output, len(trainable.vocab.frozen) > 0)
    trainable = dataclasses.replace(trainable, config=resumed)
    checkpoints.check_left(trainable.config, progress, output)
    if views != (trainable.views is not None):
        raise InputError("--resume: the checkpoint was trained " + ("without" if views else "with") +
                         " unlabelled text (--unlabeled); resume as it started", path=str(output / "checkpoint"))
    reporter.message(f"resuming from epoch {progress.epoch + 1}, batch {progress.step}")
    return trainable, optimizer, progress, average, pretrained


def _teaching(files: Sequence[dict], trainable: Trainable, data: Data, reporter: Reporter
              ) -> tuple[teachers.Teachers, list] | None:
    """The teachers recorded in the origin (tagger/commands/fitting.py checked them) and their marginals on
    every training sentence, computed once; None without teachers."""
    if not files:
        return None
    start = time.perf_counter()
    found = teachers.load([Path(f["path"]).parent for f in files], trainable.vocab)
    targets = found.targets(data.train)
    reporter.message(f"{len(files)} teacher(s): their marginals on {len(targets):,} training sentences in "
                     f"{time.perf_counter() - start:.1f}s")
    return found, targets


def unlabeled_stream(trainable: Trainable, files: Sequence[str | Path], position: Sequence[int], world: World
                     ) -> Stream:
    """The unlabelled batches of cross-view training, from `position` on (a checkpoint's, or the start); the
    config was checked when the views were built (cvt.Views.for_model)."""
    cfg = trainable.config
    prepare = None
    if cfg.context != "none":  # the frozen encoder's features, computed once a buffer
        prepare = functools.partial(add_context_features,
                                    context=context_network(cfg.context, trainable.model.context))
    return Stream(files, trainable.encode, cfg.tokenizer, step_sentences(cfg, world), cfg.seed, position, prepare)


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

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def run_epoch(trainable: Trainable, optimizer: torch.optim.Optimizer, data: Data, progress: Progress,
              reporter: Reporter, stop: StopOnSigint, average: WeightAverage | None = None,
              model: torch.nn.Module | None = None, world: World | None = None,
              stream: Stream | None = None, teaching: tuple[teachers.Teachers, list] | None = None) -> dict | None:
    """One pass over the training batches (from `progress.step` on); None when stopped by Ctrl-C. With a
    `stream`, unlabelled batches (cross-view training) follow each labelled one, unlabeled_ratio a batch.

    Every rank makes the same global batches (same seed) and trains on its slice of each, so all take the
    same number of steps; a rank whose slice is empty (a batch smaller than the world) trains on a copy of
    the batch's first sentence with weight 0, which keeps DDP's all-reduce going and adds nothing. With
    `teaching` (the teachers and their marginals on data.train), every batch also learns their marginals."""
    cfg, world = trainable.config, world or World()
    model = model or wrap(trainable.model, world, views=trainable.views)
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr / (1 + cfg.lr_decay * progress.epoch)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + progress.epoch)
    lengths = [len(e) for e in data.train]
    batches = length_batches(lengths, step_sentences(cfg, world), lambda n: torch.randperm(n, generator=generator).tolist())
    reporter.start_epoch(progress.epoch, len(data.train))
    trainable.model.train()
    stopping = False
    for k in range(progress.step, len(batches)):  # a resumed epoch starts where it stopped
        if stopping or (world.size == 1 and stop.requested):
            return None
        start = time.perf_counter()
        ids = batches[k]
        soft = None if teaching is None else [teaching[1][i] for i in ids]
        total, stopping = _step(model, optimizer, [data.train[i] for i in ids], cfg.clip, average, progress, world,
                                stop, targets=soft)
        for _ in range(due(k, cfg.unlabeled_ratio) if stream is not None else 0):
            sentences = stream.next_batch()
            soft = None if teaching is None else teaching[0].targets(sentences)  # the teachers', not CVT's
            cvt_total, stopped = _step(model, optimizer, sentences, cfg.clip, average, progress, world, stop,
                                       unlabeled=True, scale=cfg.unlabeled_weight if soft is None else 1.0,
                                       targets=soft)
            stopping = stopping or stopped
            progress.unlabeled_position = stream.position
            progress.unlabeled_sentences += len(sentences)
            progress.epoch_unlabeled += len(sentences)
            progress.epoch_cvt_loss += cvt_total
            reporter.unlabeled(len(sentences), cvt_total / len(sentences))
        seconds = time.perf_counter() - start
        progress.step = k + 1
        progress.epoch_loss += total
        progress.epoch_tokens += sum(lengths[i] for i in ids)
        progress.epoch_seconds += seconds
        progress.seconds += seconds
        reporter.advance(len(ids), total / len(ids))
    return _epoch_metrics(progress, optimizer, len(data.train), world)


def step_sentences(config: Config, world: World) -> int:
    """Sentences of a global batch: batch_size with sync = "step", whose ranks share it to take one process's
    step; batch_size a rank with periodic averaging, whose ranks each take a step of their own, as local SGD
    does (sharing 64 sentences, 2 ranks here took 11.95 ms each for 13.27 ms of one process: bench/README.md)."""
    return config.batch_size * world.size if world.size > 1 and config.sync == "average" else config.batch_size


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, sentences: Sequence[Encoded], clip: float,
          average: WeightAverage | None, progress: Progress, world: World, stop: StopOnSigint,
          unlabeled: bool = False, scale: float = 1.0, targets: Sequence | None = None) -> tuple[float, bool]:
    """One optimizer step on this rank's slice of a global batch, its loss times `scale`, the weight average
    updated; (the loss summed over ranks, whether any rank was asked to stop). unlabeled: the batch is
    unlabelled text and the loss cross-view training's, or with `targets` (each sentence's teacher marginals,
    (T, K)) distillation's."""
    mine = world.shard(sentences)
    weight = world.size / len(sentences) * scale if mine else 0.0
    soft = None if targets is None else torch.from_numpy(teachers.stacked(world.shard(targets) or targets[:1]))
    loss = train_step(model, optimizer, collate(mine or sentences[:1]), clip, weight=weight, unlabeled=unlabeled,
                      targets=soft)
    if average is not None:
        average.update(progress.updates)
    progress.updates += 1
    return world.reduce_step(loss.item() if mine else 0.0, stop.requested)


def _epoch_metrics(progress: Progress, optimizer: torch.optim.Optimizer, sentences: int, world: World) -> dict:
    """The finished epoch's metrics.jsonl line (before dev scores); the epoch's sums start again."""
    metrics = {"epoch": progress.epoch + 1, "loss": progress.epoch_loss / max(sentences, 1),
               "lr": optimizer.param_groups[0]["lr"],
               "tokens_per_s": progress.epoch_tokens / max(progress.epoch_seconds, 1e-9),
               "seconds": progress.epoch_seconds}
    if progress.unlabeled_sentences:
        metrics |= {"unlabeled_sentences": progress.epoch_unlabeled, "unlabeled_total": progress.unlabeled_sentences,
                    "cvt_loss": progress.epoch_cvt_loss / max(progress.epoch_unlabeled, 1)}
    if world.size > 1:
        metrics["processes"] = world.size
    progress.epoch_loss, progress.epoch_tokens, progress.epoch_seconds = 0.0, 0, 0.0
    progress.epoch_unlabeled, progress.epoch_cvt_loss = 0, 0.0
    return metrics


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, clip: float,
               weight: float | None = None, unlabeled: bool = False, targets: torch.Tensor | None = None
               ) -> torch.Tensor:
    """One update on the batch's loss times `weight` (default 1 / sentences: the mean), gradients clipped to
    norm `clip` if set; returns the summed loss. `model(batch)` is the summed loss (distributed.wrap), or
    `model` is the network itself. Under DDP, which averages gradients over ranks, weight = ranks / global
    batch gives every rank the global batch's mean, as one process training on the whole batch. unlabeled:
    the batch is unlabelled text and the loss cross-view training's (`model` wrapped with its views).
    targets (B, T, K): the teachers' marginals, learnt as well (tagger/training/teachers.py)."""
    wrapped = isinstance(model, (Objective, DistributedDataParallel))
    if targets is not None:
        loss = model(batch, unlabeled, targets) if wrapped else teachers.loss(model, batch, targets, not unlabeled)
    else:
        loss = model(batch, unlabeled) if wrapped else model.loss(batch)
    optimizer.zero_grad(set_to_none=True)
    (loss * (1 / len(batch) if weight is None else weight)).backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return loss


def _end_epoch(trainable: Trainable, data: Data, progress: Progress, metrics: dict, output: Path,
               average: WeightAverage | None, pretrained: unseen.Pretrained | None, reporter: Reporter) -> None:
    """Rank 0's end of an epoch: score dev with the weights that would be saved, keep the best, log it."""
    with average.applied() if average else nullcontext(), \
            unseen.drifted(trainable.model, pretrained, trainable.config.unseen_drift):
        _evaluate_and_keep(trainable, data, progress, metrics, output)
    with open(output / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(metrics) + "\n")
    reporter.end_epoch(metrics)


def _evaluate_and_keep(trainable: Trainable, data: Data, progress: Progress, metrics: dict, output: Path) -> None:
    """Dev scores into `metrics`; the model saved in `output` when they are the best so far. Without dev data
    there is no score (no dev_f1 anywhere): every epoch is saved, the last is the model."""
    if not data.dev:
        metrics["eval_seconds"], metrics["minutes"], metrics["best"] = 0.0, progress.seconds / 60, True
        progress.best_epoch = progress.epoch + 1
        trainable.save(output, {"epoch": progress.epoch + 1})
        return
    start = time.perf_counter()
    result = measure(data.dev_gold, tag_encoded(trainable.as_tagger(), data.dev), data.scheme)
    metrics |= {"dev_precision": result["precision"], "dev_recall": result["recall"], "dev_f1": result["f1"]}
    if data.scheme is None:  # plain tags (POS): one tag a token, so the micro F1 above is token accuracy
        metrics["dev_accuracy"] = result["accuracy"]
    metrics["eval_seconds"] = time.perf_counter() - start
    if metrics["dev_f1"] > progress.best_f1:
        progress.best_f1, progress.best_epoch, progress.bad_epochs = metrics["dev_f1"], progress.epoch + 1, 0
        trainable.save(output, {"epoch": progress.epoch + 1, "dev_f1": metrics["dev_f1"]})
        metrics["best"] = True
    else:
        progress.bad_epochs += 1
    metrics["minutes"] = progress.seconds / 60
