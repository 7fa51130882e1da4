"""What every training module shares, kept apart so that imports go one way: where training stands
(`Progress`, saved in each checkpoint), what it tells the outside world (`Reporter`), and how it ends
early (`Interrupted`, raised on every process together).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tagger.config import Config


class Reporter(Protocol):
    """What the loop tells the outside world (the CLI draws it with rich; tests pass Silent)."""

    def start_epoch(self, epoch: int, sentences: int) -> None: ...
    def advance(self, sentences: int, loss: float) -> None: ...
    def unlabeled(self, sentences: int, loss: float) -> None: ...  # cross-view training's batches (--unlabeled)
    def end_epoch(self, metrics: dict) -> None: ...
    def message(self, text: str) -> None: ...


class Silent:
    """A Reporter that says nothing: for tests, benchmarks and every process but the first."""

    def start_epoch(self, epoch: int, sentences: int) -> None: ...
    def advance(self, sentences: int, loss: float) -> None: ...
    def unlabeled(self, sentences: int, loss: float) -> None: ...
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
    best_f1: float = -1.0    # the best dev score so far (F1, or token accuracy for plain tags)
    best_epoch: int = -1
    bad_epochs: int = 0
    seconds: float = 0.0     # training time so far, for max_minutes
    epoch_loss: float = 0.0  # sums over the batches of the current epoch done so far (they survive a resume)
    epoch_tokens: int = 0
    epoch_seconds: float = 0.0
    updates: int = 0         # optimizer steps since the start (for the weight average's warm-up)
    unlabeled_sentences: int = 0  # unlabelled sentences trained on since the start (cross-view training)
    unlabeled_position: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])  # tagger/training/unlabeled.py
    epoch_unlabeled: int = 0      # the current epoch's unlabelled sentences and cross-view loss so far
    epoch_cvt_loss: float = 0.0

    def out_of_time_or_patience(self, config: Config) -> bool:
        """Whether training ends before `config.epochs`: dev stopped improving, or max_minutes is used up."""
        if self.bad_epochs >= config.patience:
            return True
        return bool(config.max_minutes) and self.seconds >= 60 * config.max_minutes
