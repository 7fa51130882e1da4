"""`tagger card MODEL` and `tagger push MODEL ORG/NAME`: a model's card, and the model shared on the Hugging
Face Hub (tagger/commands/hub.py). Loading one back is `hf://ORG/NAME[@REV]` wherever a model is taken."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Optional

import typer

_LANGUAGE_HELP = "the language of the text it reads (ISO 639-1, e.g. en; again for more), for the card"
_TEST_HELP = "labelled data the model was not trained on: scored, and the score put in the card"


def register(app: typer.Typer, user_errors: Callable) -> None:
    @app.command()
    @user_errors
    def card(
        model: str = typer.Argument(..., metavar="MODEL", help="a model directory or hf://ORG/NAME[@REV]"),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="default: MODEL/README.md; - for "
                                              "standard output"),
        repo: Optional[str] = typer.Option(None, "--repo", metavar="ORG/NAME", help="the name the usage "
                                           "snippet loads"),
        language: Optional[List[str]] = typer.Option(None, "--language", help=_LANGUAGE_HELP),
        test: Optional[str] = typer.Option(None, "--test", help=_TEST_HELP),
        force: bool = typer.Option(False, "--force", help="overwrite an existing card"),
    ) -> None:
        """Write MODEL's model card (README.md: Hub metadata, labels, scores, training command, usage, limits)."""
        from tagger.commands import hub

        if repo is not None:
            hub.check_repo_id(repo)
        written = hub.card(model, output, repo, language or (), test, force)
        if written is not None:
            typer.echo(f"wrote {written}", err=True)

    @app.command()
    @user_errors
    def push(
        model: str = typer.Argument(..., metavar="MODEL", help="a model directory"),
        repo: str = typer.Argument(..., metavar="ORG/NAME", help="the Hub repository (created if missing)"),
        private: bool = typer.Option(False, "--private", help="create the repository private"),
        revision: Optional[str] = typer.Option(None, "--revision", help="a branch to push to (created from "
                                               "main if missing)"),
        dry_run: Optional[Path] = typer.Option(None, "--dry-run", metavar="DIR", help="write what would be "
                                               "uploaded into DIR (new or empty) and upload nothing"),
        card_file: Optional[Path] = typer.Option(None, "--card", metavar="FILE", help="upload this README.md "
                                                 "instead of generating one (e.g. `tagger card -o FILE`, edited)"),
        language: Optional[List[str]] = typer.Option(None, "--language", help=_LANGUAGE_HELP),
        test: Optional[str] = typer.Option(None, "--test", help=_TEST_HELP),
    ) -> None:
        """Upload MODEL to the Hugging Face Hub as ORG/NAME with a generated model card (huggingface_hub; log in
        first with `hf auth login` or set HF_TOKEN). Load it back with hf://ORG/NAME."""
        from tagger.commands import hub

        result = hub.push(model, repo, private, revision, dry_run, language or (), test, card_file)
        typer.echo(json.dumps(result))
