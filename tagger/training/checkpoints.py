"""Checkpoints and the resume policy.

`checkpoint/` is a model directory (the last weights, not the best) plus the trainer's state: optimizer
moments, every rank's random state, the weight average, what training keeps of the pretrained vectors
(trainer.safetensors) and where training stands (trainer.json). It is written beside the old one and
swapped in as a whole, so a kill leaves one complete checkpoint; from it `--resume` continues bit for bit,
even mid-epoch.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tagger import store
from tagger.config import Config
from tagger.errors import ConfigError, InputError
from tagger.training import unseen
from tagger.training.distributed import World
from tagger.training.model import Trainable
from tagger.training.setup import WeightAverage, make_optimizer
from tagger.training.state import Progress

RESUMABLE = ("epochs", "max_minutes", "threads")  # the settings --resume may change


def save_checkpoint(output: Path, tagger: Trainable, optimizer: torch.optim.Optimizer, progress: Progress,
                    average: WeightAverage | None = None, pretrained: unseen.Pretrained | None = None,
                    rng_states: Sequence[torch.Tensor] | None = None) -> None:
    """Write the new checkpoint beside the old one and swap directories, so a kill never loses both.
    rng_states: every rank's torch random state, rank 0's first (default: this process's)."""
    final, new, old = output / "checkpoint", output / "checkpoint.new", output / "checkpoint.old"
    shutil.rmtree(new, ignore_errors=True)
    tagger.save(new)
    tensors, meta = _optimizer_state(optimizer)
    states = list(rng_states) if rng_states is not None else [torch.get_rng_state()]
    tensors["rng.torch"] = states[0]
    tensors |= {f"rng.torch.{rank}": state for rank, state in enumerate(states) if rank}
    if average is not None:
        tensors |= {f"average.{k}": v for k, v in average.average.items()}
    if pretrained is not None:
        tensors |= pretrained.state()
    save_file(tensors, str(new / "trainer.safetensors"))
    meta["progress"] = progress.__dict__
    meta["processes"] = len(states)
    store.atomic_write(new / "trainer.json", json.dumps(meta).encode())
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_on_leader(output: Path, tagger: Trainable, optimizer: torch.optim.Optimizer, progress: Progress,
                   average: WeightAverage | None, pretrained: unseen.Pretrained | None, world: World) -> None:
    """Rank 0 saves, with every rank's random state; the others wait until it is on disk."""
    states = world.gather(torch.get_rng_state())
    if world.leader:
        save_checkpoint(output, tagger, optimizer, progress, average, pretrained, states)
    world.barrier()


def checkpoint_dir(output: Path) -> Path:
    """The checkpoint to resume from: `checkpoint/`, or `checkpoint.old/` after a kill between the renames."""
    directory = output / "checkpoint"
    if not directory.exists() and (output / "checkpoint.old").exists():
        directory = output / "checkpoint.old"
    if not (directory / "trainer.json").exists():
        raise InputError("nothing to resume: no checkpoint here (train without --resume)", path=str(output))
    return directory


def load_checkpoint(output: Path, world: World | None = None) -> tuple[Trainable, torch.optim.Optimizer, Progress,
                                                                       WeightAverage | None, unseen.Pretrained | None]:
    """The state `save_checkpoint` wrote, this rank's random state restored. Another number of processes
    than the checkpoint's resumes too: the same global batches, but new dropout draws on the extra ranks."""
    world = world or World()
    directory = checkpoint_dir(output)
    tagger = Trainable.load(directory)
    tagger.model.train()
    meta = json.loads((directory / "trainer.json").read_text(encoding="utf-8"))
    tensors = load_file(str(directory / "trainer.safetensors"))
    optimizer = make_optimizer(tagger.config, tagger.model)
    optimizer.load_state_dict(_optimizer_dict(meta, tensors))
    rng = tensors.get("rng.torch" if world.leader else f"rng.torch.{world.rank}")
    if rng is not None:
        torch.set_rng_state(rng)
    else:  # a rank the checkpoint did not have: its own dropout draws
        torch.manual_seed(tagger.config.seed + 7919 * world.rank + 104_729 * meta["progress"]["updates"])
    averaged = {k.removeprefix("average."): v for k, v in tensors.items() if k.startswith("average.")}
    average = WeightAverage(tagger.model, tagger.config.average, averaged) if tagger.config.average else None
    return tagger, optimizer, Progress(**meta["progress"]), average, unseen.Pretrained.from_state(tensors)


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The optimizer's state as (tensors for safetensors, JSON-able rest)."""
    state = optimizer.state_dict()
    tensors = {f"opt.{i}.{k}": v.detach().clone() for i, s in state["state"].items()
               for k, v in s.items() if isinstance(v, torch.Tensor)}
    scalars = {str(i): {k: v for k, v in s.items() if not isinstance(v, torch.Tensor)}
               for i, s in state["state"].items()}
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_dict(meta: dict, tensors: dict) -> dict:
    """The optimizer's state_dict back from what `_optimizer_state` split."""
    state: dict[int, dict] = {int(i): dict(s) for i, s in meta["scalars"].items()}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def resumed_config(saved: Config, config: Config, given: Collection[str], output: Path,
                   pretrained: bool = False) -> Config:
    """The checkpoint's config with the settings that may change on resume taken from `config`; any other
    setting the user gave (`given`) that differs is a ConfigError. Settings that training resolved are not
    compared: tokenizer = "auto" (became words or chars), and word_dim when the model has pretrained
    vectors (their dimension won)."""
    resolved = {"version", "lexicon", "context", *(["tokenizer"] if config.tokenizer == "auto" else []),
                *(["char_encoder"] if config.char_encoder == "auto" else []),
                *(["bigrams"] if config.bigrams == "auto" else []), *(["word_dim"] if pretrained else [])}
    changing = {name for name in given if name in RESUMABLE}
    fixed = sorted(name for name in given if name not in RESUMABLE and name not in resolved
                   and getattr(config, name) != getattr(saved, name))
    if fixed:
        raise ConfigError(f"--resume cannot change {', '.join(fixed)} (the checkpoint has "
                          f"{', '.join(f'{n} = {getattr(saved, n)!r}' for n in fixed)}); only "
                          f"{', '.join(RESUMABLE)} may change", path=str(output / "checkpoint"))
    return Config.from_dict({**saved.to_dict(), **{n: getattr(config, n) for n in changing}})


def check_left(config: Config, progress: Progress, output: Path) -> None:
    """Refuse to resume a training that has nothing left to do, saying why it ended."""
    if progress.epoch >= config.epochs:
        why = f"all {config.epochs} epochs are trained (raise --epochs to train more)"
    elif progress.bad_epochs >= config.patience:
        why = f"it stopped early: no better dev F1 in {progress.bad_epochs} epochs (patience = {config.patience})"
    elif progress.out_of_time_or_patience(config):
        why = f"it used its max_minutes = {config.max_minutes} (raise it in the config to train more)"
    else:
        return
    raise InputError(f"nothing left to train: {why}; the best model is epoch {progress.best_epoch}",
                     path=str(output))


def trim_metrics(path: Path, epochs_done: int) -> None:
    """On resume, drop lines of epochs the checkpoint does not contain (a kill between the two writes)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("epoch", 0) <= epochs_done]
    if len(kept) != len(lines):
        store.atomic_write(path, "".join(line + "\n" for line in kept).encode())
