"""Training curves: training.svg redrawn from metrics.jsonl, `tagger plot` over runs, failures as warnings."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from tagger.reports import plots


def write_metrics(run: Path, f1s: list[float]) -> Path:
    """A run directory whose metrics.jsonl has one epoch per dev F1, the best ones marked as training does."""
    run.mkdir(parents=True, exist_ok=True)
    best, lines = -1.0, []
    for epoch, f1 in enumerate(f1s, start=1):
        lines.append(json.dumps({"epoch": epoch, "loss": 5.0 / epoch, "tokens_per_s": 20000 + 100 * epoch,
                                 "dev_f1": f1, "best": f1 > best}))
        best = max(best, f1)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return run


def svg_root(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def lines_drawn(path: Path) -> int:
    return sum(1 for g in svg_root(path).iter("{http://www.w3.org/2000/svg}g") if g.get("id", "").startswith("line2d"))


def test_best_epoch_is_the_last_marked_best_else_the_highest_dev_f1():
    assert plots.best_epoch([{"epoch": 1, "best": True}, {"epoch": 2, "best": True}, {"epoch": 3}]) == 2
    assert plots.best_epoch([{"epoch": 1, "dev_f1": 0.5}, {"epoch": 2, "dev_f1": 0.7}, {"epoch": 3, "dev_f1": 0.6}]) == 2
    assert plots.best_epoch([{"epoch": 1, "loss": 3.0}]) is None


def test_redraw_writes_training_svg_that_parses(tmp_path):
    run = write_metrics(tmp_path / "run", [0.5, 0.7, 0.65])
    assert plots.redraw(run) is None
    svg_root(run / "training.svg")
    assert not list(run.glob(".training.svg.*"))  # written through a temporary file, none left behind


def test_redraw_after_a_real_training_run(trained_model, tmp_path):
    run = tmp_path / "model"
    run.mkdir()
    shutil.copy(trained_model / "metrics.jsonl", run / "metrics.jsonl")
    assert plots.redraw(run) is None
    svg_root(run / "training.svg")


def test_redraw_never_raises_it_warns_in_one_line(tmp_path):
    assert plots.redraw(tmp_path / "nowhere").startswith("warning: ")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "lo\n', encoding="utf-8")
    warning = plots.redraw(run)
    assert warning.startswith("warning: ") and "metrics.jsonl:2" in warning and "\n" not in warning
    assert not (run / "training.svg").exists()


def test_tagger_plot_overlays_two_runs(tmp_path):
    a, b = write_metrics(tmp_path / "adam", [0.6, 0.8]), write_metrics(tmp_path / "sgd", [0.4, 0.5, 0.7, 0.65])
    one, two = tmp_path / "one.svg", tmp_path / "curves.svg"
    result = CliRunner().invoke(app, ["plot", str(a), str(b), "-o", str(two)])
    assert result.exit_code == 0, result.output
    plots.plot_runs([a], one)
    assert lines_drawn(two) > lines_drawn(one)


def test_tagger_plot_writes_png_too(tmp_path):
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(app, ["plot", str(write_metrics(tmp_path / "run", [0.5])), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_tagger_plot_mistakes_are_one_line_errors(tmp_path):
    run = write_metrics(tmp_path / "run", [0.5])
    (tmp_path / "taken.svg").write_text("x", encoding="utf-8")
    cases = {("plot", str(tmp_path / "empty"), "-o", str(tmp_path / "c.svg")): "metrics.jsonl: no such file",
             ("plot", str(run), "-o", str(tmp_path / "c.txt")): "unknown plot format '.txt'",
             ("plot", str(run), "-o", str(tmp_path / "taken.svg")): "--force"}
    (tmp_path / "empty").mkdir()
    for args, fragment in cases.items():
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 1 and result.output.startswith("error: "), result.output
        assert fragment in result.output and len(result.output.strip().splitlines()) == 1


def test_plotting_leaves_matplotlib_settings_as_they_were(tmp_path):
    import matplotlib

    before, backend = dict(matplotlib.rcParams), matplotlib.get_backend()
    plots.plot_runs([write_metrics(tmp_path / "run", [0.5, 0.6])], tmp_path / "c.svg")
    assert dict(matplotlib.rcParams) == before and matplotlib.get_backend() == backend


def test_tagging_does_not_import_matplotlib():
    code = ("import sys, cli.main, tagger.commands, tagger.api, tagger.reports.html, tagger.reports.plots; "
            "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent.parent)
    assert done.stdout.strip() == "False"


def test_training_draws_training_svg_into_the_model_directory(trained_model):
    root = svg_root(trained_model / "training.svg")  # the session's tiny model: drawn after its last epoch
    assert root.tag.endswith("svg")


def test_dev_f1_is_drawn_on_the_clis_0_to_100_scale():
    metrics = [{"epoch": 1, "dev_f1": 0.5, "loss": 2.0}, {"epoch": 2, "loss": 1.0}, {"epoch": 3, "dev_f1": 0.9123}]
    assert plots.points(metrics, "dev_f1") == [(1, 50.0), (3, 91.23)]  # as `train` prints it: dev F1 91.23
    assert plots.points(metrics, "loss") == [(1, 2.0), (2, 1.0)]
