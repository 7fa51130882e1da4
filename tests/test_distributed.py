"""tagger.distributed: two training processes on localhost (gloo, a free port) train as one process does on
the whole batch (sync = "step"), finish on uneven shards, stop together on Ctrl-C and resume exactly (with
periodic averaging too), and a killed rank ends the other with one line and exit 1 instead of a hang.
Periodic averaging itself (tagger/training/averaging.py): tests/test_averaging.py."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import (
    TINY_CONFIG,
    interrupt_loss_at,
    make_sentences,
    write_corpus,
    write_toml,
)
from safetensors.torch import load_file, save_file

from corpora.conll import Sentence
from tagger import commands
from tagger.config import Config
from tagger.encode import collate, length_batches
from tagger.errors import InputError
from tagger.training import distributed, setup
from tagger.training import loop as training

REPO = Path(__file__).resolve().parent.parent
SGD = dict(optimizer="sgd", lr=0.1, momentum=0.9)  # Adam would magnify float noise in near-zero gradients
STEP = dict(sync="step")  # DDP every step: the same updates as one process; "average" is the default
TRAIN = [Sentence(tuple(t), tuple(g)) for t, g in make_sentences(40, seed=5)]


def tiny(**changes) -> Config:
    return Config.from_dict({**TINY_CONFIG, **SGD, **STEP, **changes})


def steps(folder: Path, count: int, world: distributed.World = distributed.World()) -> None:
    """`count` training steps on the first global batches (this rank's slices of them); writes the gradients
    of the first step and the weights after the last into folder/rank{N}.safetensors."""
    config = tiny()
    trainable, _ = setup.build_trainable(config, TRAIN, "iob2")
    data = setup.prepare_data(trainable, TRAIN, [], None)
    model = distributed.wrap(trainable.model, world)
    optimizer = setup.make_optimizer(config, trainable.model)
    batches = length_batches([len(e) for e in data.train], config.batch_size,
                             lambda n, g=torch.Generator().manual_seed(0): torch.randperm(n, generator=g).tolist())
    batches = [ids for ids in batches if len(ids) >= 2][:count]  # slices of one sentence at least
    tensors = {}
    for k, ids in enumerate(batches):
        batch = collate([data.train[i] for i in world.shard(ids)])
        training.train_step(model, optimizer, batch, config.clip, weight=world.size / len(ids))
        if k == 0:
            tensors |= {f"grad.{n}": p.grad.clone() for n, p in trainable.model.named_parameters()}
    tensors |= {f"weight.{n}": p.detach().clone() for n, p in trainable.model.named_parameters()}
    save_file(tensors, str(folder / f"rank{world.rank}.safetensors"))


def test_one_step_gives_the_gradients_of_one_process_on_both_shards(tmp_path):
    (tmp_path / "one").mkdir()
    steps(tmp_path / "one", 4)
    with distributed.spawned(2, steps, (tmp_path, 4)) as world:
        steps(tmp_path, 4, world)
    one, r0, r1 = (load_file(str(p)) for p in (tmp_path / "one" / "rank0.safetensors", tmp_path / "rank0.safetensors",
                                               tmp_path / "rank1.safetensors"))
    for name, value in one.items():
        assert torch.equal(r0[name], r1[name]), f"{name} differs between the ranks"
        tolerance = 1e-6 if name.startswith("grad.") else 1e-5
        assert torch.allclose(r0[name], value, atol=tolerance), f"{name}: 2 processes != 1 process"


def corpus(tmp_path: Path, **changes) -> tuple[Path, Path, Path]:
    """The tiny corpus plus one sentence of a length no other has: a global batch of one sentence, so one
    rank's slice is empty."""
    sents = make_sentences(50, seed=2)
    sents.insert(3, (["x"] * 17, ["O"] * 17))
    return (write_corpus(tmp_path / "training.txt", sents[:40]), write_corpus(tmp_path / "dev.txt", sents[40:]),
            write_toml(tmp_path / "c.toml", **changes))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "checkpoint" / "model.safetensors"))


def metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_on_uneven_buckets_finish_and_train_like_one(tmp_path):
    train, dev, toml = corpus(tmp_path, epochs=2, **SGD, **STEP)
    two = commands.train(str(train), str(dev), tmp_path / "two", config_file=toml, processes=2)
    one = commands.train(str(train), str(dev), tmp_path / "one", config_file=toml)
    assert two["epochs"] == one["epochs"] == 2
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)
    assert [m["processes"] for m in metrics(tmp_path / "two")] == [2, 2]
    assert [m["loss"] for m in metrics(tmp_path / "two")] == pytest.approx([m["loss"] for m in metrics(tmp_path / "one")])


def test_two_processes_learn_from_unlabelled_text_as_one_does(tmp_path):
    train, dev, toml = corpus(tmp_path, epochs=2, **SGD, **STEP)
    raw = tmp_path / "raw.txt"
    raw.write_text("".join(" ".join(tokens) + "\n" for tokens, _ in make_sentences(30, seed=8)), encoding="utf-8")
    two = commands.train(str(train), str(dev), tmp_path / "two", config_file=toml, processes=2, unlabeled=[raw])
    one = commands.train(str(train), str(dev), tmp_path / "one", config_file=toml, unlabeled=[raw])
    assert two["epochs"] == one["epochs"] == 2
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)
    counts = [[m["unlabeled_sentences"] for m in metrics(tmp_path / run)] for run in ("one", "two")]
    assert counts[0] == counts[1] and all(counts[0])


def assert_interrupted_resume_is_exact(tmp_path, monkeypatch, train, dev, toml, step: int) -> None:
    """Two processes interrupted at `step` (rank 0, this process, gets the Ctrl-C), then resumed: the same
    weights and dev scores as the uninterrupted run already in tmp_path/whole."""
    interrupt_loss_at(monkeypatch, step)
    with pytest.raises(training.Interrupted) as info:
        commands.train(str(train), str(dev), tmp_path / "resumed", config_file=toml, processes=2)
    monkeypatch.undo()
    assert info.value.step > 0
    commands.train(str(train), str(dev), tmp_path / "resumed", config_file=toml, processes=2, resume=True)
    w, r = weights(tmp_path / "whole"), weights(tmp_path / "resumed")
    assert all(torch.equal(w[k], r[k]) for k in w)
    assert [m["dev_f1"] for m in metrics(tmp_path / "resumed")] == [m["dev_f1"] for m in metrics(tmp_path / "whole")]


AVERAGE = dict(sync="average", sync_period=3, sync_warmup=2, batch_size=4)  # each rank's 4: global batches of 8,
# as STEP's; meetings after steps 0 1 2 5 8 11 14 ...: 8
# batches an epoch, so epoch 1 ends apart (and meets for its checkpoint), and a Ctrl-C in step 10 stops at 11


@pytest.mark.parametrize(("sync", "ctrl_c"), [(STEP, 7), (AVERAGE, 11)], ids=["step", "average"])
def test_ctrl_c_stops_both_processes_and_resume_gives_the_same_weights(sync, ctrl_c, tmp_path, monkeypatch):
    train, dev, toml = corpus(tmp_path, epochs=2, dropout=0.3, word_dropout=0.1, **sync)  # each rank's RNG matters
    commands.train(str(train), str(dev), tmp_path / "whole", config_file=toml, processes=2)
    assert_interrupted_resume_is_exact(tmp_path, monkeypatch, train, dev, toml, ctrl_c)  # in epoch 2


def spawned_rank(parent: subprocess.Popen) -> int | None:
    """The pid of the training process `tagger train --processes 2` started (not multiprocessing's tracker)."""
    children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
    for pid in children:
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return int(pid)
    return None


@pytest.mark.parametrize("launch", ["torchrun", "processes"])
def test_a_killed_rank_ends_the_other_with_one_line_and_exit_1(launch, tmp_path):
    """Rank 1 is killed with SIGKILL after the first checkpoint: of two `tagger train` processes started as
    torchrun starts them (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or of `tagger train --processes 2`."""
    train, dev, toml = corpus(tmp_path, epochs=500, patience=1000)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "cli.main", "train", str(train), "--dev", str(dev), "-o", str(out), "--config",
            str(toml), "-q"]
    port = str(distributed.free_port())
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}
    if launch == "torchrun":
        procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in (0, 1)]
    else:
        procs = [subprocess.Popen(args + ["--processes", "2"], cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)]
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint" / "trainer.json").exists():
            assert procs[0].poll() is None, procs[0].stderr.read()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        victim = procs[1].pid if launch == "torchrun" else spawned_rank(procs[0])
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        code = procs[0].wait(timeout=60)
        stderr = procs[0].stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stderr.close()
    assert code == 1 and time.monotonic() - killed < 60
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: training process 0 of 2: another training process stopped"), stderr
    assert "Traceback" not in stderr


def test_more_processes_than_cores_is_one_warning(monkeypatch):
    from tagger.training import launch

    monkeypatch.setattr(launch, "usable_cores", lambda: 2)
    said = []
    launch.warn_if_oversubscribed(3, said.append)
    launch.warn_if_oversubscribed(2, said.append)
    assert said == ["warning: --processes 3 exceeds the 2 usable CPU cores: the processes will share cores and "
                    "train slower; use --processes 2 or fewer"]


def row_and_dense_steps(folder: Path, count: int, world: distributed.World) -> None:
    """`count` steps with every embedding table averaged by its touched rows (RowSync), then the same steps
    from the same start with DDP's dense all-reduce: first gradients, last weights and the bytes the rows
    took into folder/{rows,dense}{rank}.safetensors."""
    for by_rows in (True, False):
        config = tiny()
        torch.manual_seed(config.seed)
        trainable, _ = setup.build_trainable(config, TRAIN, "iob2")
        data = setup.prepare_data(trainable, TRAIN, [], None)
        model = distributed.wrap(trainable.model, world, by_rows=by_rows, min_rows=1)
        optimizer = setup.make_optimizer(config, trainable.model)
        batches = [ids for ids in length_batches([len(e) for e in data.train], config.batch_size) if len(ids) >= 2]
        tensors = {}
        for k, ids in enumerate(batches[:count]):
            batch = collate([data.train[i] for i in world.shard(ids)])
            training.train_step(model, optimizer, batch, config.clip, weight=world.size / len(ids))
            if k == 0:
                tensors |= {f"grad.{n}": p.grad.clone() for n, p in trainable.model.named_parameters()}
        tensors |= {f"weight.{n}": p.detach().clone() for n, p in trainable.model.named_parameters()}
        sent = model.row_sync.sent_bytes if model.row_sync else 0
        dense_bytes = sum(p.numel() * 4 for p in distributed.row_tables(trainable.model, min_rows=1).values())
        tensors["sent_bytes"] = torch.tensor([sent, dense_bytes])
        save_file(tensors, str(folder / f"{'rows' if by_rows else 'dense'}{world.rank}.safetensors"))


def test_averaging_the_touched_rows_gives_the_dense_all_reduce_s_update(tmp_path):
    with distributed.spawned(2, row_and_dense_steps, (tmp_path, 4)) as world:
        row_and_dense_steps(tmp_path, 4, world)
    rows, dense = load_file(str(tmp_path / "rows0.safetensors")), load_file(str(tmp_path / "dense0.safetensors"))
    rows1 = load_file(str(tmp_path / "rows1.safetensors"))
    assert "grad.word.weight" in rows and "weight.word.weight" in rows
    for name in rows:
        if name != "sent_bytes":
            assert torch.equal(rows[name], rows1[name]), f"{name} differs between the ranks"
            assert torch.equal(rows[name], dense[name]), f"{name}: touched rows != dense all-reduce"
    sent, dense_bytes_a_step = rows["sent_bytes"].tolist()
    assert 0 < sent < 4 * dense_bytes_a_step  # 4 steps sent fewer bytes than the tables' dense gradients


def wide_corpus(tmp_path: Path, **changes) -> tuple[Path, Path, Path]:
    """A corpus of more distinct words than distributed.ROW_TABLE_MIN_ROWS, so that `--processes 2` averages
    the word embedding by rows: 64 training sentences of 24 to 32 words, most of them seen once."""
    rng = random.Random(4)
    sents = []
    for _ in range(76):
        tokens = [f"w{rng.randrange(20_000)}" for _ in range(rng.choice((24, 28, 32)))]
        tags = ["B-PER" if t.endswith("7") else "O" for t in tokens]
        sents.append(([t.capitalize() if g != "O" else t for t, g in zip(tokens, tags)], tags))
    return (write_corpus(tmp_path / "training.txt", sents[:64]), write_corpus(tmp_path / "dev.txt", sents[64:]),
            write_toml(tmp_path / "c.toml", epochs=2, dropout=0.3, word_dropout=0.1, **changes))


@pytest.mark.parametrize("sync", [STEP, AVERAGE], ids=["step", "average"])
def test_resume_stays_exact_with_the_word_rows_averaged_by_rows(sync, tmp_path, monkeypatch):
    train, dev, toml = wide_corpus(tmp_path, **sync)
    commands.train(str(train), str(dev), tmp_path / "whole", config_file=toml, processes=2)
    assert weights(tmp_path / "whole")["words.trained"].shape[0] >= distributed.ROW_TABLE_MIN_ROWS
    assert_interrupted_resume_is_exact(tmp_path, monkeypatch, train, dev, toml, 11)  # epoch 2 of 8 batches


def test_a_touched_row_is_found_however_small_its_gradient():
    grad = torch.zeros(6, 50)
    grad[2, 49], grad[4, 0] = 1e-30, -3.0
    assert distributed.nonzero_rows(grad).tolist() == [False, False, True, False, True, False]
    odd = torch.zeros(6, 3)  # 12-byte rows: read as floats
    odd[1, 2] = 2.0
    assert distributed.nonzero_rows(odd).tolist() == [False, True, False, False, False, False]


def test_resume_stays_exact_when_unlabelled_steps_followed_the_meeting_and_the_word_rows_were_read(
        tmp_path, monkeypatch):
    """Cross-view training's unlabelled step follows the meeting a Ctrl-C is heard at: the checkpoint keeps
    each rank's own weights and the word rows each rank's steps read since, which the next meeting combines."""
    train, dev, toml = wide_corpus(tmp_path, **AVERAGE)
    words = [line.split()[0] for line in train.read_text(encoding="utf-8").splitlines() if line.strip()]
    raw = tmp_path / "raw.txt"  # the training words, each rare: a row an unlabelled batch reads, one rank's
    raw.write_text("".join(" ".join(words[k:k + 20]) + "\n" for k in range(0, len(words), 20)), encoding="utf-8")
    commands.train(str(train), str(dev), tmp_path / "whole", config_file=toml, processes=2, unlabeled=[raw])
    interrupt_loss_at(monkeypatch, 11)
    with pytest.raises(training.Interrupted):
        commands.train(str(train), str(dev), tmp_path / "resumed", config_file=toml, processes=2, unlabeled=[raw])
    monkeypatch.undo()
    tensors = load_file(str(tmp_path / "resumed/checkpoint/trainer.safetensors"))
    assert any(k.startswith("rank1.rows.marks.") and tensors[k].any() for k in tensors)
    commands.train(str(train), str(dev), tmp_path / "resumed", config_file=toml, processes=2, unlabeled=[raw],
                   resume=True)
    w, r = weights(tmp_path / "whole"), weights(tmp_path / "resumed")
    assert all(torch.equal(w[k], r[k]) for k in w)


def test_with_averaging_each_rank_takes_batch_size_sentences_a_step_and_with_step_a_slice():
    from tagger.training.loop import step_sentences

    two, one = distributed.World(0, 2), distributed.World()
    assert step_sentences(Config(batch_size=64, sync="average"), two) == 128  # 2 local steps of 64 at once
    assert step_sentences(Config(batch_size=64, sync="step"), two) == 64  # one process's step, shared
    assert step_sentences(Config(batch_size=64, sync="average"), one) == 64


def test_a_mid_epoch_checkpoint_of_averaging_ranks_resumes_only_with_as_many(tmp_path, monkeypatch):
    train, dev, toml = corpus(tmp_path, epochs=2, dropout=0.3, **AVERAGE)
    interrupt_loss_at(monkeypatch, 11)
    with pytest.raises(training.Interrupted):
        commands.train(str(train), str(dev), tmp_path / "out", config_file=toml, processes=2)
    monkeypatch.undo()
    with pytest.raises(InputError, match="middle of an epoch by 2 process.*resume with --processes 2"):
        commands.train(str(train), str(dev), tmp_path / "out", config_file=toml, resume=True)
