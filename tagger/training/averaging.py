"""Periodic model averaging (post-local SGD) for `--processes N` with `sync = "average"`: each rank takes
`sync_period` optimizer steps on its own slices of the global batches, then the ranks average their
weights. On one machine a collective costs about as much for 4 bytes as for 1 MB (bench/README.md, issue 38),
so meeting every K steps instead of 4-6 times a step is what makes N processes faster than one.

Everything here is torch's own: `PeriodicModelAverager` averages the parameters (one all-reduce of them all,
flattened, the embedding tables included, so their rows stay the same on every rank), and DDP's
`post_localSGD_hook` all-reduces the gradients for the first `sync_warmup` steps and sends nothing after.
The row tables' RowSync (tagger/training/distributed.py) runs during the warm-up only.

A rank's weights differ from the others' between meetings, its optimizer moments always: a checkpoint keeps
every rank's optimizer state and the averager's step (tagger/training/checkpoints.py), and is written just
after a meeting (Ctrl-C is heard at meetings only; an epoch's end meets if the last step did not), so
`--resume` continues bit for bit.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.post_localSGD_hook import PostLocalSGDState, post_localSGD_hook
from torch.distributed.algorithms.model_averaging import averagers, utils

PROBE_STEPS = 40  # local steps rank 0 times before judging whether N processes beat one (the warning)


@dataclass
class Sync:
    """One process's synchronisation state, held by its World: the averaging once `distributed.wrap` set
    it up, the averager's step a checkpoint restored before that, and where a warning goes (rank 0's
    reporter)."""

    local: LocalSGD | None = None
    resumed_step: int = 0
    warn: Callable[[str], None] | None = None
    stats: list[tuple[int, int, float]] = field(default_factory=list)  # (sentences, length, seconds) per step


class LocalSGD:
    """Post-local SGD over one DDP-wrapped Objective (objective.py): torch's PeriodicModelAverager after every optimizer
    step (`after_step`), DDP's post-local-SGD hook for the warm-up, RowSync switched off after it."""

    def __init__(self, ddp: nn.parallel.DistributedDataParallel, period: int, warmup: int, step: int = 0,
                 sync: Sync | None = None):
        self.ddp, self.sync = ddp, sync or Sync()
        self.params = [p for p in ddp.module.parameters() if p.requires_grad]  # every trainable weight
        self.averager = averagers.PeriodicModelAverager(period=period, warmup_steps=warmup)
        self.averager.step = step  # optimizer steps taken so far (a checkpoint's, on resume)
        self.hook = PostLocalSGDState(process_group=None, subgroup=None, start_localSGD_iter=warmup,
                                      post_local_gradient_allreduce=False)
        self.hook.iter = min(step, warmup)  # its own count of DDP's backward passes, which stops at the warm-up
        ddp.register_comm_hook(self.hook, post_localSGD_hook)
        self.apart = False  # whether the ranks' weights may differ now (steps since the last meeting)
        self.last = time.perf_counter()
        self._switch_rows()

    @property
    def period(self) -> int:
        return self.averager.period

    @property
    def step(self) -> int:
        """The averager's step: optimizer steps taken since the start (saved in checkpoints)."""
        return self.averager.step

    def warming_up(self) -> bool:
        """Whether the next step all-reduces its gradients (DDP and RowSync) as sync = "step" does."""
        return self.averager.step < self.averager.warmup_steps

    def due(self) -> bool:
        """Whether the averager averages at its next call: PeriodicModelAverager's own rule."""
        a = self.averager
        return a.step >= a.warmup_steps and (a.step - a.warmup_steps) % a.period == 0

    def after_step(self) -> bool:
        """After each optimizer step: the weights averaged when due; whether the ranks met in this step
        (an average, or the warm-up's all-reduced gradients), when the loop may all-reduce its loss and stop."""
        computed = time.perf_counter() - self.last
        meets, warm = self.due(), self.warming_up()
        if meets:
            self._give_every_weight_a_gradient()
        self.averager.average_parameters(self.params)  # averages when due; counts the step either way
        self.apart = not (meets or warm)
        self._switch_rows()
        if not warm:
            self._time(computed, time.perf_counter() - self.last - computed)
        return meets or warm

    def started(self) -> None:
        """A step starts now (its compute is timed from here)."""
        self.last = time.perf_counter()

    def meet(self) -> None:
        """Average now, off the period, if the weights may differ: before a checkpoint at an epoch's end,
        so that every rank's weights are the checkpoint's. torch's average_parameters, as the averager's."""
        if self.apart:
            self._give_every_weight_a_gradient()
            utils.average_parameters_or_parameter_groups(self.params, self.averager.process_group)
            self.apart = False
        self.started()

    def _give_every_weight_a_gradient(self) -> None:
        """torch's averager leaves out a parameter without a gradient (one the step did not use, as
        cross-view training's views on labelled batches): such a parameter gets a zero gradient, which the
        next step's zero_grad drops, so that no weight drifts apart."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def _switch_rows(self) -> None:
        """RowSync all-reduces the tables' rows during the warm-up only; after it the averager takes them."""
        row_sync = getattr(self.ddp, "row_sync", None)
        if row_sync is not None:
            row_sync.enabled = self.warming_up()

    def _time(self, computed: float, met: float) -> None:
        """Rank 0's first PROBE_STEPS local steps, timed, then judged once (`judge`)."""
        stats, shape = self.sync.stats, getattr(self.ddp.module, "shape", None)
        if self.sync.warn is None or shape is None or len(stats) > PROBE_STEPS:
            return
        stats.append((shape[0], shape[1], computed + met))
        if len(stats) == PROBE_STEPS:
            message = judge(stats, dist.get_world_size(), self.period)
            stats.append((0, 0, 0.0))  # judged: no more timing
            if message:
                self.sync.warn(message)


def judge(stats: list[tuple[int, int, float]], processes: int, period: int) -> str | None:
    """A warning when `processes` ranks train slower than one process would, from rank 0's timed steps
    (its slice's sentences B, their length T, the step's seconds, meetings included). A step's compute is
    fitted as a + b T + c B T: a and b T do not shrink with the slice (Python's and the BiLSTM's per-token
    loop), c B T does. One process would take a + b T + c N B T a global batch; these ranks took the
    measured seconds. Measured beside the other ranks, so an estimate; None when N processes come out ahead."""
    sentences, lengths, seconds = (np.array(column, dtype=np.float64) for column in zip(*stats))
    design = np.stack([np.ones_like(lengths), lengths, sentences * lengths], axis=1)  # (steps, 3)
    (a, b, c), *_ = np.linalg.lstsq(design, seconds, rcond=None)
    fixed = a + b * lengths  # (steps,) the part of each step that does not shrink with the slice
    one = float(np.sum(fixed + c * processes * sentences * lengths))
    many = float(np.sum(seconds))
    if not (one > 0 and many > 0) or one >= many:
        return None
    return (f"warning: --processes {processes} trains about {one / many:.2f}x as fast as one process here "
            f"(measured over {len(stats)} steps: {1000 * float(np.mean(fixed)):.1f} ms of each "
            f"{1000 * many / len(stats):.1f} ms step do not shrink with the {processes}-way slice of the batch, "
            f"and the weights are averaged every {period} steps); one process, or a larger batch_size, trains "
            "faster")
