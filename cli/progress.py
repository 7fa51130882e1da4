"""Rich progress displays on standard error: training's (sentences/s, loss and the dev score: entity F1, or
token accuracy for plain tags such as POS), and WorkProgress for long tagging work (predict, select,
evaluate). Both draw their bar only on a terminal and are silent with --quiet."""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress


def may_be_terminal() -> bool:
    """Whether rich could take standard error for a terminal: it is a tty, or FORCE_COLOR or TTY_COMPATIBLE=1
    says to act as one (rich's own rules then decide). False spares importing rich at all: piped, `tagger
    predict` starts without it."""
    return sys.stderr.isatty() or "FORCE_COLOR" in os.environ or os.environ.get("TTY_COMPATIBLE") == "1"


class Display:
    """A rich display (`self.progress`) started and stopped around a block; None: nothing is shown."""

    progress: "Progress | None" = None

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()


class WorkProgress(Display):
    """Units done (lines or sentences), tokens and tokens/s of tagging work, on a terminal's standard error;
    nothing at all when standard error is not a terminal (a pipe, a log file) or `quiet`. Its `advance`
    is the `progress` callback of tagger.commands' predict, select and evaluate."""

    def __init__(self, action: str, unit: str, quiet: bool = False):
        self.units, self.tokens = 0, 0
        self._started = time.perf_counter()
        self.progress = None if quiet or not may_be_terminal() else _terminal_display(action, unit)
        self.shown = self.progress is not None
        if self.progress is not None:
            self.task = self.progress.add_task(action, total=None, units=0, rate=0.0)

    def advance(self, units: int, tokens: int) -> None:
        self.units += units
        self.tokens += tokens
        if self.progress is not None:
            rate = self.tokens / max(time.perf_counter() - self._started, 1e-9)
            self.progress.update(self.task, completed=self.tokens, units=self.units, rate=rate)


def _terminal_display(action: str, unit: str) -> Progress | None:
    """WorkProgress's transient rich display, or None when rich finds standard error is not a terminal."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    return Progress(SpinnerColumn(), TextColumn(f"{action} {{task.fields[units]:,}} {unit}, {{task.completed:,.0f}} "
                                                "tokens, {task.fields[rate]:,.0f} tokens/s"),
                    TimeElapsedColumn(), console=console, transient=True)


class TrainProgress:
    """Implements tagger.train.Reporter on a rich Progress bar (on stderr, so stdout stays clean)."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.quiet = quiet
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed]:>7.0f} sent/s  loss {task.fields[loss]:.3f}{task.fields[extra]}  best dev "
                       "{task.fields[metric]} {task.fields[best]}"),
            TimeRemainingColumn(), console=self.console, transient=True, disable=quiet)
        self.task = None
        self.best, self.metric = "-", "F1"
        self._loss, self._seen = 0.0, 0

    def __enter__(self) -> "TrainProgress":
        return self  # the bar starts with the first epoch: an error before it is one line, not a blank one first

    def __exit__(self, *exc) -> None:
        if self.task is not None:  # rich's stop() prints a line break even when the bar never started
            self.progress.stop()

    def start_epoch(self, epoch: int, sentences: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        else:
            self.progress.start()
        self._loss, self._seen = 0.0, 0
        self._cvt_loss, self._unlabeled = 0.0, 0
        self.task = self.progress.add_task("train", total=sentences, epoch=epoch + 1, speed=0.0, loss=0.0,
                                           best=self.best, metric=self.metric, extra="")

    def advance(self, sentences: int, loss: float) -> None:
        self._loss += loss * sentences
        self._seen += sentences
        task = self.progress.tasks[-1] if self.progress.tasks else None
        speed = task.speed or 0.0 if task else 0.0
        self.progress.update(self.task, advance=sentences, loss=self._loss / self._seen, speed=speed)

    def unlabeled(self, sentences: int, loss: float) -> None:
        """Cross-view training's unlabelled sentences so far this epoch, and their mean loss."""
        self._cvt_loss += loss * sentences
        self._unlabeled += sentences
        self.progress.update(self.task, extra=f"  + {self._unlabeled:,} unlabelled, cvt loss "
                                              f"{self._cvt_loss / self._unlabeled:.3f}")

    def end_epoch(self, m: dict) -> None:
        self.metric = "accuracy" if "dev_accuracy" in m else "F1"
        if m.get("best"):
            self.best = f"{100 * m['dev_f1']:.2f}"
        if not self.quiet:
            self.console.print(f"epoch {m['epoch']:>3}  loss {m['loss']:.3f}  dev {self.metric} "
                               f"{100 * m.get('dev_f1', 0):6.2f}"
                               f"{' *' if m.get('best') else '  '}  {m['tokens_per_s']:,.0f} tokens/s  "
                               f"{m['seconds']:.1f}s + eval {m['eval_seconds']:.1f}s"
                               + (f"  ({m['unlabeled_sentences']:,} unlabelled sentences, cvt loss "
                                  f"{m['cvt_loss']:.3f})" if "unlabeled_sentences" in m else ""))

    def message(self, text: str) -> None:
        """Print `text` as it is: no rich markup (a path may hold `[...]`), no wrapping inside a path."""
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
