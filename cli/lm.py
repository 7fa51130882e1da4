"""`tagger lm RAW... --output LM/`: a character language model trained on raw text (tagger/training/lm.py),
for `tagger train --embeddings lm:LM/`."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, List

import typer

from cli.progress import Display, may_be_terminal


class LMProgress(Display):
    """tagger.training.lm.LMReporter on a rich progress bar (stderr, a terminal only): characters/s, bits per
    character, and a line per epoch with the held-out bits per character."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.progress, self.task, self.bits = None, None, float("nan")
        if not quiet and may_be_terminal():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[speed]:>9,.0f} chars/s  {task.fields[bits]:.3f} bits/char"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=True)

    def start_epoch(self, epoch: int, chars: int) -> None:
        if self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task("lm", total=chars, epoch=epoch, speed=0.0, bits=float("nan"))

    def advance(self, chars: int, bits: float) -> None:
        if not math.isnan(bits):  # a moving mean: one batch's loss is noisy
            self.bits = bits if math.isnan(self.bits) else 0.98 * self.bits + 0.02 * bits
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=chars, bits=self.bits)
            self.progress.update(self.task, speed=self.progress.tasks[-1].speed or 0.0)

    def end_epoch(self, metrics: dict) -> None:
        self.message(f"epoch {metrics['epoch']}: held-out {metrics['heldout_bits_per_char']:.3f} bits/char "
                     f"({metrics['train_seconds']:,.0f}s of training so far)")

    def message(self, text: str) -> None:
        if not self.quiet:
            typer.echo(text, err=True)


def register(app: typer.Typer, user_errors: Callable) -> None:
    @app.command()
    @user_errors
    def lm(
        inputs: List[Path] = typer.Argument(..., metavar="RAW...", help="raw text files, plain or .gz: one "
                                            "paragraph or document a line"),
        output: Path = typer.Option(..., "--output", "-o", help="directory to write the LM to, for `tagger "
                                    "train --embeddings lm:DIR`"),
        hidden: int = typer.Option(256, "--hidden", min=1, help="LSTM units a direction (the tagger reads 2x "
                                   "this a token; tagging time grows with its square)"),
        char_dim: int = typer.Option(32, "--char-dim", min=1, help="character embedding size"),
        epochs: int = typer.Option(1, "--epochs", min=1, help="passes over the text"),
        max_minutes: float = typer.Option(0.0, "--max-minutes", min=0, help="stop and save after this many "
                                          "minutes of training (0: no limit)"),
        max_chars: int = typer.Option(0, "--max-chars", min=0, help="read at most this many characters of "
                                      "text (0: all)"),
        chunk: int = typer.Option(250, "--chunk", min=2, help="characters a training sequence"),
        batch_size: int = typer.Option(32, "--batch-size", min=1, help="sequences a step"),
        lr: float = typer.Option(0.002, "--lr", min=0.0, help="Adam's learning rate"),
        dropout: float = typer.Option(0.1, "--dropout", min=0.0, max=0.99, help="dropout on the characters "
                                      "and the LSTM's output"),
        seed: int = typer.Option(1, "--seed", help="the same seed and threads give the same LM"),
        threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0: one a core)"),
        resume: bool = typer.Option(False, "--resume", help="continue an interrupted run from OUTPUT/checkpoint"),
        force: bool = typer.Option(False, "--force", help="overwrite a non-empty OUTPUT"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ) -> None:
        """Train a character language model (forward and backward) on raw text, tokenised as `tagger
        predict` tokenises, whose states `tagger train --embeddings lm:DIR` reads as contextual embeddings.
        Ctrl-C saves a checkpoint that --resume continues."""
        from tagger.training import lm as core
        from tagger.training.state import Interrupted

        options = core.LMOptions(hidden=hidden, char_dim=char_dim, epochs=epochs, max_minutes=max_minutes,
                                 max_chars=max_chars, chunk=chunk, batch_size=batch_size, lr=lr, dropout=dropout,
                                 seed=seed, threads=threads)
        try:
            with LMProgress(quiet) as progress:
                result = core.train_lm(inputs, output, options, resume=resume, force=force, reporter=progress)
        except Interrupted as e:  # Ctrl-C: a checkpoint was saved; say how to go on, no traceback
            typer.echo(f"{e}: continue with the same command and --resume", err=True)
            raise typer.Exit(130)
        if not quiet:
            last = result["epochs"][-1]
            typer.echo(f"{result['train_chars']:,} characters, {result['chars']} distinct; held-out "
                       f"{last['heldout_bits_per_char']:.3f} bits/char after {result['train_seconds']:,.0f}s "
                       f"({result['chars_per_s']:,.0f} chars/s); wrote {output}", err=True)
