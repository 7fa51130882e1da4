"""Data-parallel training on several processes with torch.distributed: who this process is, how the processes
start (torch.multiprocessing for `--processes N`, or torchrun's environment), and the few collectives the
training loop needs besides the gradients' all-reduce: DDP's for the dense gradients, RowSync's for the big
embedding tables, of which a batch reads a few hundred rows (the word embedding was 85% of DDP's bytes).

Every rank trains on its share of each global batch (length-grouped batches are cut into `size` slices), so
every rank takes the same number of optimizer steps; rank 0 alone scores dev, saves, logs and decides, and
its decisions reach the others through `share`. A rank that dies makes the others' next collective fail:
they stop with `PeerLost` (one line, exit 1) instead of waiting forever.
"""
from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.multiprocessing.spawn import ProcessException

from tagger.errors import USER_ERRORS, TaggerError
from tagger.training.objective import Objective
from tagger.training.averaging import LocalSGD, Sync
from tagger.training.state import Interrupted

TIMEOUT = timedelta(minutes=5)  # a collective waiting longer than this means a rank is gone: dev scoring and
                                # checkpoints on rank 0 (which the others wait for) take seconds, not minutes


class PeerLost(TaggerError):
    """Another training process stopped (killed, crashed, unreachable): this one stops too."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes: rank 0 of 1 when not distributed. `sync`: how
    its steps meet the other ranks' (tagger/training/averaging.py; set up by `wrap`)."""

    rank: int = 0
    size: int = 1
    sync: Sync = field(default_factory=Sync, compare=False, repr=False)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def shard(self, ids: Sequence[int]) -> list[int]:
        """This rank's slice of a global batch: every size-th sentence, so slices differ by one at most."""
        return list(ids[self.rank :: self.size])

    def reduce_step(self, loss: float, stop: bool) -> tuple[float, bool]:
        """After each optimizer step: the batch's loss summed over ranks, and whether any rank was asked to
        stop (one all-reduce). With periodic averaging (sync = "average"), the weights are averaged when due,
        and between meetings nothing is sent: the loss is this rank's times the number of ranks (an
        estimate, for the progress bar and metrics' loss) and a stop waits for the next meeting."""
        if self.size == 1:
            return loss, stop
        local = self.sync.local
        if local is not None and not self._collective(local.after_step):
            local.started()
            return loss * self.size, False
        totals = self._sum(loss, stop)
        if local is not None:
            local.started()
        return totals

    def any(self, flag: bool) -> bool:
        """Whether any rank's `flag` is set (one all-reduce)."""
        return self._sum(0.0, flag)[1] if self.size > 1 else flag

    def _sum(self, loss: float, stop: bool) -> tuple[float, bool]:
        totals = torch.tensor([loss, float(stop)], dtype=torch.float64)
        self._collective(dist.all_reduce, totals)
        return float(totals[0]), bool(totals[1])

    def share(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every rank."""
        if self.size == 1:
            return value
        box = [value]
        self._collective(dist.broadcast_object_list, box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        out: list[Any] = [None] * self.size
        self._collective(dist.all_gather_object, out, value)
        return out

    def gather_to_leader(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on rank 0 ([] elsewhere): one gather, not N broadcasts."""
        if self.size == 1:
            return [value]
        out: list[Any] | None = [None] * self.size if self.leader else None
        self._collective(dist.gather_object, value, out, dst=0)
        return out or []

    def run(self, collective: Callable[[], Any]) -> Any:
        """`collective()`, whose failure means a rank is gone (PeerLost)."""
        return self._collective(collective)

    def barrier(self) -> None:
        if self.size > 1:
            self._collective(dist.barrier)

    def _collective(self, op: Callable, *args, **kwargs) -> Any:
        try:
            return op(*args, **kwargs)
        except (dist.DistError, RuntimeError) as e:
            raise lost(self, e) from None


def lost(world: World, error: BaseException) -> PeerLost:
    """The one line for a collective that failed: gloo's own text, without its source location and advice."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]
    return PeerLost(f"training process {world.rank} of {world.size}: another training process stopped or cannot "
                    f"be reached ({text[:160]}); resume from the last checkpoint with --resume")


@contextmanager
def peers_watched(world: World) -> Iterator[None]:
    """A failed collective inside the block (DDP's all-reduce in backward, say) becomes PeerLost; other
    errors pass unchanged."""
    try:
        yield
    except dist.DistError as e:
        raise lost(world, e) from None
    except RuntimeError as e:
        if world.size > 1 and re.search(r"gloo|nccl|[Cc]onnection|[Tt]imed? ?out", str(e)):
            raise lost(world, e) from None
        raise


BUCKET_MB = 25.0  # DDP's buckets, torch's default: smaller ones (0.25 MB, several all-reduces in flight during
                  # backward) showed no established gain (bench/README.md); bench/ddp_phases.py times other sizes
                  # (BUCKET=...)
ROW_TABLE_MIN_ROWS = 1024  # an embedding table this tall is synchronised by rows (RowSync): a batch reads few


def row_tables(model: nn.Module, min_rows: int = ROW_TABLE_MIN_ROWS) -> dict[str, nn.Parameter]:
    """The embedding tables whose gradients RowSync all-reduces by rows, by their names in `model`: every
    trainable nn.Embedding of at least `min_rows` rows (the words, Chinese bigrams, a big feature
    vocabulary). The forward pass reads each of them on every batch, so every rank's backward reaches them."""
    return {f"{name}.weight": m.weight for name, m in model.named_modules()
            if isinstance(m, nn.Embedding) and m.weight.requires_grad and m.num_embeddings >= min_rows}


class RowSync:
    """The touched rows of big embedding tables' gradients averaged over ranks, as DDP averages the others.

    A table's gradient is dense on every rank but zero outside the rows its slice of the batch read (a global
    batch of the recipe reads 409 of CoNLL-2003's 21,011 words on average). When backward has accumulated it (a hook, so
    the rows travel while DDP's all-reduce of the other gradients runs on gloo's threads), the ranks all-reduce
    a mask of the rows any of them touched (a bit a row, OR: gloo's MAX on bytes is 7x slower), then those rows
    divided by the world size (SUM) on a process group of their own. Untouched rows are zero on every rank, so
    the result is DDP's dense average (a/n + b/n) at a bit a row plus the union's rows, instead of 4 x dim
    bytes every row. With periodic averaging past its warm-up (`counting`) it sends nothing: it marks the
    rows each step read (`marks`), from which the meetings combine the ranks' rows (averaging.py)."""

    def __init__(self, tables: dict[str, nn.Parameter], world: World):
        self.world = world
        self.group = dist.new_group(backend=backend())  # apart from DDP's, whose all-reduce may be in flight
        self.sent_bytes = 0  # what this rank put into the row collectives so far (bench/train_scaling.py)
        self.tables = list(tables.values())
        self.counting = False  # periodic averaging past its warm-up: mark the rows read, send nothing
        self.marks: list[list[torch.Tensor]] = [[] for _ in self.tables]  # a table's: one (rows/8,) uint8 a step
                                                                          # since the last meeting, a bit a row read
        for param in tables.values():
            dist.broadcast(param.data, 0, group=self.group)  # DDP's start-up broadcast leaves them out
            if hasattr(param, "row_sync_hook"):  # wrapped again: the latest wrap's group alone averages it
                param.row_sync_hook.remove()
            param.row_sync_hook = param.register_post_accumulate_grad_hook(self.sync)

    @torch.no_grad()
    def sync(self, param: nn.Parameter) -> None:
        grad = param.grad  # (rows, dim)
        if self.counting:
            j = next(i for i, t in enumerate(self.tables) if t is param)
            self.marks[j].append(torch.from_numpy(np.packbits(nonzero_rows(grad).numpy())))
            return
        bits = torch.from_numpy(np.packbits(nonzero_rows(grad).numpy()))  # (rows/8,) a bit for each row read
        dist.all_reduce(bits, op=dist.ReduceOp.BOR, group=self.group)
        touched = np.unpackbits(bits.numpy(), count=len(grad))  # (rows,) 1 where any rank's slice read the row
        rows = torch.from_numpy(touched.nonzero()[0])  # (k,)
        values = grad.index_select(0, rows).div_(self.world.size)  # (k, dim)
        dist.all_reduce(values, group=self.group)
        grad.index_copy_(0, rows, values)
        self.sent_bytes += bits.numel() + values.numel() * values.element_size()


def nonzero_rows(grad: torch.Tensor) -> torch.Tensor:
    """(rows,) bool, True where a row of `grad` (rows, dim) has a bit set (-0.0 counts too, harmlessly): read as
    int64 words where the rows allow, 4x faster than grad.ne(0).any(1), which it falls back to."""
    whole_words = grad.is_contiguous() and grad.shape[1] * grad.element_size() % 8 == 0
    return (grad.view(torch.int64) if whole_words else grad.ne(0)).any(1)


def wrap(model: nn.Module, world: World, by_rows: bool = True, min_rows: int = ROW_TABLE_MIN_ROWS,
         views: nn.Module | None = None, sync: str | None = None) -> nn.Module:
    """The Objective of `model` (and `views`: whose forward is the loss, objective.py), DDP-wrapped (gradients
    averaged over ranks) when distributed.
    sync: "step" (DDP every step) or "average" (periodic averaging, `world.sync.local`: averaging.py);
    default the model config's `sync`, with its sync_period and sync_warmup.

    forward_sync_buffers=False: the only buffer is the frozen pretrained vectors (381k x 50 with GloVe), which no
    step changes and every rank loaded itself; DDP would otherwise send them before every forward. by_rows: the
    embedding tables of `min_rows` rows or more are left out of DDP and averaged by their touched rows (RowSync);
    by_rows=False sends them dense, as DDP alone does. views: cross-view training's modules, trained on the
    unlabelled batches, where the output layer and CRF get no gradient (and the views none on labelled ones):
    DDP then looks for the parameters a step left unused."""
    module = Objective(model, views)  # which loss a batch gets: tagger/training/objective.py
    if world.size == 1:
        return module
    tables = {f"model.{name}": p for name, p in row_tables(model, min_rows).items()} if by_rows else {}
    nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(tables))
    ddp = nn.parallel.DistributedDataParallel(module, forward_sync_buffers=False, bucket_cap_mb=BUCKET_MB,
                                              find_unused_parameters=module.leaves_parameters_unused)
    ddp.row_sync = RowSync(tables, world) if tables else None
    config = model.config
    world.sync.local = None
    if (sync or config.sync) == "average":
        world.sync.local = LocalSGD(ddp, config.sync_period, config.sync_warmup, world.sync.resumed_step, world.sync)
    return ddp


def backend() -> str:
    """nccl for CUDA tensors, gloo for CPU ones: training here runs on the CPU, so gloo."""
    return "gloo"


def env_world() -> World | None:
    """The world torchrun (or any launcher setting RANK and WORLD_SIZE) put this process in; None otherwise."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return None
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))


@contextmanager
def process_group(world: World, init_method: str = "env://", timeout: timedelta = TIMEOUT) -> Iterator[World]:
    """torch.distributed initialised for `world` inside the block (env://: MASTER_ADDR and MASTER_PORT), and
    torn down after it, so that no process group outlives the training."""
    if world.size == 1:
        yield world
        return
    try:
        dist.init_process_group(backend(), init_method=init_method, rank=world.rank, world_size=world.size,
                                timeout=timeout)
    except (dist.DistError, RuntimeError, ValueError) as e:
        raise PeerLost(f"training process {world.rank} of {world.size} could not join the others "
                       f"({str(e).strip().splitlines()[0][:160]})") from None
    try:
        yield world
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def spawned(processes: int, worker: Callable, args: tuple, timeout: timedelta = TIMEOUT,
            agreed: tuple[type[BaseException], ...] = ()) -> Iterator[World]:
    """`processes` training processes on this machine: this one is rank 0 (inside the block), ranks 1.. are
    started with torch.multiprocessing (spawn) and run `worker(*args, world=world)`. The block's end waits for
    them (they end with rank 0's last collective); after an exception other than the `agreed` ones (which
    every rank raises together, as Ctrl-C's Interrupted), it stops them instead."""
    init = f"tcp://127.0.0.1:{free_port()}"
    context = torch.multiprocessing.start_processes(_child, args=(init, processes, timeout, worker, args),
                                                    nprocs=processes - 1, join=False, start_method="spawn")
    failed = False
    try:
        with process_group(World(0, processes), init, timeout) as world:
            yield world
    except agreed:
        raise
    except BaseException:
        failed = True
        raise
    finally:
        _wait(context, failed)


def _wait(context, failed: bool) -> None:
    """Join the other ranks; after a failure here, stop them rather than wait for their timeout."""
    try:
        if failed:
            for p in context.processes:
                if p.is_alive():
                    p.terminate()
        while not context.join(timeout=30 if not failed else 5):
            pass
    except ProcessException:
        if not failed:
            raise
    finally:
        for p in context.processes:
            if p.is_alive():
                p.kill()


def _child(index: int, init: str, size: int, timeout: timedelta, worker: Callable, args: tuple) -> None:
    """Rank index + 1: one thread of each kind (a fresh process, so this sets nothing anyone else sees),
    then the worker; a user's error or a lost peer is one line on stderr and exit status 1."""
    torch.set_num_interop_threads(1)
    world = World(index + 1, size)
    try:
        with process_group(world, init, timeout):
            worker(*args, world=world)
    except Interrupted:  # rank 0 says so
        pass
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        _exit(1)
    _exit(0)


def _exit(status: int) -> None:
    """End this rank's process at once, its output flushed. Its work is done and its process group torn down,
    but a normal interpreter exit runs torch's C++ static destructors, which now and then abort on a thread
    still joinable ("terminate called without an active exception", SIGABRT): a finished rank would then
    count as a crashed one. os._exit skips them; the rank holds no file or state anyone else needs."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
