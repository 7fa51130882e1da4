"""Checkpoints and the resume policy.

`checkpoint/` is a model directory (the last weights, not the best; config.json marks it as a checkpoint,
which loading as a model refuses) plus the trainer's state: optimizer moments, every rank's random state,
the weight average, cross-view training's modules, what training keeps of the pretrained vectors
(trainer.safetensors, its SHA-256 in trainer.json) and where training stands (trainer.json, with the place
in the unlabelled text). It is written beside the old one and swapped in as a
whole, so a kill leaves one complete checkpoint; from it `--resume` continues bit for bit, even mid-epoch.
With periodic averaging (sync = "average", tagger/training/averaging.py) the ranks' optimizer moments differ:
each rank's is kept (`rank{N}.opt.*`), with the averager's step; the weights are every rank's, since a
checkpoint is written just after the ranks met.

trainer.json also keeps the training's origin (commands.py writes it): the names `tagger info` shows, the
SHA-256 of the training and dev sentences (a resume on other data is refused) and the vectors files with
their SHA-256. When the vectors came from files, the checkpoint leaves out what those files give back
exactly (the frozen pretrained-only rows, their words, the pretrained start of the trained rows, the unseen
words' neighbours): a resume re-reads them, refusing a file that changed.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from tagger import store
from tagger.config import Config
from tagger.errors import ConfigError, InputError, ModelError
from tagger.training import cvt, setup, unseen
from tagger.training.distributed import World
from tagger.training.model import Trainable
from tagger.training.setup import Vectors, WeightAverage, make_optimizer
from tagger.training.state import Progress, Reporter, Silent

RESUMABLE = ("epochs", "max_minutes", "threads")  # the settings --resume may change
TRAINER = "trainer.safetensors"


def save_checkpoint(output: Path, trainable: Trainable, optimizer: torch.optim.Optimizer, progress: Progress,
                    average: WeightAverage | None = None, pretrained: unseen.Pretrained | None = None,
                    rng_states: Sequence[torch.Tensor] | None = None, origin: dict | None = None,
                    averaging: dict | None = None) -> None:
    """Write the new checkpoint beside the old one and swap directories, so a kill never loses both.
    rng_states: every rank's torch random state, rank 0's first (default: this process's). origin: where the
    data and vectors came from (module docstring); with vectors files, what they give back is left out.
    averaging: periodic averaging's state ({"step", "optimizers": every rank's `optimizer_state`})."""
    final, new, old = output / "checkpoint", output / "checkpoint.new", output / "checkpoint.old"
    shutil.rmtree(new, ignore_errors=True)
    reread = bool((origin or {}).get("vectors"))
    trainable.save(new, {"checkpoint": True}, frozen=not reread)
    tensors, meta = optimizer_state(optimizer)
    tensors |= (averaging or {}).get("tensors", {})
    states = list(rng_states) if rng_states is not None else [torch.get_rng_state()]
    tensors["rng.torch"] = states[0]
    tensors |= {f"rng.torch.{rank}": state for rank, state in enumerate(states) if rank}
    if average is not None:
        tensors |= {f"average.{k}": v for k, v in average.average.items()}
    if trainable.views is not None:  # cross-view training's modules: training-only, so here and not in the model
        tensors |= {cvt.PREFIX + k: v.detach().clone() for k, v in trainable.views.state_dict().items()}
    if pretrained is not None and not reread:
        tensors |= pretrained.state()
    data = save_tensors(tensors)
    store.atomic_write(new / TRAINER, data)  # mode from the umask, as the model's files
    meta |= {"progress": progress.__dict__, "processes": len(states), "sha256": store.sha256(data),
             "origin": origin or {}}
    if averaging is not None:
        meta["averaging"] = {"step": averaging["step"], "scalars": averaging["scalars"]}
    store.atomic_write(new / "trainer.json", json.dumps(meta).encode())
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_on_leader(output: Path, trainable: Trainable, optimizer: torch.optim.Optimizer, progress: Progress,
                   average: WeightAverage | None, pretrained: unseen.Pretrained | None, world: World,
                   origin: dict | None = None) -> None:
    """Rank 0 saves, with every rank's random state (and with periodic averaging, every rank's optimizer
    state, after the ranks met); the others wait until it is on disk."""
    averaging = averaging_state(optimizer, world, epoch_end=progress.step == 0)
    states = world.gather(torch.get_rng_state())
    if world.leader:
        save_checkpoint(output, trainable, optimizer, progress, average, pretrained, states, origin, averaging)
    world.barrier()


def averaging_state(optimizer: torch.optim.Optimizer, world: World, epoch_end: bool) -> dict | None:
    """Periodic averaging's part of a checkpoint, on rank 0 (None elsewhere, or without averaging): the
    averager's step and the other ranks' optimizer states, as `rank{N}.opt.*` tensors and their scalars.
    At an epoch's end the ranks meet first if their weights may differ (every run meets there), so that rank
    0's weights are every rank's. Mid-epoch (Ctrl-C, heard at a meeting) steps may have followed the meeting
    (cross-view training's unlabelled ones): a meeting there would change the run, so the other ranks' own
    weights are kept instead (`rank{N}.weight.{i}`, i in the averager's order), with every rank's marks of
    the table rows its steps read since and the rows' base (`rank{N}.rows.*`)."""
    local = world.sync.local
    if local is None:
        return None
    if epoch_end:
        world.run(local.meet)
    weights = {str(i): p.detach().clone() for i, p in enumerate(local.params)} if local.apart else {}
    rows = local.rows_state() if local.apart else {}
    gathered = world.gather_to_leader((optimizer_state(optimizer), weights, rows))
    if not world.leader:
        return None
    tensors = {f"rank{r}.{k}": v for r, ((t, _), _, _) in enumerate(gathered) if r for k, v in t.items()}
    tensors |= {f"rank{r}.weight.{i}": v for r, (_, w, _) in enumerate(gathered) if r for i, v in w.items()}
    tensors |= {f"rank{r}.rows.{k}": v for r, (_, _, rows) in enumerate(gathered) for k, v in rows.items()}
    return {"step": local.step, "tensors": tensors,
            "scalars": {str(r): m["scalars"] for r, ((_, m), _, _) in enumerate(gathered) if r}}


def checkpoint_dir(output: Path) -> Path:
    """The checkpoint to resume from: `checkpoint/`, or `checkpoint.old/` after a kill between the renames."""
    directory = output / "checkpoint"
    if not directory.exists() and (output / "checkpoint.old").exists():
        directory = output / "checkpoint.old"
    if not (directory / "trainer.json").exists():
        raise InputError("nothing to resume: no checkpoint here (train without --resume)", path=str(output))
    return directory


def origin_of(output: Path) -> dict:
    """The origin the checkpoint in `output` recorded ({} for a checkpoint older than origins)."""
    return _trainer_meta(checkpoint_dir(output)).get("origin") or {}


def load_checkpoint(output: Path, world: World | None = None, reporter: Reporter | None = None
                    ) -> tuple[Trainable, torch.optim.Optimizer, Progress, WeightAverage | None,
                               unseen.Pretrained | None]:
    """The state `save_checkpoint` wrote, this rank's random state restored (and the vectors files re-read
    when the checkpoint left their rows out). Another number of processes than the checkpoint's resumes too
    (new dropout draws on the extra ranks), but mid-epoch with periodic averaging (`_check_processes`)."""
    world, reporter = world or World(), reporter or Silent()
    directory = checkpoint_dir(output)
    meta = _trainer_meta(directory)
    tensors = _trainer_tensors(directory, meta)
    sources = (meta.get("origin") or {}).get("vectors")
    vectors = read_vectors(sources) if sources else None
    config, vocab_json, saved, model_meta = store.load_model(directory, checkpoint=True)
    _check_processes(meta, config, world, directory)
    if vectors is not None:  # the rows the checkpoint left out, from the files it names
        vocab_json["frozen_words"], saved["words.frozen"] = setup.frozen_rows(vectors, vocab_json["words"])
    trainable = Trainable.from_saved(directory, config, vocab_json, saved, model_meta)
    trainable.model.train()
    views = {k.removeprefix(cvt.PREFIX): v for k, v in tensors.items() if k.startswith(cvt.PREFIX)}
    if views:
        trainable = dataclasses.replace(trainable, views=cvt.Views.for_model(trainable.model))
        trainable.views.load_state_dict(views)
    optimizer = make_optimizer(trainable.config, trainable.model, trainable.views)
    optimizer.load_state_dict(optimizer_dict(*_rank_optimizer(meta, tensors, world)))
    world.sync.resumed_step = (meta.get("averaging") or {}).get("step", meta["progress"]["updates"])
    prefix = f"rank{world.rank}.weight."  # this rank's own weights, set once DDP broadcast rank 0's
    world.sync.resumed_weights = {int(k.removeprefix(prefix)): v for k, v in tensors.items() if k.startswith(prefix)}
    world.sync.resumed_apart = any(k.startswith("rank") and ".weight." in k for k in tensors)  # the same everywhere
    world.sync.resumed_rows = _rank_rows(tensors, world.rank)
    rng = tensors.get("rng.torch" if world.leader else f"rng.torch.{world.rank}")
    if rng is not None:
        torch.set_rng_state(rng)
    else:  # a rank the checkpoint did not have: its own dropout draws
        torch.manual_seed(trainable.config.seed + 7919 * world.rank + 104_729 * meta["progress"]["updates"])
    averaged = {k.removeprefix("average."): v for k, v in tensors.items() if k.startswith("average.")}
    average = WeightAverage(trainable.model, trainable.config.average, averaged) if trainable.config.average else None
    if vectors is None:
        pretrained = unseen.Pretrained.from_state(tensors)
    else:
        pretrained = setup.pretrained_state(trainable, vectors, reporter, neighbours=world.leader)
    return trainable, optimizer, Progress(**meta["progress"]), average, pretrained


def _check_processes(meta: dict, config: Config, world: World, directory: Path) -> None:
    """With periodic averaging each rank takes batch_size sentences a step (loop.step_sentences), so an epoch's
    batches depend on the number of processes: a checkpoint taken mid-epoch resumes with as many."""
    taken = meta.get("processes", 1)
    if meta["progress"]["step"] and taken != world.size and config.sync == "average" and max(taken, world.size) > 1:
        raise InputError(f"--resume: this checkpoint was taken in the middle of an epoch by {taken} process(es), whose "
                         f"batches were batch_size x {taken} sentences (sync = \"average\"): resume with --processes "
                         f"{taken}", path=str(directory))


def _rank_rows(tensors: dict[str, torch.Tensor], rank: int) -> dict[str, torch.Tensor]:
    """This rank's `rank{N}.rows.*` (the tables' marks and base, LocalSGD.rows_state), or, for a rank the
    checkpoint did not have, rank 0's base and marks of no row read, so that every rank meets on as many steps."""
    mine = {k.removeprefix(f"rank{rank}.rows."): v for k, v in tensors.items() if k.startswith(f"rank{rank}.rows.")}
    if mine:
        return mine
    first = {k.removeprefix("rank0.rows."): v for k, v in tensors.items() if k.startswith("rank0.rows.")}
    return {k: torch.zeros_like(v) if k.startswith("marks.") else v for k, v in first.items()}


def _trainer_meta(directory: Path) -> dict[str, Any]:
    path = directory / "trainer.json"
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"unreadable checkpoint state ({e}): train anew without --resume", path=str(path)) from None
    if not isinstance(meta, dict) or "progress" not in meta:
        raise ModelError("not a checkpoint's state: train anew without --resume", path=str(path))
    return meta


def _trainer_tensors(directory: Path, meta: dict) -> dict[str, torch.Tensor]:
    """trainer.safetensors, checked against the SHA-256 trainer.json records (checkpoints older than the
    check have none)."""
    path = directory / TRAINER
    problem = "checksum does not match trainer.json: the file was altered, truncated or half-written"
    try:
        data = path.read_bytes()
        if meta.get("sha256") not in (None, store.sha256(data)):
            raise ModelError(f"{problem}; train anew without --resume", path=str(path))
        return load_tensors(data)
    except (OSError, SafetensorError) as e:
        raise ModelError(f"unreadable ({e}); train anew without --resume", path=str(path)) from None


def files_origin(files: Sequence[str | Path]) -> list[dict[str, str]]:
    """The files a training read (vectors, unlabelled text), for its checkpoints: each one's absolute path and
    SHA-256."""
    return [{"path": str(Path(f).resolve()), "sha256": _file_sha256(Path(f))} for f in files]


def read_vectors(sources: Sequence[dict[str, str]]) -> Vectors:
    """The vectors a training started from, read again from the files its checkpoint names (stacked when
    several); InputError naming a file that is gone or changed."""
    from tagger.embeddings import load_vectors, stack_vectors

    check_unchanged(sources, "vectors")
    sets = [load_vectors(source["path"]) for source in sources]
    return stack_vectors(sets) if len(sets) > 1 else sets[0]


def check_unchanged(sources: Sequence[dict[str, str]], what: str) -> None:
    """InputError naming the first of the files a training started from (`files_origin`'s records) that
    is gone or changed: --resume reads them again."""
    for source in sources:
        path = Path(source["path"])
        if not path.is_file():
            raise InputError(f"--resume re-reads the {what} file the training started from, and this file is gone: "
                             "put it back", path=str(path))
        if _file_sha256(path) != source["sha256"]:
            raise InputError(f"--resume: this {what} file changed since the training started (its SHA-256 "
                             "differs): put the original back", path=str(path))


def _file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_same_corpora(recorded: dict, corpora: dict[str, tuple[str, str]]) -> None:
    """Refuse to resume on other data: `corpora` maps "train"/"dev" to (file or dataset, its sentences'
    SHA-256), `recorded` is the checkpoint's origin. A file moved or renamed with the same sentences is fine."""
    for split, (ref, digest) in corpora.items():
        before = (recorded.get("corpora") or {}).get(split)
        if before is not None and before != digest:
            name = "training" if split == "train" else "dev"
            raise InputError(f"--resume: these {name} sentences differ from those the checkpoint was trained "
                             f"with (from {recorded.get('training', {}).get(split, 'another file')}): resume with "
                             "the same data, or train anew without --resume", path=str(ref))


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """The optimizer's state as (tensors for safetensors, JSON-able rest)."""
    state = optimizer.state_dict()
    tensors = {f"opt.{i}.{k}": v.detach().clone() for i, s in state["state"].items()
               for k, v in s.items() if isinstance(v, torch.Tensor)}
    scalars = {str(i): {k: v for k, v in s.items() if not isinstance(v, torch.Tensor)}
               for i, s in state["state"].items()}
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _rank_optimizer(meta: dict, tensors: dict, world: World) -> tuple[dict, dict]:
    """The (meta, tensors) holding this rank's optimizer state: its own when periodic averaging kept it
    (`averaging_state`), else rank 0's (one optimizer for all ranks; or a rank the checkpoint did not have)."""
    scalars = (meta.get("averaging") or {}).get("scalars", {}).get(str(world.rank))
    if world.leader or scalars is None:
        return meta, tensors
    prefix = f"rank{world.rank}."
    return {**meta, "scalars": scalars}, {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def optimizer_dict(meta: dict, tensors: dict) -> dict:
    """The optimizer's state_dict back from what `optimizer_state` split."""
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
    compared: tokenizer = "auto" (became words or chars), word_dim when the model has pretrained vectors
    (their dimension won), unseen_remedies = "auto" (became on or off) and the remedies' strengths when off
    (0)."""
    resolved = {"version", "lexicon", "context", *(["tokenizer"] if config.tokenizer == "auto" else []),
                *(["char_encoder"] if config.char_encoder == "auto" else []),
                *(["bigrams"] if config.bigrams == "auto" else []), *(["word_dim"] if pretrained else []),
                *(["unseen_remedies"] if config.unseen_remedies == "auto" else []),
                *(["pretrained_swap", "unseen_drift"] if saved.unseen_remedies == "off" else [])}
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
