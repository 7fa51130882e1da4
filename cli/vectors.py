"""`tagger vectors RAW... --output vec.txt.gz`: word vectors trained on raw text (tagger/vectors.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import typer


class VectorsProgress:
    """tagger.vectors.Reporter on a rich progress bar (stderr): the stage and its sentences/s."""

    def __init__(self, quiet: bool = False):
        from rich.console import Console  # imported when used: `tagger predict` starts without rich.progress
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description:<14}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[speed]:>9,.0f} sentences/s"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True, disable=quiet)
        self.task = None

    def __enter__(self) -> "VectorsProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def stage(self, name: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total, speed=0.0)

    def advance(self, sentences: int) -> None:
        self.progress.update(self.task, advance=sentences)
        self.progress.update(self.task, speed=self.progress.tasks[-1].speed or 0.0)


def register(app: typer.Typer, user_errors: Callable) -> None:
    @app.command()
    @user_errors
    def vectors(
        inputs: List[Path] = typer.Argument(..., metavar="RAW...", help="raw text files, plain or .gz: one "
                                            "paragraph or document a line"),
        output: Path = typer.Option(..., "--output", "-o", help="vectors file to write (word2vec text; gzipped "
                                    "when it ends in .gz), for `tagger train --embeddings`"),
        dim: int = typer.Option(100, "--dim", min=1, help="dimensions of each vector"),
        subword: bool = typer.Option(False, "--subword", help="FastText: rare words' vectors also learn from "
                                     "their character n-grams (slower)"),
        min_count: int = typer.Option(5, "--min-count", min=1, help="words seen fewer times get no vector"),
        epochs: int = typer.Option(5, "--epochs", min=1, help="passes over the text"),
        window: int = typer.Option(5, "--window", min=1, help="context words on each side"),
        workers: int = typer.Option(0, "--workers", min=0, help="training threads (0: one per core)"),
        seed: int = typer.Option(1, "--seed", help="the same seed with --workers 1 gives the same vectors"),
        tokenizer: str = typer.Option("words", "--tokenizer", help="words or chars: the tokeniser of the model "
                                      "that will use the vectors"),
        keep_case: bool = typer.Option(False, "--keep-case", help="keep words' case (default: lower-cased, "
                                       "which the tagger looks up for every casing)"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing OUTPUT"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ) -> None:
        """Train word vectors on raw text (gensim Word2Vec, or FastText with --subword), tokenised as
        `tagger predict` tokenises, for `tagger train --embeddings`."""
        from tagger import vectors as core

        options = core.VectorOptions(dim=dim, subword=subword, min_count=min_count, epochs=epochs, window=window,
                                     workers=workers, seed=seed, lowercase=not keep_case, tokenizer=tokenizer)
        with VectorsProgress(quiet) as progress:
            result = core.train_vectors(inputs, output, options, force=force, reporter=progress)
        if not quiet:
            typer.echo(f"{result['vocabulary']:,} words x {result['dim']} dimensions from {result['sentences']:,} "
                       f"sentences ({result['words']:,} words): read in {result['read_seconds']:.1f}s, trained in "
                       f"{result['train_seconds']:.1f}s ({result['words_per_s']:,.0f} words/s); wrote {output}",
                       err=True)
