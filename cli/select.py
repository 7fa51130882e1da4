"""`tagger select`: the sentences of an unlabelled pool a person should label next (active learning)."""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from cli.options import Format

Strategy = Enum("Strategy", {name: name for name in ("mnlp", "least-confidence", "entropy", "random")}, type=str)


class PoolFormat(str, Enum):
    auto = "auto"
    text = "text"
    tokens = "tokens"
    conll = "conll"


class SelectedFormat(str, Enum):
    conll = "conll"
    jsonl = "jsonl"


def register(app: typer.Typer, user_errors) -> None:
    @app.command()
    @user_errors
    def select(
        model: Path = typer.Argument(..., metavar="MODEL_DIR", help="a model directory (not an ONNX export)"),
        pool: str = typer.Argument(..., metavar="POOL", help="unlabelled data, streamed, plain or gzipped; - for "
                                   "standard input"),
        budget: int = typer.Option(..., "--budget", "-k", min=1, metavar="K", help="how many sentences (raw "
                                   "text: lines) to select"),
        strategy: Strategy = typer.Option("mnlp", "--strategy",  # type: ignore[valid-type]
                                          help="mnlp: log P(best path)/length, lowest first; least-confidence: "
                                          "1 - P(best path); entropy: mean token entropy of the marginals; "
                                          "random: a seeded uniform sample"),
        output: Path = typer.Option(..., "--output", "-o", metavar="FILE", help="file to write; - for standard "
                                    "output"),
        input_format: PoolFormat = typer.Option(PoolFormat.auto, "--input-format",
                                                help="auto: conll when the first lines look like CoNLL columns, "
                                                "else text; text: a line of raw text is one unit; tokens: a line "
                                                "of space-separated tokens is a sentence; conll: column files "
                                                "(their tags are ignored)"),
        output_format: SelectedFormat = typer.Option(SelectedFormat.conll, "--output-format",
                                                     help="conll: the model's tags as a pre-annotation to "
                                                     "correct; jsonl: with each unit's pool index and score"),
        format: Format = typer.Option(Format.auto, "--format", help="column layout of CoNLL input"),
        seed: int = typer.Option(0, "--seed", metavar="N", help="the random strategy's seed"),
        batch_size: int = typer.Option(256, "--batch-size", min=1, help="sentences scored together"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing --output file"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display (shown only when standard "
                                   "error is a terminal) and no summary line"),
    ) -> None:
        """Select the BUDGET sentences of POOL the model is least sure of, most uncertain first, tagged by the
        model as a pre-annotation: label them, train with --init MODEL_DIR, repeat."""
        from cli.progress import WorkProgress
        from tagger import commands

        def say(text: str) -> None:  # --quiet keeps the warnings, not the notes
            if not (quiet and text.startswith("note:")):
                typer.echo(text, err=True)

        with WorkProgress("scored", "units of the pool", quiet) as shown:
            result = commands.select(model, pool, budget, strategy.value, input_format.value, output_format.value,
                                     output, format.value, seed, batch_size, force, warn=say, progress=shown.advance)
        if not quiet:
            where = "standard output" if str(output) == "-" else str(output)
            typer.echo(f"selected {result['selected']} of {result['seen']:,} units by {strategy.value}; wrote "
                       f"{where}", err=True)
