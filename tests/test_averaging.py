"""tagger.training.averaging: with sync = "average" two processes (gloo, localhost) all-reduce gradients for
the warm-up's steps as sync = "step" does, then train apart and average every weight every sync_period steps
(the average of the two ranks' weights, bit for bit), but for the big embedding tables, whose rows a meeting
moves by as many moves as one process would have made (a row one rank read takes that rank's move); a checkpoint
keeps the averager's step and each rank's optimizer state; one warning says when N processes are slower."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, make_sentences, write_corpus, write_toml
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from corpora.conll import Sentence
from tagger import commands
from tagger.config import Config
from tagger.encode import collate, length_batches
from tagger.training import averaging, distributed, setup
from tagger.training import loop as training

TRAIN = [Sentence(tuple(t), tuple(g)) for t, g in make_sentences(60, seed=5)]
PERIOD, WARMUP, STEPS = 3, 2, 8  # meetings after steps 0 1 (warm-up: gradients) 2 5 (averages)


def tiny(sync: str) -> Config:
    return Config.from_dict({**TINY_CONFIG, "dropout": 0.3, "sync": sync, "sync_period": PERIOD,
                             "sync_warmup": WARMUP, "clip": 0.0})  # a norm over every gradient: local ones too


def run_steps(folder: Path, sync: str, world: distributed.World) -> None:
    """STEPS steps on this rank's slices, every embedding table a RowSync table (min_rows=1); the weights
    after each optimizer step and after each meeting, and RowSync's bytes, into folder/{sync}{rank}."""
    config = tiny(sync)
    torch.manual_seed(config.seed + world.rank)  # the ranks' own dropout: their weights part between meetings
    trainable, _ = setup.build_trainable(config, TRAIN, "iob2")
    data = setup.prepare_data(trainable, TRAIN, [], None)
    model = distributed.wrap(trainable.model, world, min_rows=1)
    optimizer = setup.make_optimizer(config, trainable.model)
    batches = [ids for ids in length_batches([len(e) for e in data.train], config.batch_size) if len(ids) >= 2]
    tensors, sent = {}, []
    for k, ids in enumerate(batches[:STEPS]):
        training.train_step(model, optimizer, collate([data.train[i] for i in world.shard(ids)]), config.clip,
                            weight=world.size / len(ids))
        tensors |= {f"stepped{k}.{n}": p.detach().clone() for n, p in trainable.model.named_parameters()}
        tensors |= {f"marks{k}.{j}": averaging._stacked(m, len(t))
                    for j, (m, t) in enumerate(zip(model.row_sync.marks, model.row_sync.tables))}
        world.reduce_step(1.0, False)
        tensors |= {f"after{k}.{n}": p.detach().clone() for n, p in trainable.model.named_parameters()}
        sent.append(model.row_sync.sent_bytes)
    tensors["sent"] = torch.tensor(sent)
    save_file(tensors, str(folder / f"{sync}{world.rank}.safetensors"))


def bits(marks: torch.Tensor, rows: int) -> torch.Tensor:
    """(steps, rows) bool from RowSync's marks (steps, rows/8)."""
    return torch.from_numpy(np.unpackbits(marks.numpy(), axis=1, count=rows).astype(bool))


def both(folder: Path, world: distributed.World) -> None:
    for sync in ("step", "average"):
        run_steps(folder, sync, world)


def test_the_ranks_average_every_period_after_a_warm_up_of_per_step_all_reduces(tmp_path):
    with distributed.spawned(2, both, (tmp_path,)) as world:
        both(tmp_path, world)
    r0, r1, step0 = (load_file(str(tmp_path / f"{name}.safetensors")) for name in ("average0", "average1", "step0"))
    names = [k.removeprefix("after0.") for k in r0 if k.startswith("after0.")]
    tables = list(distributed.row_tables(setup.build_trainable(tiny("step"), TRAIN, "iob2")[0].model, min_rows=1))
    assert "word.weight" in tables and len(tables) < len(names)
    for k in range(STEPS):
        meets = k < WARMUP or (k - WARMUP) % PERIOD == 0
        for n in names:
            a, b = r0[f"after{k}.{n}"], r1[f"after{k}.{n}"]
            if k < WARMUP:  # gradients all-reduced (the tables' rows by RowSync), as sync = "step"
                assert torch.equal(a, step0[f"after{k}.{n}"]), f"warm-up step {k}: {n} != sync = step"
            if meets:
                assert torch.equal(a, b), f"step {k}: {n} differs between the ranks after a meeting"
            if k >= WARMUP and meets and n not in tables:  # torch's average: each rank's weights / 2, summed
                mean = r0[f"stepped{k}.{n}"] / 2 + r1[f"stepped{k}.{n}"] / 2
                assert torch.equal(a, mean), f"step {k}: {n} is not the ranks' average"
        for j, n in enumerate(tables):
            if k >= WARMUP and meets:  # moved from the last meeting's rows by one process's count of moves
                base = r0[f"after{last}.{n}"]
                moved = r0[f"stepped{k}.{n}"] - base, r1[f"stepped{k}.{n}"] - base  # (rows, dim) each
                read = [bits(r[f"marks{k}.{j}"], len(base)) for r in (r0, r1)]  # (steps, rows) each
                moves, reads = (read[0] | read[1]).sum(0), read[0].sum(0) + read[1].sum(0)  # (rows,) each
                expected = torch.where((reads > 0)[:, None], base + (moves / reads.clamp(min=1))[:, None]
                                       * (moved[0] + moved[1]), base + (moved[0] + moved[1]) / 2)
                assert torch.allclose(r0[f"after{k}.{n}"], expected, atol=1e-6), f"step {k}: table {n}"
                if n == "word.weight":  # both kinds: rows whose every read had a step of its own (each move
                                        # whole), rows both ranks read in one step (the mean of their moves)
                    apart_steps = (reads > 0) & (moves == reads)
                    assert apart_steps.any() and ((read[0] & read[1]).any(0)).any()
        if meets:
            last = k
        if not meets:
            assert not torch.equal(r0[f"after{k}.lstm.weight_ih_l0"], r1[f"after{k}.lstm.weight_ih_l0"])
            assert not torch.equal(r0[f"after{k}.word.weight"], r1[f"after{k}.word.weight"])
    sent = r0["sent"].tolist()  # RowSync sends in the warm-up and at meetings, nothing between
    assert [b > a for a, b in zip([0, *sent], sent)] == [k < WARMUP or (k - WARMUP) % PERIOD == 0 for k in range(STEPS)]


def test_a_checkpoint_keeps_the_averager_s_step_and_every_rank_s_optimizer(tmp_path):
    sents = make_sentences(48, seed=2)
    train, dev = write_corpus(tmp_path / "training.txt", sents[:40]), write_corpus(tmp_path / "dev.txt", sents[40:])
    toml = write_toml(tmp_path / "c.toml", epochs=1, dropout=0.3, sync_period=4)
    commands.train(str(train), str(dev), tmp_path / "out", config_file=toml, processes=2)
    meta = json.loads((tmp_path / "out/checkpoint/trainer.json").read_text())
    tensors = load_file(str(tmp_path / "out/checkpoint/trainer.safetensors"))
    assert meta["averaging"]["step"] == meta["progress"]["updates"] > 0
    mine = {k.removeprefix("rank1."): v for k, v in tensors.items() if k.startswith("rank1.opt.")}
    assert mine and set(mine) == {k for k in tensors if k.startswith("opt.")}
    assert any(not torch.equal(v, tensors[k]) for k, v in mine.items())  # the ranks' moments differ


def test_slower_processes_are_one_warning(tmp_path, monkeypatch):
    sents = make_sentences(48, seed=2)
    train, dev = write_corpus(tmp_path / "training.txt", sents[:40]), write_corpus(tmp_path / "dev.txt", sents[40:])
    toml = write_toml(tmp_path / "c.toml", epochs=2, sync_period=2)
    monkeypatch.setattr(averaging, "PROBE_STEPS", 3)
    monkeypatch.setattr(averaging, "judge", lambda stats, probe, period: f"warning: {len(stats)} steps")

    class Said(training.Silent):
        def __init__(self):
            self.lines = []

        def message(self, text: str) -> None:
            self.lines.append(text)

    said = Said()
    commands.train(str(train), str(dev), tmp_path / "out", config_file=toml, processes=2, reporter=said)
    assert [line for line in said.lines if line.startswith("warning:")] == ["warning: 3 steps"]


def test_the_judgement_weighs_the_ranks_contention_the_work_that_does_not_shrink_and_the_meetings():
    steps = [(0.010, 0.0, False)] * 40  # (compute, meeting seconds, met): 10 ms on a half batch, no meetings
    assert averaging.judge(steps, averaging.Probe(2, slowdown=1.0, whole=1.5), 8) is None  # 15 ms alone: slower
    said = averaging.judge(steps, averaging.Probe(2, slowdown=1.6, whole=1.5), 8)  # 9.4 ms alone: faster
    assert said == ("warning: --processes 2 trains about 0.94x as fast as one process here (measured at start: "
                    "the processes slow each other 1.60x, and one process takes 1.50x as long on a whole batch "
                    "as on a 1/2 slice; averaging the weights every 8 steps takes 0.0 ms); one process trains "
                    "faster")
    meetings = [(0.010, 0.060 if k % 8 == 0 else 0.0, k % 8 == 0) for k in range(40)]  # +7.5 ms a step
    assert "every 8 steps takes 60.0 ms" in averaging.judge(meetings, averaging.Probe(2, 1.0, 1.5), 8)


def test_sync_is_average_or_step_in_one_line(tmp_path):
    from cli.main import app

    sents = make_sentences(12, seed=2)
    train, dev = write_corpus(tmp_path / "training.txt", sents[:8]), write_corpus(tmp_path / "dev.txt", sents[8:])
    result = CliRunner().invoke(app, ["train", str(train), "--dev", str(dev), "-o", str(tmp_path / "m"),
                                      "--sync", "sometimes"])
    assert result.exit_code == 1
    said = "error: options: sync must be one of average, step, not 'sometimes'"
    assert result.output.strip().splitlines() == [said]



def views_steps(folder: Path, world: distributed.World) -> None:
    """Cross-view training's views, built and wrapped as the loop does; 3 steps with a meeting after the
    first and the third: unlabelled (the views move, the CRF gets no gradient), unlabelled, labelled (the
    views get none). The views' weights after the third step into folder/views{rank}.safetensors."""
    from tagger.training import cvt

    config = Config.from_dict({**TINY_CONFIG, "dropout": 0.3, "sync_period": 2})
    torch.manual_seed(config.seed + world.rank)
    trainable, _ = setup.build_trainable(config, TRAIN, "iob2")
    views = cvt.Views.for_model(trainable.model)
    data = setup.prepare_data(trainable, TRAIN, [], None)
    model = distributed.wrap(trainable.model, world, views=views)
    optimizer = setup.make_optimizer(config, trainable.model, views)
    batches = [ids for ids in length_batches([len(e) for e in data.train], config.batch_size) if len(ids) >= 2]
    for ids, unlabeled in zip(batches, (True, True, False)):
        training.train_step(model, optimizer, collate([data.train[i] for i in world.shard(ids)]), config.clip,
                            weight=world.size / len(ids), unlabeled=unlabeled)
        world.reduce_step(1.0, False)
    save_file({k: v.detach().clone() for k, v in views.state_dict().items()},
              str(folder / f"views{world.rank}.safetensors"))


def test_a_meeting_averages_the_weights_its_step_left_without_a_gradient(tmp_path):
    """torch's averager skips a parameter without a gradient: after a labelled step, cross-view training's
    views. They get a zero gradient first, so the ranks' views meet too instead of parting for good."""
    with distributed.spawned(2, views_steps, (tmp_path,)) as world:
        views_steps(tmp_path, world)
    r0, r1 = (load_file(str(tmp_path / f"views{r}.safetensors")) for r in (0, 1))
    assert r0 and all(torch.equal(r0[k], r1[k]) for k in r0)


def test_resume_is_exact_when_steps_followed_the_meeting_that_heard_ctrl_c(tmp_path, monkeypatch):
    """Cross-view training: an unlabelled step follows each labelled one. With a meeting every 3 steps, a
    Ctrl-C heard at labelled step 18's meeting is followed by unlabelled step 19, apart: the checkpoint keeps
    rank 1's own weights instead of meeting, and the resumed run ends as the uninterrupted one."""
    from conftest import interrupt_loss_at

    sents = make_sentences(48, seed=2)
    train, dev = write_corpus(tmp_path / "training.txt", sents[:40]), write_corpus(tmp_path / "dev.txt", sents[40:])
    raw = tmp_path / "raw.txt"
    raw.write_text("".join(" ".join(tokens) + "\n" for tokens, _ in make_sentences(30, seed=8)), encoding="utf-8")
    toml = write_toml(tmp_path / "c.toml", epochs=2, dropout=0.3, sync_period=3)
    run = functools.partial(commands.train, str(train), str(dev), config_file=toml, processes=2, unlabeled=[raw])
    run(tmp_path / "whole")
    interrupt_loss_at(monkeypatch, 10)  # the 10th labelled batch: epoch 2's second, step 18
    with pytest.raises(training.Interrupted):
        run(tmp_path / "resumed")
    monkeypatch.undo()
    kept = load_file(str(tmp_path / "resumed/checkpoint/trainer.safetensors"))
    assert any(k.startswith("rank1.weight.") for k in kept)
    run(tmp_path / "resumed", resume=True)
    whole, resumed = (load_file(str(tmp_path / f"{r}/checkpoint/model.safetensors")) for r in ("whole", "resumed"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
