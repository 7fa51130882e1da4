"""tagger.train: what training leaves behind (best model, metrics.jsonl, checkpoint), determinism, and resuming
after Ctrl-C or kill -9 to the very same weights as an uninterrupted run."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import (
    TINY_CONFIG,
    ctrl_c,
    interrupt_loss_at,
    make_sentences,
    write_corpus,
    write_toml,
)
from safetensors.torch import load_file
from typer.testing import CliRunner

from cli.main import app
from corpora.conll import Sentence
from tagger.api import Tagger
from tagger.config import Config
from tagger.errors import InputError, ModelError
from tagger.training import checkpoints
from tagger.training import loop as training
from tagger.training.model import Trainable

REPO = Path(__file__).resolve().parent.parent
PROBE = [["John", "Smith", "visited", "Paris", "."], ["Siemens", "AG", "hired", "Anna", "."], ["it", "rained", "."]]
METRIC_KEYS = {"epoch", "loss", "dev_precision", "dev_recall", "dev_f1", "tokens_per_s", "seconds"}


def sentences(n: int, seed: int) -> list[Sentence]:
    return [Sentence(tuple(tokens), tuple(tags)) for tokens, tags in make_sentences(n, seed)]


TRAIN, DEV = sentences(40, seed=5), sentences(12, seed=6)


def config(**changes) -> Config:
    """The tiny config with dropout and word dropout on, so that resuming must also restore the RNG."""
    return Config.from_dict({**TINY_CONFIG, "dropout": 0.3, "word_dropout": 0.1, **changes})


def run(output: Path, resume: bool = False, reporter=None, given=(), **changes) -> training.Progress:
    return training.train(config=config(**changes), train_sents=TRAIN, dev_sents=DEV, output=output,
                          source_scheme="iob2", dev_scheme="iob2", resume=resume, reporter=reporter, given=given)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_without_dev_data_the_last_epoch_is_the_model_and_no_score_is_made_up(tmp_path):
    """No dev F1 anywhere (the epoch number once stood in for it, in metrics.jsonl and config.json)."""
    progress = training.train(config=config(epochs=3), train_sents=TRAIN, dev_sents=(), output=tmp_path / "m",
                              source_scheme="iob2")
    metrics = [json.loads(line) for line in (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3] and not any("dev_f1" in m for m in metrics)
    assert progress.best_epoch == 3
    about = Tagger.load(tmp_path / "m").info()
    assert about["best_epoch"] == 3 and about["best_dev_f1"] is None


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"tensors differ: {different}"


def metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def scores(output: Path, loss: bool = True) -> list[tuple]:
    """metrics.jsonl without its timings: what must be the same for the same training."""
    return [(m["epoch"], m["loss"] if loss else None, m["dev_f1"], m.get("best")) for m in metrics(output)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """Three epochs in one go: the reference every interrupted-and-resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run(out, epochs=3)
    return out


# -- what one training leaves behind -----------------------------------------------------------------

def test_metrics_has_one_line_per_epoch(uninterrupted):
    lines = metrics(uninterrupted)
    assert [m["epoch"] for m in lines] == [1, 2, 3]
    for m in lines:
        assert METRIC_KEYS <= set(m)
        assert m["loss"] > 0 and m["tokens_per_s"] > 0 and m["seconds"] >= 0
        assert 0.0 <= m["dev_precision"] <= 1.0 and 0.0 <= m["dev_recall"] <= 1.0 and 0.0 <= m["dev_f1"] <= 1.0
    assert lines[-1]["loss"] < lines[0]["loss"]


def test_output_holds_the_best_epoch_and_the_checkpoint_the_last(uninterrupted):
    meta = json.loads((uninterrupted / "config.json").read_text())
    lines = metrics(uninterrupted)
    best = max(lines, key=lambda m: m["dev_f1"])
    assert meta["epoch"] == best["epoch"] and meta["dev_f1"] == best["dev_f1"]
    trainer = json.loads((uninterrupted / "checkpoint" / "trainer.json").read_text())
    assert trainer["progress"]["epoch"] == 3 and trainer["progress"]["step"] == 0
    assert (uninterrupted / "checkpoint" / "model.safetensors").exists()


def test_predictions_are_the_same_before_saving_and_after_loading(tmp_path, monkeypatch):
    """What the in-memory model tags when it is saved as the best is what the loaded model tags."""
    at_save: dict[str, list] = {}
    save = Trainable.save

    def recording_save(self, path, extra=None, frozen=True):
        save(self, path, extra, frozen)
        at_save[Path(path).name] = self.as_tagger().predict_tokens(PROBE)

    monkeypatch.setattr(Trainable, "save", recording_save)
    out = tmp_path / "out"
    run(out, epochs=3)
    monkeypatch.undo()
    assert Tagger.load(out).predict_tokens(PROBE) == at_save["out"]
    resumed = checkpoints.load_checkpoint(out)[0]  # a checkpoint loads for training only
    assert resumed.as_tagger().predict_tokens(PROBE) == at_save["checkpoint.new"]  # renamed after


def test_a_checkpoint_is_refused_as_a_model_in_one_line(uninterrupted, tmp_path):
    with pytest.raises(ModelError, match="is a training checkpoint .*load the directory above it"):
        Tagger.load(uninterrupted / "checkpoint")
    result = CliRunner().invoke(app, ["predict", str(uninterrupted / "checkpoint")], input="Anna visited Rome .\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


def test_a_fixed_seed_gives_identical_weights(tmp_path, uninterrupted):
    run(tmp_path / "again", epochs=3)
    assert_same_weights(uninterrupted / "model.safetensors", tmp_path / "again" / "model.safetensors")
    assert scores(tmp_path / "again") == scores(uninterrupted)
    run(tmp_path / "other", epochs=3, seed=4)
    assert weights(tmp_path / "other" / "model.safetensors")["emissions.weight"].ne(
        weights(uninterrupted / "model.safetensors")["emissions.weight"]).any()


def test_patience_stops_training_when_dev_f1_does_not_improve(tmp_path):
    progress = run(tmp_path / "out", epochs=10, patience=2, lr=1e-12)  # far too small to change anything
    assert [m["epoch"] for m in metrics(tmp_path / "out")] == [1, 2, 3]
    assert progress.best_epoch == 1


# -- resuming ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [3, 14])  # in epoch 1 (of ~7 batches), and mid-epoch 2
def test_resume_after_ctrl_c_gives_the_same_weights(call, tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "out"
    interrupt_loss_at(monkeypatch, call)
    with pytest.raises(training.Interrupted) as info:
        run(out, epochs=3)
    monkeypatch.undo()
    trainer = json.loads((out / "checkpoint" / "trainer.json").read_text())["progress"]
    assert (trainer["epoch"], trainer["step"]) == (info.value.epoch, info.value.step)
    assert trainer["step"] > 0  # really mid-epoch
    run(out, resume=True, epochs=3)
    assert_same_weights(out / "checkpoint" / "model.safetensors", uninterrupted / "checkpoint" / "model.safetensors")
    assert_same_weights(out / "model.safetensors", uninterrupted / "model.safetensors")
    assert scores(out) == scores(uninterrupted)


@pytest.mark.parametrize("optimizer", ["sgd", "nadam"])  # adam: the tests above
def test_resume_restores_each_optimizers_state(optimizer, tmp_path, monkeypatch):
    run(tmp_path / "whole", epochs=2, optimizer=optimizer)
    interrupt_loss_at(monkeypatch, 10)  # mid-epoch 2
    with pytest.raises(training.Interrupted):
        run(tmp_path / "resumed", epochs=2, optimizer=optimizer)
    monkeypatch.undo()
    run(tmp_path / "resumed", resume=True, epochs=2, optimizer=optimizer)
    assert_same_weights(tmp_path / "resumed" / "checkpoint" / "model.safetensors",
                        tmp_path / "whole" / "checkpoint" / "model.safetensors")
    assert scores(tmp_path / "resumed") == scores(tmp_path / "whole")


def test_resumed_epoch_logs_the_whole_epochs_loss(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "out"
    interrupt_loss_at(monkeypatch, 14)
    with pytest.raises(training.Interrupted):
        run(out, epochs=3)
    monkeypatch.undo()
    run(out, resume=True, epochs=3)
    assert [m["loss"] for m in metrics(out)] == pytest.approx([m["loss"] for m in metrics(uninterrupted)])


def test_resume_after_ctrl_c_during_backward_gives_the_same_weights(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "out"
    interrupt_loss_at(monkeypatch, 10, after_forward=True)
    with pytest.raises(training.Interrupted):
        run(out, epochs=3)
    monkeypatch.undo()
    run(out, resume=True, epochs=3)
    assert_same_weights(out / "checkpoint" / "model.safetensors", uninterrupted / "checkpoint" / "model.safetensors")


def abort() -> None:
    """A second Ctrl-C (or any crash): an exception at once, no mid-epoch checkpoint."""
    raise KeyboardInterrupt


class InterruptingReporter(training.Silent):
    """A progress display during which, after `calls` batches, the user presses Ctrl-C (or `action` happens)."""

    def __init__(self, calls: int, action=ctrl_c):
        self.calls, self.action = calls, action

    def advance(self, sentences: int, loss: float) -> None:
        self.calls -= 1
        if self.calls == 0:
            self.action()


def test_ctrl_c_in_the_progress_display_saves_a_checkpoint(tmp_path, uninterrupted):
    out = tmp_path / "out"
    try:
        with pytest.raises(training.Interrupted) as info:
            run(out, epochs=3, reporter=InterruptingReporter(10))
    except KeyboardInterrupt:  # must not reach pytest, which would stop the whole run
        pytest.fail("a bare KeyboardInterrupt escaped train(): no mid-epoch checkpoint was saved")
    checkpoint = out / "checkpoint"
    assert {"config.json", "vocab.json", "model.safetensors", "trainer.json", "trainer.safetensors"} <= {
        p.name for p in checkpoint.iterdir()}
    progress = json.loads((checkpoint / "trainer.json").read_text())["progress"]
    assert (progress["epoch"], progress["step"]) == (info.value.epoch, info.value.step)
    assert progress["step"] > 0  # the batches done before Ctrl-C, not the last epoch's end
    run(out, resume=True, epochs=3)
    assert_same_weights(out / "checkpoint" / "model.safetensors", uninterrupted / "checkpoint" / "model.safetensors")
    assert scores(out) == scores(uninterrupted)


def test_resume_after_an_abort_anywhere_continues_from_the_last_checkpoint(tmp_path, uninterrupted):
    """Whatever the exception, the epoch-end checkpoint already on disk is enough to get the same weights."""
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(out, epochs=3, reporter=InterruptingReporter(10, abort))  # in epoch 2
    run(out, resume=True, epochs=3)
    assert_same_weights(out / "checkpoint" / "model.safetensors", uninterrupted / "checkpoint" / "model.safetensors")
    assert scores(out) == scores(uninterrupted)


def test_weight_average_is_what_is_scored_and_saved_and_resumes_exactly(tmp_path):
    """With `average`, the best model is the moving average (not the last SGD weights), and a run stopped by
    Ctrl-C mid-epoch resumes to the same averaged model and scores."""
    plain, averaged, resumed, one = (tmp_path / name for name in ("plain", "averaged", "resumed", "one"))
    run(plain, epochs=2, average=0.0)  # off (the default is 0.999)
    run(averaged, epochs=2, average=0.9)
    assert scores(plain) != scores(averaged)
    run(one, epochs=1, average=0.9)  # epoch 1 is always the best so far: its average is saved
    raw, saved = weights(one / "checkpoint" / "model.safetensors"), weights(one / "model.safetensors")
    assert not torch.equal(raw["emissions.weight"], saved["emissions.weight"])
    with pytest.raises(training.Interrupted):
        run(resumed, epochs=2, average=0.9, reporter=InterruptingReporter(7))
    run(resumed, resume=True)
    assert scores(resumed) == scores(averaged)
    assert_same_weights(resumed / "model.safetensors", averaged / "model.safetensors")


def test_resume_after_a_crash_between_metrics_and_checkpoint(tmp_path, monkeypatch, uninterrupted):
    """The epoch-2 metrics line is written but its checkpoint is not: resuming redoes epoch 2, logged once."""
    out = tmp_path / "out"
    save = checkpoints.save_checkpoint

    def crash_at_end_of_epoch_2(output, tagger, optimizer, progress, *rest):
        if progress.epoch == 2 and progress.step == 0:
            raise SystemExit("killed")
        save(output, tagger, optimizer, progress, *rest)

    monkeypatch.setattr(checkpoints, "save_checkpoint", crash_at_end_of_epoch_2)
    with pytest.raises(SystemExit):
        run(out, epochs=3)
    monkeypatch.undo()
    assert [m["epoch"] for m in metrics(out)] == [1, 2]
    run(out, resume=True, epochs=3)
    assert [m["epoch"] for m in metrics(out)] == [1, 2, 3]
    assert scores(out) == scores(uninterrupted)
    assert_same_weights(out / "checkpoint" / "model.safetensors", uninterrupted / "checkpoint" / "model.safetensors")


def test_resume_after_a_kill_between_the_checkpoint_renames(tmp_path, uninterrupted):
    out = tmp_path / "out"
    run(out, epochs=2)
    (out / "checkpoint").rename(out / "checkpoint.old")  # the moment between `final -> old` and `new -> final`
    with pytest.raises(InputError, match="nothing left to train: all 2 epochs"):  # found: it is the finished one
        run(out, resume=True, epochs=2)
    run(out, resume=True, epochs=3, given={"epochs"})
    assert [m["epoch"] for m in metrics(out)] == [1, 2, 3]


def test_resume_without_a_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        run(tmp_path / "out", resume=True)


def test_cli_ctrl_c_exits_130_with_a_hint_and_resume_completes(tmp_path, monkeypatch, uninterrupted):
    train = write_corpus(tmp_path / "training.txt", [(s.tokens, s.tags) for s in TRAIN])
    dev = write_corpus(tmp_path / "dev.txt", [(s.tokens, s.tags) for s in DEV])
    toml = write_toml(tmp_path / "c.toml", dropout=0.3, word_dropout=0.1, epochs=3)
    args = ["train", str(train), "--dev", str(dev), "-o", str(tmp_path / "out"), "--config", str(toml), "-q"]
    interrupt_loss_at(monkeypatch, 14)
    result = CliRunner().invoke(app, args)
    monkeypatch.undo()
    assert result.exit_code == 130, result.output
    assert "--resume" in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(app, args + ["--resume"])
    assert result.exit_code == 0, result.stderr
    assert [m["epoch"] for m in metrics(tmp_path / "out")] == [1, 2, 3]
    assert_same_weights(tmp_path / "out" / "model.safetensors", uninterrupted / "model.safetensors")


def test_kill_9_then_resume(tmp_path):
    """A real `tagger train` process killed with SIGKILL after its first checkpoint; --resume finishes it."""
    sents = make_sentences(150, seed=8)
    train = write_corpus(tmp_path / "training.txt", sents[:120])
    dev = write_corpus(tmp_path / "dev.txt", sents[120:])
    toml = write_toml(tmp_path / "c.toml", dropout=0.3, word_dropout=0.1, epochs=8, patience=100)
    out = tmp_path / "out"
    args = ["train", str(train), "--dev", str(dev), "-o", str(out), "--config", str(toml), "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint" / "trainer.json").exists():
            assert proc.poll() is None, f"training ended before its first checkpoint: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the kill came too late: training had already finished"
    done = len(metrics(out)) if (out / "metrics.jsonl").exists() else 0
    assert done < 8
    result = CliRunner().invoke(app, args + ["--resume"])
    assert result.exit_code == 0, result.stderr
    assert [m["epoch"] for m in metrics(out)] == list(range(1, 9))
    assert not (out / "checkpoint.new").exists() and not (out / "checkpoint.old").exists()
    reference = tmp_path / "reference"
    result = CliRunner().invoke(app, [*args[:4], "-o", str(reference), *args[6:]])
    assert result.exit_code == 0, result.stderr
    assert_same_weights(out / "checkpoint" / "model.safetensors", reference / "checkpoint" / "model.safetensors")


# -- threads, and what --resume may change ------------------------------------------------------------------

def record_threads(monkeypatch) -> list[int]:
    """torch's intra-op thread count at every training step, as the loss sees it."""
    from tagger.training.model import BiLSTMCRF

    seen, real = [], BiLSTMCRF.loss
    monkeypatch.setattr(BiLSTMCRF, "loss", lambda self, batch: seen.append(torch.get_num_threads()) or real(self, batch))
    return seen


def test_training_uses_one_thread_by_default_and_restores_torchs_setting(tmp_path, monkeypatch):
    seen = record_threads(monkeypatch)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        values = {k: v for k, v in TINY_CONFIG.items() if k != "threads"}
        training.train(config=Config.from_dict({**values, "epochs": 1}), train_sents=TRAIN, dev_sents=DEV,
                       output=tmp_path / "out", source_scheme="iob2")
        assert set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def cli_corpus(tmp_path) -> list[str]:
    """`tagger train` arguments on the tiny corpus, 2 epochs, output tmp_path/out."""
    train = write_corpus(tmp_path / "training.txt", [(s.tokens, s.tags) for s in TRAIN])
    dev = write_corpus(tmp_path / "dev.txt", [(s.tokens, s.tags) for s in DEV])
    toml = write_toml(tmp_path / "c.toml", epochs=2)
    return ["train", str(train), "--dev", str(dev), "-o", str(tmp_path / "out"), "--config", str(toml), "-q"]


def test_threads_option_and_resume_keeps_the_checkpoints_threads(cli_corpus, tmp_path, monkeypatch):
    seen = record_threads(monkeypatch)
    result = CliRunner().invoke(app, cli_corpus + ["--threads", "2"])
    assert result.exit_code == 0, result.output
    assert set(seen) == {2}
    seen.clear()
    result = CliRunner().invoke(app, cli_corpus[:-3] + ["--epochs", "3", "--resume", "-q"])  # no --config
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {2}
    assert [m["epoch"] for m in metrics(tmp_path / "out")] == [1, 2, 3]


def test_resume_of_a_finished_run_says_there_is_nothing_left(cli_corpus):
    assert CliRunner().invoke(app, cli_corpus).exit_code == 0
    result = CliRunner().invoke(app, cli_corpus + ["--resume"])
    assert result.exit_code == 1
    assert "nothing left to train: all 2 epochs are trained (raise --epochs" in result.stderr
    assert "resuming from" not in result.output


def test_resume_refuses_to_change_the_network_naming_the_options(cli_corpus, tmp_path):
    assert CliRunner().invoke(app, cli_corpus + ["--epochs", "1"]).exit_code == 0
    toml = write_toml(tmp_path / "bigger.toml", epochs=2, hidden_size=32, seed=9)
    args = cli_corpus[:cli_corpus.index("--config")] + ["--config", str(toml), "--resume", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "--resume cannot change hidden_size, seed" in result.stderr and "Traceback" not in result.output


# -- what a new user gets wrong: one line each, before any training ---------------------------------------------

def test_an_error_is_one_line_with_no_blank_line_before_it(cli_corpus, tmp_path):
    args = cli_corpus[:-1]  # with the progress display (no -q)
    args[args.index("--dev") + 1] = str(tmp_path / "missing.txt")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path / 'missing.txt'}: no such file\n"


def test_the_tag_column_offered_as_a_feature_is_refused(cli_corpus):
    result = CliRunner().invoke(app, cli_corpus + ["--features", "1"])  # token+tag lines: column 1 is the tag
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "column 1 is the tag column" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_a_plain_tag_model_reports_dev_accuracy_not_f1(tmp_path):
    pos = [(tokens, ["NNP" if t[0].isupper() else "NN" for t in tokens]) for tokens, _ in make_sentences(40, 5)]
    train = write_corpus(tmp_path / "pos.txt", pos)
    toml = write_toml(tmp_path / "c.toml", epochs=1)
    result = CliRunner().invoke(app, ["train", str(train), "--dev", str(train), "-o", str(tmp_path / "out"),
                                      "--config", str(toml)])
    assert result.exit_code == 0, result.output
    assert "best dev accuracy" in result.stdout and "dev accuracy" in result.stderr
    assert "F1" not in result.output
    assert "dev_accuracy" in metrics(tmp_path / "out")[0]


# -- what a resume checks: its data, its vectors, its own files ------------------------------------------------

VECTOR_WORDS = ["john", "smith", "paris", "berlin", "visited", "hired", "zurich", "madrid", "oslo"]  # 3 unseen


@pytest.fixture
def with_vectors(tmp_path) -> list[str]:
    """`tagger train` arguments: the tiny corpus, a vectors file (some words never in training), both remedies
    for unseen words on, dropout on (each resume must restore the random state), 3 epochs into tmp_path/out."""
    import numpy as np

    train = write_corpus(tmp_path / "train.txt", [(s.tokens, s.tags) for s in TRAIN])
    dev = write_corpus(tmp_path / "dev.txt", [(s.tokens, s.tags) for s in DEV])
    matrix = np.random.default_rng(0).normal(size=(len(VECTOR_WORDS), 16))
    (tmp_path / "vectors.txt").write_text("".join(f"{w} {' '.join(f'{x:.5f}' for x in row)}\n"
                                                  for w, row in zip(VECTOR_WORDS, matrix)))
    toml = write_toml(tmp_path / "c.toml", dropout=0.3, word_dropout=0.1, epochs=3, unseen_remedies="on",
                      pretrained_swap=0.3, unseen_drift=2.0, unseen_neighbours=2)
    return ["train", str(train), "--dev", str(dev), "-o", str(tmp_path / "out"), "--config", str(toml),
            "--embeddings", str(tmp_path / "vectors.txt"), "-q"]


def interrupted(args: list[str], monkeypatch, call: int = 12) -> Path:
    """Run `args` with Ctrl-C at the `call`-th batch; returns the output directory (its checkpoint mid-epoch)."""
    interrupt_loss_at(monkeypatch, call)
    result = CliRunner().invoke(app, args)
    monkeypatch.undo()
    assert result.exit_code == 130, result.output
    return Path(args[args.index("-o") + 1])


def test_a_checkpoint_rereads_the_vectors_file_instead_of_copying_it_and_resumes_exactly(with_vectors, tmp_path,
                                                                                         monkeypatch):
    whole = [*with_vectors[:5], str(tmp_path / "whole"), *with_vectors[6:]]
    assert CliRunner().invoke(app, whole).exit_code == 0
    out = interrupted(with_vectors, monkeypatch)
    checkpoint = json.loads((out / "checkpoint" / "vocab.json").read_text())
    assert checkpoint["frozen_words"] == []
    assert weights(out / "checkpoint" / "model.safetensors")["words.frozen"].numel() == 0
    assert not any(k.startswith("pretrained.") for k in weights(out / "checkpoint" / "trainer.safetensors"))
    result = CliRunner().invoke(app, with_vectors[:-3] + ["-q", "--resume"])  # no --embeddings: it is recorded
    assert result.exit_code == 0, result.output
    assert_same_weights(out / "model.safetensors", tmp_path / "whole" / "model.safetensors")
    assert scores(out) == scores(tmp_path / "whole")
    assert Tagger.load(out).info()["embeddings"] == "vectors.txt"  # kept from the start, not "none recorded"


def test_resume_refuses_other_training_data_naming_the_file(with_vectors, tmp_path, monkeypatch):
    interrupted(with_vectors, monkeypatch)
    other = write_corpus(tmp_path / "other.txt", make_sentences(8, seed=99))
    args = with_vectors + ["--resume"]
    args[1] = str(other)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr == (f"error: {other}: --resume: these training sentences differ from those the checkpoint "
                             f"was trained with (from {tmp_path / 'train.txt'}): resume with the same data, or "
                             "train anew without --resume\n")
    (tmp_path / "train.txt").rename(tmp_path / "moved.txt")  # the same sentences elsewhere: fine
    args[1] = str(tmp_path / "moved.txt")
    assert CliRunner().invoke(app, args).exit_code == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["training"]["train"] == args[1]


def test_resume_refuses_a_vectors_file_that_changed(with_vectors, tmp_path, monkeypatch):
    interrupted(with_vectors, monkeypatch)
    vectors = tmp_path / "vectors.txt"
    vectors.write_text(vectors.read_text().replace("0", "1"))
    result = CliRunner().invoke(app, with_vectors + ["--resume"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {vectors}: --resume: this vectors file changed since the training")


@pytest.mark.parametrize("damage", ["overwrite", "truncate"])
def test_a_damaged_trainer_state_is_one_line_naming_it(damage, cli_corpus, tmp_path):
    assert CliRunner().invoke(app, cli_corpus).exit_code == 0
    state = tmp_path / "out" / "checkpoint" / "trainer.safetensors"
    data = state.read_bytes()
    state.write_bytes(data[:-100] + bytes(100) if damage == "overwrite" else data[: len(data) // 2])
    result = CliRunner().invoke(app, cli_corpus + ["--resume", "--epochs", "3"])
    assert result.exit_code == 1
    assert result.stderr == (f"error: {state}: checksum does not match trainer.json: the file was altered, "
                             "truncated or half-written; train anew without --resume\n")


def test_checkpoint_files_honour_the_umask(cli_corpus, tmp_path):
    before = os.umask(0o022)
    try:
        assert CliRunner().invoke(app, cli_corpus).exit_code == 0
    finally:
        os.umask(before)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out" / "checkpoint").iterdir()}
    assert modes["trainer.safetensors"] == modes["trainer.json"] == modes["model.safetensors"] == 0o644


class Heard:
    """A Reporter that keeps the messages (warnings) a training gives."""

    def __init__(self):
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def __getattr__(self, name):  # start_epoch, advance, end_epoch...: nothing to keep
        return lambda *args: None


@pytest.mark.parametrize("same", ["file", "sentences"])
def test_dev_that_is_the_training_data_is_warned_about_naming_both(cli_corpus, tmp_path, same):
    from tagger import commands

    train = Path(cli_corpus[1])
    dev = train if same == "file" else tmp_path / "copy-of-training.txt"
    if same == "sentences":
        dev.write_bytes(train.read_bytes())
    heard = Heard()
    commands.train(str(train), str(dev), tmp_path / "m", config_file=write_toml(tmp_path / "one.toml", epochs=1),
                   reporter=heard)
    warned = [m for m in heard.messages if "training data" in m]
    assert len(warned) == 1 and str(dev) in warned[0] and str(train) in warned[0]
    assert f"the same {same}" in warned[0]
    heard = Heard()
    commands.train(str(train), cli_corpus[3], tmp_path / "m2", config_file=write_toml(tmp_path / "one.toml", epochs=1),
                   reporter=heard)
    assert not [m for m in heard.messages if "training data" in m]


def test_a_scheme_the_tags_contradict_is_refused_at_the_contradicting_line(cli_corpus):
    # the file is IOB2 (B- opens every entity, none ends with E- or S-): BIOES would read B-PER O as broken
    for forced in ("bioes", "iob1"):
        result = CliRunner().invoke(app, cli_corpus + ["--scheme", forced])
        assert result.exit_code == 1, result.output
        line = result.stderr.strip()
        assert re.match(rf"error: {re.escape(cli_corpus[1])}:\d+: tag '(O|B-\w+)' after '\S+' contradicts the "
                        f"{forced.upper()} scheme", line), line
        assert "read as IOB2" in line and len(line.splitlines()) == 1
    assert CliRunner().invoke(app, cli_corpus + ["--scheme", "iob2"]).exit_code == 0


def test_a_conll_file_given_as_unlabelled_text_is_refused(cli_corpus):
    result = CliRunner().invoke(app, cli_corpus + ["--unlabeled", cli_corpus[1]])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {cli_corpus[1]}: looks like a CoNLL file (a token and its tags a "
                                     "line), not raw text: give raw text, a paragraph or a sentence a line")
