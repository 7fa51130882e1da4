"""Training curves from metrics.jsonl: loss, dev F1 and tokens/s by epoch, the best epoch marked.

matplotlib is imported inside the functions that draw (it costs a tagging cold start ~0.3 s otherwise), and
only through `matplotlib.figure.Figure`: no pyplot, no backend switch, no rcParams change, so a caller's
matplotlib state is left as it was. The file format follows the path's suffix (.svg, .png, .pdf).
"""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Callable, Sequence

from tagger.errors import ConfigError, InputError
from tagger.store import atomic_write

FORMATS = ("svg", "png", "pdf")
PANELS = (("loss", "training loss"), ("dev_f1", "dev F1"), ("tokens_per_s", "tokens/s"))
SCALES = {"dev_f1": 100.0}  # metrics.jsonl keeps F1 in [0, 1]; the plot shows it as the CLI prints it, 0-100
TRAINING_PLOT = "training.svg"


def read_metrics(path: Path) -> list[dict]:
    """The epochs of a metrics.jsonl file; a line that is not a JSON object is an InputError with its line."""
    if not path.is_file():
        raise InputError("no such file (is this a model or run directory?)", path=str(path))
    epochs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"not JSON: {e.msg}", path=str(path), line=number) from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise InputError("not an epoch's metrics (a JSON object with \"epoch\")", path=str(path), line=number)
        epochs.append(record)
    return epochs


def best_epoch(metrics: Sequence[dict]) -> int | None:
    """The epoch training kept: the last one marked "best", else the one with the highest dev F1."""
    marked = [m["epoch"] for m in metrics if m.get("best")]
    if marked:
        return marked[-1]
    scored = [m for m in metrics if m.get("dev_f1") is not None]
    return max(scored, key=lambda m: m["dev_f1"])["epoch"] if scored else None


def plot_training(metrics: Sequence[dict], path: Path, title: str = "training") -> None:
    """Draw one run's curves into `path`, written atomically."""
    figure, axes = _figure()
    _draw(axes, metrics, label=None, colour="C0")
    best = best_epoch(metrics)
    if best is not None:
        for ax in axes:
            ax.axvline(best, color="C3", linestyle="--", linewidth=1, label=f"best epoch {best}")
        axes[0].legend(loc="upper right", fontsize="small")
    figure.suptitle(title)
    _save(figure, path)


def plot_runs(run_dirs: Sequence[Path], path: Path) -> None:
    """Overlay the curves of several runs (their metrics.jsonl) into `path`, each run's best epoch marked."""
    runs = [(Path(d), read_metrics(Path(d) / "metrics.jsonl")) for d in run_dirs]
    for d, metrics in runs:
        if not metrics:
            raise InputError("holds no epoch yet", path=str(d / "metrics.jsonl"))
    names = [d.name for d, _ in runs]
    if len(set(names)) < len(names):  # two runs called "model": tell them apart by their whole path
        names = [str(d) for d, _ in runs]
    figure, axes = _figure()
    for i, ((_, metrics), name) in enumerate(zip(runs, names)):
        colour = f"C{i % 10}"
        _draw(axes, metrics, label=name, colour=colour)
        best = best_epoch(metrics)
        if best is not None:
            for ax, (key, _) in zip(axes, PANELS):
                y = next((m.get(key) for m in metrics if m["epoch"] == best), None)
                if y is not None:
                    ax.plot([best], [y], marker="*", markersize=12, color=colour, linestyle="none")
    axes[0].legend(loc="upper right", fontsize="small")
    figure.suptitle("runs compared (\u2605 best epoch)")
    _save(figure, path)


def redraw(output_dir: Path) -> str | None:
    """Redraw output_dir/training.svg from its metrics.jsonl, for the training loop after each epoch.

    Never raises: a plot must not stop a training run. Returns None when drawn, else a one-line warning.
    """
    try:
        output_dir = Path(output_dir)
        plot_training(read_metrics(output_dir / "metrics.jsonl"), output_dir / TRAINING_PLOT, title=output_dir.name)
        return None
    except Exception as e:  # noqa: BLE001 -- any failure (a missing font, a full disk) is only a warning
        return f"warning: {Path(output_dir) / TRAINING_PLOT} not drawn: {type(e).__name__}: {e}".replace("\n", " ")


class Redrawer:
    """Redraws training.svg after each epoch in a background thread, so that a plot never slows training:
    an epoch that ends while the last drawing is still running skips its turn, and `close` draws the final
    state. Warnings go to `warn`, one line each."""

    def __init__(self, output_dir: Path, warn: Callable[[str], None]):
        self.output_dir, self.warn, self.thread = Path(output_dir), warn, None

    def request(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self.thread = threading.Thread(target=self._draw, name="training-plot", daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.thread.join()
        self._draw()

    def _draw(self) -> None:
        warning = redraw(self.output_dir)
        if warning:
            self.warn(warning)


def check_plot_path(path: Path) -> str:
    """The format of a plot file from its suffix; ConfigError for one matplotlib is not asked to write."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConfigError(f"{path}: unknown plot format {path.suffix or '(no suffix)'!r}; use "
                          f"{', '.join('.' + f for f in FORMATS)}")
    return fmt


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 7.5), layout="constrained")
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    for ax, (_, name) in zip(axes, PANELS):
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    return figure, axes


def points(metrics: Sequence[dict], key: str) -> list[tuple[int, float]]:
    """(epoch, value) of one panel, on the scale the CLI prints (dev F1 0-100), epochs without it left out."""
    scale = SCALES.get(key, 1.0)
    return [(m["epoch"], scale * m[key]) for m in metrics if m.get(key) is not None]


def _draw(axes, metrics: Sequence[dict], label: str | None, colour: str) -> None:
    for ax, (key, _) in zip(axes, PANELS):
        shown = points(metrics, key)
        if shown:
            xs, ys = zip(*shown)
            ax.plot(xs, ys, marker="o", markersize=3, color=colour, label=label)


def _save(figure, path: Path) -> None:
    fmt = check_plot_path(path)
    buffer = io.BytesIO()
    # no creation date in the file: redrawing it every epoch changes only what the metrics change
    figure.savefig(buffer, format=fmt, metadata={"Date": None} if fmt in ("svg", "pdf") else None)
    atomic_write(path, buffer.getvalue())
