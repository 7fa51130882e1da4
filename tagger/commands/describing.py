"""`tagger info` and `tagger plot`: what a model is, and how its training went."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tagger.api import Tagger
from tagger.commands.predicting import load_model
from tagger.paths import check_output_file


def info(model: Path) -> dict:
    """Tagger.info() of a model directory, or of an ONNX export directory (then with "export": "onnx")."""
    tagger = load_model(model)
    about = tagger.info()
    return about if type(tagger) is Tagger else {**about, "export": "onnx"}


def plot(run_dirs: Sequence[Path], output: Path, force: bool = False) -> None:
    """Draw the training curves of the runs' metrics.jsonl, overlaid, into `output` (.svg, .png or .pdf)."""
    from tagger.reports import plots

    plots.check_plot_path(output)
    check_output_file(output, force)
    plots.plot_runs(run_dirs, output)
