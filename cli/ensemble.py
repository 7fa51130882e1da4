"""`tagger ensemble M1 M2 ... --output DIR`: several models as one model directory (tagger/commands/ensemble.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import typer


def register(app: typer.Typer, user_errors: Callable) -> None:
    @app.command()
    @user_errors
    def ensemble(
        models: List[Path] = typer.Argument(..., metavar="MODEL...", help="two or more model directories trained "
                                            "on the same corpus with the same vectors (e.g. several seeds)"),
        output: Path = typer.Option(..., "--output", "-o", help="the ensemble's model directory to write"),
        force: bool = typer.Option(False, "--force", help="overwrite an existing OUTPUT"),
    ) -> None:
        """Write MODELs as one model: their exact token marginals averaged, decoded under the scheme's rules."""
        from tagger.commands.ensemble import build

        result = build(models, output, force=force)
        scores = ", ".join("?" if f is None else f"{100 * f:.2f}" for f in result["member_dev_f1"])
        typer.echo(f"wrote {output}: an ensemble of {len(models)} models (their dev F1: {scores}); use it as "
                   f"any model: tagger predict/evaluate/serve/select/calibrate/info {output}")
