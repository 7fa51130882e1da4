"""`tagger train`: the CLI's options and config file checked, the corpora read, the optional inputs
(vectors, lexicon, LAC) checked then loaded, the output directory prepared, and training run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

from corpora.conll import Sentence
from tagger import store
from tagger.config import Config, load_toml
from tagger.data import (check_feature_columns, check_feature_columns_leak, check_tag_column, check_tags,
                         check_tokenizer_fits, read_sentences, unseen_labels, warn_if_dev_is_train)
from tagger.commands.inputs import LM, check_inputs, is_lm, load_inputs, split_lm, vector_files
from tagger.commands.predicting import evaluate
from tagger.errors import ConfigError, InputError
from tagger.store import FILES

# named feature columns of CoNLL-2003 files (token POS chunk NER)
FEATURE_NAMES = {"pos": 1, "chunk": 2}


def make_config(config_file: Path | None, overrides: dict, features: str | None) -> Config:
    values = load_toml(config_file) if config_file else {}
    values |= overrides
    if features:
        values["features"] = parse_features(features)
    return Config.from_dict(values, source=str(config_file or "options"))


def parse_features(spec: str) -> list[int]:
    """'1,2' or 'pos,chunk' -> column indices."""
    columns = []
    for part in (p.strip().lower() for p in spec.split(",") if p.strip()):
        if part.isdigit():
            columns.append(int(part))
        elif part in FEATURE_NAMES:
            columns.append(FEATURE_NAMES[part])
        else:
            raise ConfigError(f"--features: {part!r} is neither a column index nor one of "
                              f"{', '.join(FEATURE_NAMES)}")
    return columns


def check_output_dir(output: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite a model unless --force, and --resume where there is no checkpoint. Changes
    nothing: `prepare_output_dir` does, once every input has been read, so a failed start leaves no trace."""
    if output.exists() and not output.is_dir():
        raise InputError("exists and is not a directory", path=str(output))
    if resume:
        if not any((output / name / "trainer.json").is_file() for name in ("checkpoint", "checkpoint.old")):
            raise InputError("nothing to resume: no checkpoint here (train without --resume)", path=str(output))
        return
    if output.is_dir() and any(output.iterdir()) and not force:
        raise InputError("already exists and is not empty: use --force to overwrite it or --resume to continue "
                         "its training", path=str(output))


def prepare_output_dir(output: Path, resume: bool) -> None:
    """Create `output`; without --resume, clear the old model, metrics, curves and checkpoints (checked: --force)."""
    if not resume:
        for name in (*FILES, store.LEXICON, store.LEXICON_TRIE, "metrics.jsonl", "training.svg"):
            (output / name).unlink(missing_ok=True)
        for name in ("checkpoint", "checkpoint.new", "checkpoint.old"):
            shutil.rmtree(output / name, ignore_errors=True)
    output.mkdir(parents=True, exist_ok=True)


def record_training(output: Path, training: dict) -> None:
    """Add what the model was trained on (`_origin`'s names), and when, to its config.json (`tagger info`
    shows it)."""
    from datetime import datetime, timezone

    from tagger.store import atomic_write

    path = output / "config.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["training"] = {**training, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write(path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _origin(output: Path, resume: bool, corpora: dict[str, tuple[str, Sequence[Sentence]]],
            embeddings: Path | Sequence[Path] | None, lexicon: str | None, bigram_embeddings: Path | None,
            context: str | None, unlabeled: Sequence[Path], teachers: Sequence[Path] = ()) -> dict:
    """Where the training comes from, kept in its checkpoints (tagger/training/checkpoints.py): the names
    `tagger info` shows, the sentences' SHA-256, the vectors and unlabelled text files. On --resume, the
    checkpoint's origin with the new file names, once the sentences are found the same (else InputError
    naming the file). Teachers (--teacher) are recorded by their config.json, which checksums the rest."""
    from tagger import lac
    from tagger.data import sentences_sha256
    from tagger.training import checkpoints

    digests = {split: sentences_sha256(sentences) for split, (_, sentences) in corpora.items()}
    names = {split: str(ref) for split, (ref, _) in corpora.items()}
    if resume:
        before = checkpoints.origin_of(output)
        checkpoints.check_same_corpora(before, {split: (names[split], digests[split]) for split in corpora})
        _check_same_unlabeled(before.get("unlabeled") or [], unlabeled)
        _check_same_teachers(before.get("teachers") or [], teachers)
        return {**before, "training": {**before.get("training", {}), **names}, "corpora": digests}
    files = vector_files(embeddings)
    files = [] if any(lac.names_jieba(p) for p in files) else files
    inputs = {"embeddings": " + ".join(p.name for p in vector_files(embeddings)) or None,
              "lexicon": Path(lexicon).name if lexicon else None,
              "bigram_embeddings": Path(bigram_embeddings).name if bigram_embeddings else None,
              "context": (LM + Path(str(context).removeprefix(LM)).name if is_lm(context) else Path(context).name)
              if context else None,
              "unlabeled": " + ".join(Path(p).name for p in unlabeled) or None,
              "teachers": " + ".join(Path(p).resolve().name for p in teachers) or None}
    return {"training": {**names, **inputs}, "corpora": digests, "vectors": checkpoints.files_origin(files),
            "unlabeled": checkpoints.files_origin(unlabeled),
            "teachers": checkpoints.files_origin([Path(t) / "config.json" for t in teachers])}


def _check_same_teachers(recorded: Sequence[dict], given: Sequence[Path]) -> None:
    """On --resume: the teachers the training started from, unchanged (their config.json, which checksums
    their weights or members); --teacher may be left out, or name the same models."""
    from tagger.training import checkpoints

    if given and [str((Path(p) / "config.json").resolve()) for p in given] != [r["path"] for r in recorded]:
        raise ConfigError("--resume continues with the teachers the training started with: "
                          f"{', '.join(str(Path(r['path']).parent) for r in recorded) or 'none'}; leave --teacher out")
    checkpoints.check_unchanged(recorded, "teacher")


def _check_teachers(teachers: Sequence[Path], init: Path | None) -> None:
    """ModelError for a --teacher that is not a model directory, found before the corpus is read."""
    from tagger.errors import ModelError

    if teachers and init is not None:
        raise ConfigError("--teacher and --init cannot be combined: distil into a model trained from scratch")
    for path in teachers:
        if not (Path(path) / "config.json").is_file():
            raise ModelError("no such model directory (--teacher)", path=str(path))



def _check_same_unlabeled(recorded: Sequence[dict], given: Sequence[Path]) -> None:
    """On --resume: the unlabelled text files the training started from, unchanged (InputError naming the
    file otherwise); --unlabeled may be left out, or name the same files."""
    from tagger.training import checkpoints

    if given and [str(Path(p).resolve()) for p in given] != [r["path"] for r in recorded]:
        raise ConfigError("--resume continues with the unlabelled text the training started with: "
                          f"{', '.join(r['path'] for r in recorded) or 'none'}; leave --unlabeled out")
    checkpoints.check_unchanged(recorded, "unlabelled text")


def train(train_ref: str, dev_ref: str, output: Path, *, test: str | None = None,
          embeddings: Path | Sequence[Path] | None = None,
          format: str = "auto", tag_column: int | None = None, scheme: str = "auto",
          config_file: Path | None = None, overrides: dict | None = None, features: str | None = None,
          resume: bool = False, force: bool = False, reporter=None, processes: int = 1,
          lexicon: str | None = None, bigram_embeddings: Path | None = None, context: str | None = None,
          init: Path | None = None, extend_tags: bool = False, unlabeled: Sequence[Path] = (),
          teachers: Sequence[Path] = ()) -> dict:
    """Train a model from paths and options. embeddings: a vectors file, several (their vectors stacked:
    tagger/embeddings.py stack_vectors), or "jieba" for the character vectors of an installed jieba's LAC
    model; lexicon: a `word [frequency]` file, or "jieba" for its dictionary
    (tagger/lexicon.py); bigram_embeddings: vectors of character bigrams ("北京"), in --embeddings' formats;
    context: "jieba" (or a lac_small directory) for LAC as a frozen context encoder (tagger/lac.py). They only
    start a training: on --resume the checkpoint keeps its own. init: a model directory to start from (its
    weights and vocabulary: tagger/training/warmstart.py); extend_tags: new tags in TRAIN extend its tags.
    unlabeled: raw text files (plain or gzipped, a paragraph a line) to learn from by cross-view training
    (tagger/training/cvt.py); a resume continues with the checkpoint's. teachers: model or ensemble directories
    whose exact marginals the model learns as well (tagger/training/teachers.py), on TRAIN and, with
    `unlabeled`, on the raw text instead of cross-view training; read-only, checked unchanged on resume."""
    from tagger.training import distributed, launch
    from tagger.training.setup import Inputs
    from tagger.training.state import Silent

    reporter = reporter or Silent()
    config = make_config(config_file, overrides or {}, features)
    embeddings, lm = split_lm(embeddings)
    if lm is not None and context is not None:
        raise ConfigError("one context encoder at a time: --context or --embeddings lm:DIR, not both")
    context = lm or context
    given = {*(load_toml(config_file) if config_file else ()), *(overrides or {}), *(["features"] if features else [])}
    warm = None if init is None else _warm_start(init, extend_tags, given, resume, embeddings, lexicon,
                                                 bigram_embeddings, context)
    env = distributed.env_world()  # torchrun's: only its rank 0 touches the output directory
    leader = env is None or env.leader
    if leader:
        check_output_dir(output, resume, force)
    else:
        reporter = Silent()
    unlabeled = [Path(p) for p in unlabeled or ()]
    teachers = [Path(p) for p in teachers or ()]
    _check_teachers(teachers, init)
    if not resume:  # before the corpus is read: a typo should not cost that wait
        check_inputs(embeddings, bigram_embeddings, lexicon, context)
        if unlabeled:
            _check_unlabeled(unlabeled, config)
    train_sents, dev_sents, source, dev_scheme = _read_corpora(train_ref, dev_ref, format, tag_column, scheme,
                                                               config, reporter)
    if warm is not None:  # before warmstart.build's checks of the tags: a tokeniser apart explains them all
        check_tokenizer_fits((store.read_meta(init).get("config") or {}).get("tokenizer", "auto"), train_sents,
                             train_ref, str(init))
        inputs = Inputs(init=warm)
    else:
        inputs = Inputs() if resume else load_inputs(embeddings, bigram_embeddings, lexicon, context, reporter)
    origin = _origin(output, resume, {"train": (train_ref, train_sents), "dev": (dev_ref, dev_sents)}, embeddings,
                     lexicon, bigram_embeddings, context, unlabeled, teachers)
    unlabeled = [r["path"] for r in origin.get("unlabeled") or []]
    created = not output.exists()
    if leader:
        prepare_output_dir(output, resume)
    try:
        progress, world = launch.train_processes(processes, config=config, train_sents=train_sents,
                                                 dev_sents=dev_sents, output=output, source_scheme=source,
                                                 dev_scheme=dev_scheme, inputs=inputs, resume=resume,
                                                 reporter=reporter, given=given, origin=origin,
                                                 unlabeled=unlabeled)
    except BaseException:
        if leader and created and output.is_dir() and not any(output.iterdir()):  # failed before writing
            output.rmdir()  # anything: leave no empty directory
        raise
    if world.leader:
        record_training(output, {**origin["training"], **({} if tag_column is None else {"tag_column": tag_column})})
    result = {"best_dev_f1": progress.best_f1, "best_epoch": progress.best_epoch,
              "epochs": progress.epoch, "minutes": progress.seconds / 60, "rank": world.rank,
              "dev_metric": "F1" if source else "accuracy"}
    if test and world.leader:
        result["test"] = evaluate(output, test, format, tag_column, scheme)
    return result


def _read_corpora(train_ref: str, dev_ref: str, format: str, tag_column: int | None, scheme: str, config: Config,
                  reporter) -> tuple[list[Sentence], list[Sentence], str | None, str | None]:
    """(training sentences, dev sentences, their schemes), checked: a tag column that holds words, feature
    columns (missing, or the tags themselves), tags, and dev labels training never saw (a warning)."""
    train_sents = read_sentences(train_ref, format, tag_column, split="train")
    dev_sents = read_sentences(dev_ref, format, tag_column, split="validation")
    check_tag_column(train_sents, train_ref, tag_column)
    warn_if_dev_is_train(train_sents, dev_sents, train_ref, dev_ref, warn=reporter.message)
    check_feature_columns([*train_sents, *dev_sents], config.features, train_ref)
    check_feature_columns_leak(train_sents, config.features, train_ref, warn=reporter.message)
    source = check_tags(train_sents, train_ref, scheme, warn=reporter.message)
    dev_scheme = check_tags(dev_sents, dev_ref, scheme, warn=reporter.message)
    missing = unseen_labels(dev_sents, {t for s in train_sents for t in s.tags})
    if missing:
        reporter.message(f"warning: {dev_ref}: label(s) {', '.join(missing)} never seen in training: kept, and "
                         "scored as entities the model misses")
    reporter.message(f"{len(train_sents):,} training sentences ({sum(len(s.tokens) for s in train_sents):,} "
                     f"tokens), {len(dev_sents):,} dev; scheme {source or 'none (plain tags)'}")
    return train_sents, dev_sents, source, dev_scheme


def _check_unlabeled(files: Sequence[Path], config: Config) -> None:
    """InputError or ConfigError for unlabelled text that cannot be used: a file missing, binary, not UTF-8 or
    without text; --features (raw text has no columns); a BiLSTM of several layers (no restricted views)."""
    from tagger.rawtext import check_text_files
    from tagger.training import cvt

    cvt.check_config(config)
    check_text_files(files)


def _warm_start(init: Path, extend_tags: bool, given: set, resume: bool, *inputs):
    """What --init starts from (a tagger.training.warmstart.WarmStart); ConfigError for options it cannot be
    combined with, ModelError when there is no such directory."""
    from tagger.errors import ModelError
    from tagger.training.warmstart import WarmStart

    if resume:
        raise ConfigError("--init starts a new training from a model; --resume continues a checkpoint: use one")
    if any(x is not None for x in inputs):
        raise ConfigError("--init starts from the model's own vectors, lexicon and context: leave out "
                          "--embeddings, --lexicon, --bigram-embeddings and --context")
    init = store.resolve(init)  # hf://ORG/NAME[@REV]: the snapshot in Hugging Face's cache
    if not Path(init).is_dir():
        raise ModelError("no such model directory (--init)", path=str(init))
    store.check_model_dir(Path(init))  # an ONNX export, a file missing: said before the corpus is read
    return WarmStart(Path(init), extend_tags, frozenset(given))
