"""`tagger predict MODEL [INPUT...]`: raw text, token lines or CoNLL files tagged as they stream in, in JSONL,
CoNLL or HTML; with --ray, shards on Ray Data."""
from __future__ import annotations

import gc
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Callable, List, Optional

import typer

from cli.options import Format
from tagger.errors import ConfigError
from tagger.writers import WRITERS


class InputFormat(str, Enum):
    text = "text"
    tokens = "tokens"
    conll = "conll"
    jsonl = "jsonl"  # --ray only
    parquet = "parquet"  # --ray only


# the writers' registry, and Parquet shards for --ray (tagger/serving/ray_data.py)
OutputFormat = Enum("OutputFormat", {name: name for name in [*WRITERS, "parquet"]}, type=str)


def register(app: typer.Typer, user_errors: Callable) -> None:
    @app.command()
    @user_errors
    def predict(
        model: Path = typer.Argument(..., metavar="MODEL_DIR", help="a model directory, or an ONNX export of one"),
        inputs: Optional[List[str]] = typer.Argument(None, metavar="[INPUT...]", help="files, plain or gzipped; "
                                                     "standard input if none or -"),
        input_format: InputFormat = typer.Option(InputFormat.text, "--input-format", help="text: a line of raw text "
                                                 "is a record; tokens: a line of space-separated tokens is a "
                                                 "sentence; conll: column files (jsonl, parquet: with --ray)"),
        output_format: Optional[OutputFormat] = typer.Option(None, "--output-format",  # type: ignore[valid-type]
                                                             help="default: the one --output's extension names "
                                                             "(.jsonl, .conll, .html), else jsonl (conll for conll "
                                                             "input)"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="file to write "
                                              "(default: standard output)"),
        format: Format = typer.Option(Format.auto, "--format", help="column layout of CoNLL input"),
        batch_size: int = typer.Option(256, "--batch-size", metavar="N", min=1, help="sentences tagged together"),
        workers: int = typer.Option(0, "--workers", metavar="N", min=0,
                                    help="processes tagging in parallel, order kept (0: one "
                                    "per CPU core for inputs of 1 MiB or more, else 1)"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing --output file"),
        ray: bool = typer.Option(False, "--ray", help="tag on Ray Data: INPUTs are files, directories or globs of "
                                 "text/jsonl/parquet shards, --output a directory of shards, --workers the actors"),
        address: Optional[str] = typer.Option(None, "--address", metavar="ADDRESS",
                                              help="with --ray: a cluster, 'auto' or 'ray://HOST:10001' (default: "
                                              "Ray on this machine)"),
        text_column: str = typer.Option("text", "--text-column", metavar="NAME",
                                        help="with --ray: the JSONL/Parquet text field"),
        scores: bool = typer.Option(False, "--scores", help="add each entity's probability (\"score\"); CoNLL: a "
                                    "column with each tag's marginal probability"),
        min_score: Optional[float] = typer.Option(None, "--min-score", metavar="P", min=0.0, max=1.0,
                                                  help="drop entities whose probability is below P (implies --scores)"),
        n_best: Optional[int] = typer.Option(None, "--n-best", metavar="K", min=1, help="add the K most probable "
                                             "analyses of each line with their probabilities (\"alternatives\"; "
                                             "JSONL)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display (shown only when standard "
                                   "error is a terminal)"),
    ) -> None:
        """Tag raw text (one JSON object per input line), token lines or CoNLL files."""
        import_numpy_with_one_blas_thread()
        from tagger import commands

        asked = output_format.value if output_format else None
        if ray:  # Ray Data reads shards, actors tag them, shards are written (tagger/serving/ray_data.py)
            from tagger.serving.ray_data import quiet_ray_data_logs

            quiet_ray_data_logs()  # no progress lines, nor a task's traceback, around a one-line error
            commands.predict_on_ray(model, inputs or [], output, input_format.value, asked, text_column, batch_size,
                                    workers, address, scores, min_score, n_best)
            return
        if address:
            raise ConfigError("--address names a Ray cluster: it needs --ray")
        from cli.progress import WorkProgress

        # What is loaded lives to the end of the process: frozen, the collector stops walking it every few thousand
        # allocations (tokenising got 1.8x faster) and never writes to it, so forked workers share its pages.
        with WorkProgress("tagged", "lines" if input_format is InputFormat.text else "sentences", quiet) as shown:
            commands.predict(model, inputs or ["-"], input_format.value, asked, output, format=format.value,
                             batch_size=batch_size, force=force, workers=workers, scores=scores, min_score=min_score,
                             n_best=n_best, loaded=gc.freeze, progress=shown.advance)


def import_numpy_with_one_blas_thread() -> None:
    """Import numpy with OpenBLAS starting one thread rather than one per core, unless the user set
    OPENBLAS_NUM_THREADS: tagging runs OpenBLAS on one thread anyway (tagger/tagging/pipeline.py), and starting
    the others, which then spin, cost a cold start about 0.03 s on 2 cores. OpenBLAS reads the variable when it
    loads, so the environment is put back at once: nothing after this, child processes included, sees it."""
    if "numpy" in sys.modules or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]
