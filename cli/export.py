"""`tagger export MODEL --to onnx OUTPUT_DIR`: the model as ONNX graphs with their preprocessing spec."""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Callable

import typer


class ExportFormat(str, Enum):
    onnx = "onnx"


def register(app: typer.Typer, user_errors: Callable) -> None:
    @app.command()
    @user_errors
    def export(
        model: Path = typer.Argument(..., metavar="MODEL_DIR"),
        output: Path = typer.Argument(..., metavar="OUTPUT_DIR"),
        to: ExportFormat = typer.Option(..., "--to", help="onnx: model.onnx (network and CRF Viterbi), "
                                        "lookup.onnx (string -> id) and preprocess.json (vocabularies, rules, "
                                        "test vectors)"),
        force: bool = typer.Option(False, "--force", help="overwrite a non-empty OUTPUT_DIR (never a model "
                                   "directory)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing on success"),
    ) -> None:
        """Write MODEL_DIR for other runtimes; `tagger predict OUTPUT_DIR` then tags through onnxruntime."""
        from tagger.export import export_onnx

        result = export_onnx(model, output, force=force)
        if not quiet:
            checked = result["checked"]
            typer.echo(json.dumps(result))
            if checked is None:
                typer.echo("warning: onnxruntime is not installed: the graph was not checked against the numpy "
                           "engine (pip install 'bilstm-tagger[onnx]')", err=True)
