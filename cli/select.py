"""`tagger select`: the sentences of an unlabelled pool a person should label next (active learning)."""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

Strategy = Enum("Strategy", {name: name for name in ("mnlp", "least-confidence", "entropy", "random")}, type=str)


class PoolFormat(str, Enum):
    text = "text"
    tokens = "tokens"
    conll = "conll"


class SelectedFormat(str, Enum):
    conll = "conll"
    jsonl = "jsonl"


class Layout(str, Enum):
    auto = "auto"
    conll2003 = "conll2003"
    columns = "columns"
    conllu = "conllu"


def register(app: typer.Typer, user_errors) -> None:
    @app.command()
    @user_errors
    def select(
        model: Path = typer.Argument(..., metavar="MODEL_DIR"),
        pool: str = typer.Argument(..., metavar="POOL", help="unlabelled data, streamed; - for standard input"),
        budget: int = typer.Option(..., "--budget", "-k", min=1, help="how many sentences (raw text: lines) to "
                                   "select"),
        strategy: Strategy = typer.Option("mnlp", "--strategy",  # type: ignore[valid-type]
                                          help="mnlp: log P(best path)/length, lowest first; least-confidence: "
                                          "1 - P(best path); entropy: mean token entropy of the marginals; "
                                          "random: a seeded uniform sample"),
        output: Path = typer.Option(..., "--output", "-o", help="file to write; - for standard output"),
        input_format: PoolFormat = typer.Option(PoolFormat.text, "--input-format",
                                                help="text: a line of raw text is one unit; tokens: a line of "
                                                "space-separated tokens is a sentence; conll: column files "
                                                "(their tags are ignored)"),
        output_format: SelectedFormat = typer.Option(SelectedFormat.conll, "--output-format",
                                                     help="conll: the model's tags as a pre-annotation to "
                                                     "correct; jsonl: with each unit's pool index and score"),
        format: Layout = typer.Option(Layout.auto, "--format", help="column layout of CoNLL input"),
        seed: int = typer.Option(0, "--seed", help="the random strategy's seed"),
        batch_size: int = typer.Option(256, "--batch-size", min=1, help="sentences scored together"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing --output file"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ) -> None:
        """Select the BUDGET sentences of POOL the model is least sure of, most uncertain first, tagged by the
        model as a pre-annotation: label them, train with --init MODEL_DIR, repeat."""
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from tagger import commands, store
        from tagger.api import Tagger
        from tagger.tagging import selection as choosing
        from tagger.tagging.streaming import check_input_file

        choosing.check(budget, strategy.value)
        commands.check_output_file(None if str(output) == "-" else output, force)
        if pool != "-":
            check_input_file(pool)
        tagger = Tagger.load(model)
        console = Console(stderr=True)
        with Progress(SpinnerColumn(), TextColumn("scoring the pool: {task.fields[seen]:,} units"), TimeElapsedColumn(),
                      console=console, transient=True, disable=quiet) as progress:
            task = progress.add_task("select", seen=0, total=None)
            chosen = choosing.select_pool(tagger, pool, budget, strategy.value, input_format.value, format.value,
                                          seed, batch_size, lambda n: progress.update(task, seen=n))
            seen = progress.tasks[0].fields["seen"]
        with store.atomic_file(None if str(output) == "-" else output) as out:
            choosing.write_selected(tagger, chosen, output_format.value, out, strategy.value, batch_size)
        if not quiet:
            where = "standard output" if str(output) == "-" else str(output)
            console.print(f"selected {len(chosen)} of {seen:,} units by {strategy.value}; wrote {where}",
                          markup=False, highlight=False, soft_wrap=True)
