"""The `tagger` command: parses arguments, calls tagger.commands, prints. No logic of its own. What a command
needs is imported when it runs, so that `tagger predict` starts without the training, Ray, ONNX or web stack."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from cli.options import Format, Scheme, Target
from tagger.errors import USER_ERRORS

# Plain click help: one line an option (no type column, no <bool> on flags), as wide as a terminal allows;
# piped (no terminal to measure), 120 columns rather than click's fallback of 80.
HELP_WIDTH = 120
EXIT_CODES = """Exit status: 0 success; 1 a user's error (one line: error: path:line: problem); 2 wrong usage or a bad
option value; 3 `tagger serve` could not start its server (its port in use); 130 interrupted (Ctrl-C)."""
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings={"max_content_width": HELP_WIDTH,
                                    "terminal_width": None if sys.stdout.isatty() else HELP_WIDTH},
                  help="Sequence labelling with a BiLSTM-CRF: train on CoNLL files, tag raw text, score entity F1.",
                  epilog=EXIT_CODES)


def show_version(value: bool) -> None:
    if value:
        from tagger import __version__

        typer.echo(f"tagger {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Sequence labelling with a BiLSTM-CRF: train on CoNLL files, tag raw text, score entity F1."""


def user_errors(command: Callable) -> Callable:
    """A user's mistake becomes `error: ...` on stderr and exit status 1, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1)
        except BrokenPipeError:
            raise typer.Exit(0)
    return wrapper


@app.command()
@user_errors
def train(
    train_data: str = typer.Argument(..., metavar="TRAIN", help="CoNLL file, dataset name or local datasets dir"),
    dev: str = typer.Option(..., "--dev", metavar="FILE",
                            help="development data: chooses the best epoch and stops training"),
    output: Path = typer.Option(..., "--output", "-o", metavar="DIR", help="model directory to write"),
    test: Optional[str] = typer.Option(None, "--test", metavar="FILE", help="scored with the best model at the end"),
    embeddings: Optional[List[Path]] = typer.Option(None, "--embeddings", metavar="FILE",
                                                    help="word vectors, GloVe or word2vec "
                                                    "text; given again, the files' vectors are concatenated "
                                                    "(stacked); 'jieba': the character vectors of an installed "
                                                    "jieba's LAC model"),
    lexicon: Optional[str] = typer.Option(None, "--lexicon", metavar="FILE",
                                          help="words, one a line with an optional frequency, "
                                          "whose B/M/E/S matches each character sees; 'jieba': the dictionary "
                                          "of an installed jieba (pip install jieba). Saved with the model"),
    bigram_embeddings: Optional[Path] = typer.Option(None, "--bigram-embeddings", metavar="FILE",
                                                     help="vectors of character "
                                                     "bigrams (e.g. 北京), in --embeddings' formats"),
    context: Optional[str] = typer.Option(None, "--context", metavar="NAME",
                                          help="'jieba': an installed jieba's LAC network "
                                          "(Chinese words, parts of speech, names) as a frozen encoder whose "
                                          "outputs the BiLSTM reads; or a lac_small directory. Saved with the model"),
    unlabeled: Optional[List[Path]] = typer.Option(None, "--unlabeled", metavar="FILE", help="raw text (plain or "
                                                   ".gz, a paragraph a line) to learn from by cross-view "
                                                   "training; given again, more files. Streamed, never loaded "
                                                   "whole; the saved model tags as fast as without it"),
    teacher: Optional[List[Path]] = typer.Option(None, "--teacher", metavar="MODEL_DIR", help="a trained model "
                                                 "or ensemble (tagger ensemble) whose exact marginals the model "
                                                 "learns too (distillation; with --unlabeled, on the raw text "
                                                 "as well); given again, their mean"),
    bigrams: Optional[str] = typer.Option(None, "--bigrams", metavar="MODE",
                                          help="on | off | auto (default: on when the "
                                          "tokeniser is chars)"),
    format: Format = typer.Option(Format.auto, "--format", help="column layout of the files"),
    tag_column: Optional[int] = typer.Option(None, "--tag-column", metavar="N", help="0-based tag column "
                                             "(default: the last); saved with the model, which evaluate and "
                                             "calibrate then read"),
    scheme: Scheme = typer.Option(Scheme.auto, "--scheme", help="tagging scheme of the files (auto: detect); "
                                  "one the tags contradict is refused"),
    config_file: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="TOML file of "
                                               "hyperparameters (default: the built-in defaults)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, metavar="N", help="at most N epochs; training "
                                         "stops earlier when dev has not improved for `patience` epochs "
                                         "(default: the config's, 150)"),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="random seed: the same seed and data "
                                       "give the same model (default: the config's, 1)"),
    features: Optional[str] = typer.Option(None, "--features", metavar="COLUMNS",
                                           help="extra input columns, e.g. 1,2 or pos,chunk"),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", metavar="NAME",
                                            help="raw-text tokeniser saved with the model: "
                                            "words or chars"),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", min=0,
                                          help="torch threads per training process "
                                          "(default 1; 0: torch's default, one per core)"),
    processes: int = typer.Option(1, "--processes", metavar="N", min=1, help="data-parallel training processes on this "
                                  "machine (torch.distributed; under torchrun, leave it out)"),
    sync: Optional[str] = typer.Option(None, "--sync", help="how several processes meet: average (default: "
                                       "they average their weights every sync_period steps) or step (DDP: "
                                       "gradients all-reduced every step)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUTPUT's last checkpoint"),
    init: Optional[Path] = typer.Option(None, "--init", metavar="MODEL_DIR", help="start from this model's "
                                        "weights and vocabulary (warm start: the next round of labels); new "
                                        "words are read as the model reads them (pretrained vector, else unknown)"),
    extend_tags: bool = typer.Option(False, "--extend-tags", help="with --init: tags of TRAIN the model lacks "
                                     "are added (else they are an error)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing model in OUTPUT"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print nothing but errors (default: a line an epoch, "
                               "and a progress bar when standard error is a terminal)"),
) -> None:
    """Train a BiLSTM-CRF on TRAIN, keeping the best model on DEV in OUTPUT. The progress bar shows only on
    a terminal; the epoch lines go to standard error."""
    import torch

    from cli.formatting import format_table
    from cli.progress import TrainProgress
    from tagger import commands
    from tagger.training.state import Interrupted

    try:  # a process-wide setting, so here; torch allows it once, before any inter-op work
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (several commands in one process, as in tests)
        pass
    overrides = {k: v for k, v in {"epochs": epochs, "seed": seed, "tokenizer": tokenizer, "threads": threads,
                                   "bigrams": bigrams, "sync": sync}.items() if v is not None}
    try:
        with TrainProgress(quiet) as reporter:
            result = commands.train(train_data, dev, output, test=test, embeddings=embeddings, format=format.value,
                                tag_column=tag_column, scheme=scheme.value, config_file=config_file,
                                overrides=overrides, features=features, resume=resume, force=force,
                                reporter=reporter, processes=processes, lexicon=lexicon,
                                bigram_embeddings=bigram_embeddings, context=context, init=init, unlabeled=unlabeled,
                                extend_tags=extend_tags, teachers=teacher)
    except Interrupted as e:  # Ctrl-C: a checkpoint was saved; say how to go on, no traceback
        typer.echo(f"{e}: continue with the same command and --resume", err=True)
        raise typer.Exit(130)
    if not quiet and result["rank"] == 0:
        typer.echo(f"best dev {result['dev_metric']} {100 * result['best_dev_f1']:.2f} at epoch "
                   f"{result['best_epoch']}; "
                   f"model saved in {output}")
        if result.get("test"):
            typer.echo(f"test ({test}):")
            typer.echo(format_table(result["test"]))


from cli import predict as predicting  # noqa: E402  (cli/predict.py: listed second, as before)
predicting.register(app, user_errors)


@app.command()
@user_errors
def calibrate(
    model: Path = typer.Argument(..., metavar="MODEL_DIR", help="a model directory (not an ONNX export)"),
    dev: str = typer.Argument(..., metavar="DEV", help="labelled data the model was not trained on (its dev set)"),
    format: Format = typer.Option(Format.auto, "--format", help="column layout of DEV"),
    tag_column: Optional[int] = typer.Option(None, "--tag-column", metavar="N", help="0-based tag column of DEV "
                                             "(default: the model's training column, else the last)"),
    scheme: Scheme = typer.Option(Scheme.auto, "--scheme", help="tagging scheme of DEV (auto: detect)"),
) -> None:
    """Fit the temperature that makes MODEL_DIR's entity scores calibrated on DEV, and save it in the model."""
    from tagger import commands

    result = commands.calibrate(model, dev, format=format.value, tag_column=tag_column, scheme=scheme.value)
    typer.echo(f"temperature {result['temperature']:.4f} (was {result['previous_temperature']:.4f}), fitted on "
               f"{result['entities']} entities: expected calibration error {result['ece_before']:.4f} -> "
               f"{result['ece_after']:.4f}; saved in {model / 'config.json'}")


@app.command()
@user_errors
def evaluate(
    model: Path = typer.Argument(..., metavar="MODEL_DIR", help="a model directory, or an ONNX export of one"),
    test: str = typer.Argument(..., metavar="TEST", help="labelled CoNLL file (plain or gzipped), dataset name "
                                "or local datasets directory"),
    format: Format = typer.Option(Format.auto, "--format", help="column layout of TEST"),
    tag_column: Optional[int] = typer.Option(None, "--tag-column", metavar="N", help="0-based tag column of TEST "
                                             "(default: the model's training column, else the last)"),
    scheme: Scheme = typer.Option(Scheme.auto, "--scheme", help="tagging scheme of TEST (auto: detect)"),
    as_json: bool = typer.Option(False, "--json", help="print the scores as JSON"),
    report: Optional[Path] = typer.Option(None, "--report", metavar="FILE",
                                          help="write the error analysis as an HTML page; "
                                          "--json then includes its numbers under \"errors\""),
    force: bool = typer.Option(False, "--force", help="overwrite an existing --report file"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display (shown only when standard "
                               "error is a terminal)"),
) -> None:
    """Score MODEL_DIR on TEST: entity precision/recall/F1 per type and overall (seqeval, strict)."""
    from cli.formatting import format_table
    from cli.progress import WorkProgress
    from tagger import commands

    with WorkProgress("scored", "sentences", quiet) as shown:
        result = commands.evaluate(model, test, format=format.value, tag_column=tag_column, scheme=scheme.value,
                                   report=report, force=force, progress=shown.advance)
    typer.echo(json.dumps(result, indent=2) if as_json else format_table(result))
    if report is not None:
        typer.echo(f"error analysis written to {report}", err=True)


@app.command()
@user_errors
def convert(
    input: Path = typer.Argument(..., metavar="INPUT", help="CoNLL file to read"),
    output: Path = typer.Argument(..., metavar="OUTPUT", help="file to write; - for standard output"),
    to: Target = typer.Option(..., "--to", help="target scheme"),
    source: Scheme = typer.Option(Scheme.auto, "--from", help="scheme of INPUT (auto: detect)"),
    format: Format = typer.Option(Format.auto, "--format", help="column layout of INPUT"),
    tag_column: Optional[int] = typer.Option(None, "--tag-column", metavar="N", help="0-based tag column "
                                             "(default: the last)"),
    force: bool = typer.Option(False, "--force", help="overwrite OUTPUT"),
) -> None:
    """Rewrite a CoNLL file's tags in another scheme (invalid sequences are repaired as conlleval reads them)."""
    from tagger import commands

    to_stdout = str(output) == "-"
    n = commands.convert(input, None if to_stdout else output, to.value, source.value, format.value, tag_column, force)
    typer.echo(f"wrote {n} sentences to {'standard output' if to_stdout else output}", err=True)


@app.command()
@user_errors
def info(
    model: Path = typer.Argument(..., metavar="MODEL_DIR", help="a model directory, or an ONNX export of one"),
    as_json: bool = typer.Option(False, "--json", help="print it as JSON"),
) -> None:
    """What a model is: labels, scheme, tokeniser, vocabulary sizes, embeddings, best dev F1, training data."""
    from cli.formatting import format_info
    from tagger import commands

    about = commands.info(model)
    typer.echo(json.dumps(about, indent=2, ensure_ascii=False) if as_json else format_info(about))


@app.command()
@user_errors
def plot(
    run_dirs: List[Path] = typer.Argument(..., metavar="RUN_DIR...", help="model or run directories holding "
                                          "metrics.jsonl"),
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE", help="the plot to write: .svg, .png or .pdf"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing OUTPUT"),
) -> None:
    """Draw the training curves (loss, dev F1, tokens/s by epoch) of one or more runs, overlaid."""
    from tagger import commands

    commands.plot(run_dirs, output, force)
    typer.echo(f"wrote {output}", err=True)


# Commands kept in modules of their own: each cli/<name>.py has `register(app, user_errors)`.
# (one import + register line per command below this comment)
from cli import export  # noqa: E402
export.register(app, user_errors)
from cli import serve  # noqa: E402
serve.register(app, user_errors)
from cli import vectors  # noqa: E402
vectors.register(app, user_errors)
from cli import select  # noqa: E402
select.register(app, user_errors)
from cli import ensemble  # noqa: E402
ensemble.register(app, user_errors)
from cli import hub  # noqa: E402
hub.register(app, user_errors)
from cli import lm  # noqa: E402
lm.register(app, user_errors)


def main() -> None:
    """The `tagger` command. Ends with os._exit once output is flushed: tearing down an interpreter that has
    imported torch takes most of a second, a third of the time to tag one sentence from a cold start."""
    try:
        app()
        code = 0
    except SystemExit as e:  # how click always ends
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
