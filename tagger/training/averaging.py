"""Periodic model averaging (post-local SGD) for `--processes N` with `sync = "average"`: each rank takes
`sync_period` optimizer steps on its own slices of the global batches, then the ranks average their
weights. On one machine a collective costs about as much for 4 bytes as for 1 MB (bench/README.md, issue 38),
so meeting every K steps instead of 4-6 times a step is what makes N processes faster than one.

Everything here is torch's own: `PeriodicModelAverager` averages the parameters (one all-reduce of them all,
flattened), and DDP's `post_localSGD_hook` all-reduces the gradients for the first `sync_warmup` steps and
sends nothing after. The big embedding tables (the words) are combined by their readers: between meetings
RowSync (tagger/training/distributed.py) marks the rows each rank's step read, and a meeting moves each row
from where the last meeting left it by the ranks' moves summed, scaled by (steps in which any rank read the
row) / (the ranks' reads of it), as many moves as one process would have made. A row that one rank's
slices read takes that rank's move whole, and one read by the ranks in different steps both moves, as on one
process; a plain average would halve them (Adam's step does not grow with the gradient, and the other rank's
row stays put), and most words are rare (dev F1 lagged, bench/README.md, issue 38). A row read by every rank
in the same steps gets the mean of their moves, a row none read the plain mean (Adam's moments still move
it). During the warm-up RowSync averages the rows' gradients every step instead.

A rank's weights differ from the others' between meetings, its optimizer moments always: a checkpoint keeps
every rank's optimizer state and the averager's step (tagger/training/checkpoints.py). At an epoch's end the
ranks meet first if the last step did not; Ctrl-C is heard at meetings only, and should steps have followed
that meeting (cross-view training's unlabelled one), the checkpoint keeps each rank's own weights. So
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
    resumed_weights: dict[int, torch.Tensor] = field(default_factory=dict)  # a checkpoint's weights of this
                                                                            # rank, by index in LocalSGD.params
    resumed_apart: bool = False  # whether the checkpoint kept the ranks' own weights (they differed)
    resumed_rows: dict[str, torch.Tensor] = field(default_factory=dict)  # a checkpoint's marks.{j} and base.{j}
                                                                         # of this rank (LocalSGD.rows_state)
    warn: Callable[[str], None] | None = None
    stats: list[tuple[float, float, bool]] = field(default_factory=list)  # rank 0's local steps: (compute
                                                                         # seconds, meeting seconds, met)
    probe: Probe | None = None  # measured at start, for the warning


class LocalSGD:
    """Post-local SGD over one DDP-wrapped Objective (objective.py): torch's PeriodicModelAverager after every
    optimizer step (`after_step`) over every trainable weight but the big tables (averaged by their readers),
    DDP's post-local-SGD hook for the warm-up."""

    def __init__(self, ddp: nn.parallel.DistributedDataParallel, period: int, warmup: int, step: int = 0,
                 sync: Sync | None = None):
        self.ddp, self.sync = ddp, sync or Sync()
        self.params = [p for p in ddp.module.parameters() if p.requires_grad]  # every trainable weight
        self.rows = ddp.row_sync  # the big embedding tables, averaged by their readers (None: there are none)
        tables = self.rows.tables if self.rows else []
        self.others = [p for p in self.params if all(p is not t for t in tables)]  # torch's averager's
        self.averager = averagers.PeriodicModelAverager(period=period, warmup_steps=warmup)
        self.averager.step = step  # optimizer steps taken so far (a checkpoint's, on resume)
        self.hook = PostLocalSGDState(process_group=None, subgroup=None, start_localSGD_iter=warmup,
                                      post_local_gradient_allreduce=False)
        self.hook.iter = min(step, warmup)  # its own count of DDP's backward passes, which stops at the warm-up
        ddp.register_comm_hook(self.hook, post_localSGD_hook)
        self.apart = self.sync.resumed_apart  # whether the ranks' weights may differ now (the same on every rank)
        with torch.no_grad():  # after DDP's start-up broadcast of rank 0's weights
            for i, value in self.sync.resumed_weights.items():
                self.params[i].copy_(value)
        self.base = [t.detach().clone() for t in tables]  # (rows, dim) each: where the last meeting left them
        for j in range(len(tables) if self.sync.resumed_rows else 0):
            self.base[j].copy_(self.sync.resumed_rows[f"base.{j}"])
            self.rows.marks[j] = list(self.sync.resumed_rows[f"marks.{j}"].unbind(0))
        self.sync.resumed_weights, self.sync.resumed_apart, self.sync.resumed_rows = {}, False, {}
        self._count()
        self.sync.probe = Probe.measure(dist.get_rank(), dist.get_world_size())
        self.last = time.perf_counter()

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
            self._combine_tables()
        self.averager.average_parameters(self.others)  # averages when due; counts the step either way
        self.apart = not (meets or warm)
        if warm:  # the tables' rows were averaged by RowSync: the same on every rank
            self._rebase()
        self._count()
        if not warm:
            self._time(computed, time.perf_counter() - self.last - computed, meets)
        return meets or warm

    def started(self) -> None:
        """A step starts now (its compute is timed from here)."""
        self.last = time.perf_counter()

    def meet(self) -> None:
        """Average now, off the period, if the weights may differ: before a checkpoint at an epoch's end,
        so that every rank's weights are the checkpoint's. torch's average_parameters, as the averager's."""
        if self.apart:
            self._give_every_weight_a_gradient()
            self._combine_tables()
            utils.average_parameters_or_parameter_groups(self.others, self.averager.process_group)
            self.apart = False
        self.started()

    def rows_state(self) -> dict[str, torch.Tensor]:
        """What the tables' next meeting needs of this rank, for a checkpoint taken while the ranks are apart:
        the rows its steps read since the last meeting (marks.{j}: (steps, rows/8) uint8) and where that
        meeting left the rows (base.{j})."""
        if self.rows is None:
            return {}
        marks = {f"marks.{j}": _stacked(m, len(t)) for j, (m, t) in enumerate(zip(self.rows.marks, self.rows.tables))}
        return marks | {f"base.{j}": b.clone() for j, b in enumerate(self.base)}

    def _count(self) -> None:
        """RowSync marks the rows the next step reads, or (warming up) averages their gradients."""
        if self.rows is not None:
            self.rows.counting = not self.warming_up()

    def _rebase(self) -> None:
        for base, table in zip(self.base, self.rows.tables if self.rows else []):
            base.copy_(table.detach())

    @torch.no_grad()
    def _combine_tables(self) -> None:
        """Each big table's rows moved by the ranks' moves since the last meeting, scaled to one process's
        (the module's docstring): an all-reduce of the steps' marks (OR), one of the reads, one of the rows."""
        if self.rows is None:
            return
        n, group = dist.get_world_size(), self.rows.group
        for table, base, marks in zip(self.rows.tables, self.base, self.rows.marks):
            mine = _stacked(marks, len(table))  # (steps, rows/8) a bit where this rank's step read a row
            union = mine.clone()
            dist.all_reduce(union, op=dist.ReduceOp.BOR, group=group)  # (steps, rows/8): any rank's step
            moves = torch.from_numpy(np.unpackbits(union.numpy(), axis=1, count=len(table)).sum(0, np.float32))
            reads = torch.from_numpy(np.unpackbits(mine.numpy(), axis=1, count=len(table)).sum(0, np.float32))
            dist.all_reduce(reads, group=group)  # (rows,) the ranks' reads
            scale = (moves / reads.clamp(min=1)).unsqueeze(1)  # (rows, 1): one process's moves per rank's move
            share = torch.where(reads.unsqueeze(1) > 0, scale * (table - base) + base / n, table / n)  # (rows, dim)
            dist.all_reduce(share, group=group)  # base + scale x the moves summed; unread rows: the mean
            table.copy_(share)
            base.copy_(share)
            marks.clear()
            self.rows.sent_bytes += union.numel() + reads.numel() * 4 + share.numel() * share.element_size()

    def _give_every_weight_a_gradient(self) -> None:
        """torch's averager leaves out a parameter without a gradient (one the step did not use, as
        cross-view training's views on labelled batches): such a parameter gets a zero gradient, which the
        next step's zero_grad drops, so that no weight drifts apart."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def _time(self, computed: float, met: float, meets: bool) -> None:
        """Rank 0's first PROBE_STEPS local steps, timed, then judged once (`judge`)."""
        stats = self.sync.stats
        if self.sync.warn is None or self.sync.probe is None or len(stats) > PROBE_STEPS:
            return
        stats.append((computed, met, meets))
        if len(stats) == PROBE_STEPS:
            message = judge(stats, self.sync.probe, self.period)
            stats.append((0.0, 0.0, False))  # judged: no more timing
            if message:
                self.sync.warn(message)


@dataclass(frozen=True)
class Probe:
    """What one process would gain over N, measured at start on a small BiLSTM forward and backward (a
    recipe's slice: 32 sentences of 30 tokens): `slowdown`, how many times slower every rank runs it at once
    than rank 0 alone (the cores and memory bandwidth they share); `whole`, how many times longer rank 0
    alone takes on N slices at once than on one (the per-step and per-token work does not shrink)."""

    processes: int
    slowdown: float
    whole: float

    @classmethod
    def measure(cls, rank: int, processes: int, repeats: int = 3) -> Probe:
        """Every rank calls it together. Its random numbers come from a forked generator, so training's
        are untouched (a resume stays exact)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            lstm = nn.LSTM(100, 100, batch_first=True, bidirectional=True)
            part, whole = torch.randn(32, 30, 100), torch.randn(32 * processes, 30, 100)  # (sentences, T, dim)

            def work(x: torch.Tensor) -> float:
                start = time.perf_counter()
                for _ in range(repeats):
                    lstm(x)[0].sum().backward()
                return time.perf_counter() - start

            work(part)  # warm-up
            dist.barrier()
            alone, alone_whole = (work(part), work(whole)) if rank == 0 else (1.0, 1.0)
            dist.barrier()
            together = work(part)
            dist.barrier()
        return cls(processes, together / alone, alone_whole / alone)


def judge(stats: list[tuple[float, float, bool]], probe: Probe, period: int) -> str | None:
    """A warning when the ranks train slower than one process would, from rank 0's timed local steps
    (compute seconds, meeting seconds, whether it met) and the start's `probe`: alone, one process would
    compute a global batch in compute x whole / slowdown; the ranks took compute + meetings a step. None when
    N processes come out ahead."""
    computed, met, meets = (np.array(column, dtype=np.float64) for column in zip(*stats))  # (steps,) each
    one = float(np.mean(computed)) * probe.whole / probe.slowdown
    many = float(np.mean(computed + met))
    if not (one > 0 and many > 0) or one >= many:
        return None
    n = probe.processes
    return (f"warning: --processes {n} trains about {one / many:.2f}x as fast as one process here (measured at "
            f"start: the processes slow each other {probe.slowdown:.2f}x, and one process takes "
            f"{probe.whole:.2f}x as long on a whole batch as on a 1/{n} slice; averaging the weights every "
            f"{period} steps takes {1000 * float(np.sum(met)) / max(1, int(meets.sum())):.1f} ms); one process "
            "trains faster")


def _stacked(marks: list[torch.Tensor], rows: int) -> torch.Tensor:
    """(steps, rows/8) uint8: a table's marks (RowSync.marks), one row a step; (0, rows/8) for no step."""
    return torch.stack(marks) if marks else torch.zeros(0, (rows + 7) // 8, dtype=torch.uint8)
