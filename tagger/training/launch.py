"""Launching training: in this process alone, on `--processes N` processes of this machine, or as one rank
of the world torchrun set up. Every rank runs tagger/training/loop.py's `train`; this module decides which
world it runs in (tagger/training/distributed.py makes the worlds)."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from corpora.conll import Sentence
from tagger.config import Config
from tagger.errors import ConfigError
from tagger.training import distributed
from tagger.training.distributed import World
from tagger.training.loop import train
from tagger.training.setup import Inputs
from tagger.training.state import Interrupted, Progress, Reporter, Silent


def train_processes(processes: int, *, config: Config, train_sents: Sequence[Sentence],
                    dev_sents: Sequence[Sentence], output: str | Path, source_scheme: str | None,
                    dev_scheme: str | None = None, inputs: Inputs | None = None, resume: bool = False,
                    reporter: Reporter | None = None, given: Collection[str] = (), origin: dict | None = None,
                    unlabeled: Sequence[str | Path] = ()) -> tuple[Progress, World]:
    """train() data-parallel: in the world torchrun set up (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or on
    `processes` processes of this machine with this one as rank 0, or in this process alone. Returns this
    rank's Progress (rank 0's decisions: the same on every rank) and its World."""
    reporter = reporter or Silent()
    run = functools.partial(train, config=config, train_sents=train_sents, output=output,
                            source_scheme=source_scheme, dev_scheme=dev_scheme, inputs=inputs, resume=resume,
                            given=given, origin=origin, unlabeled=unlabeled)
    env = distributed.env_world()
    if env is not None:
        if processes > 1:
            raise ConfigError(f"--processes {processes} under torchrun, which started {env.size} processes: "
                              "leave --processes out and set --nproc-per-node instead")
        with distributed.process_group(env) as world:
            reporter = reporter if world.leader else Silent()
            world.sync.warn = reporter.message if world.leader else None
            return run(dev_sents=dev_sents, reporter=reporter, world=world), world
    if processes <= 1:
        return run(dev_sents=dev_sents, reporter=reporter), World()
    warn_if_oversubscribed(processes, reporter.message)
    with distributed.spawned(processes, functools.partial(run, dev_sents=(), reporter=Silent()), (),
                             agreed=(Interrupted,)) as world:
        world.sync.warn = reporter.message  # periodic averaging's one warning, should N processes be slower
        return run(dev_sents=dev_sents, reporter=reporter, world=world), world


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def warn_if_oversubscribed(processes: int, warn: Callable[[str], None]) -> None:
    """One warning when there are more training processes than cores: they would share cores and each
    step would wait for the slowest, so the whole run goes slower than on fewer processes."""
    cores = usable_cores()
    if processes > cores:
        warn(f"warning: --processes {processes} exceeds the {cores} usable CPU core{'s' * (cores != 1)}: the "
             f"processes will share cores and train slower; use --processes {cores} or fewer")
