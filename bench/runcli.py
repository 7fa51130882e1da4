"""The `tagger` command of this checkout, run with one thread, for the bench scripts; and runs spread over
cores, one command a core."""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, TypeVar

ROOT = Path(__file__).resolve().parent.parent
T, R = TypeVar("T"), TypeVar("R")


def tagger(*args: str) -> str:
    """Run `tagger ARGS` (this checkout's, one torch and BLAS thread); its stdout, or exit with its stderr."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"tagger {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def run(cmd: list[str], core: int | None = None) -> tuple[str, float]:
    """Run cmd (pinned to `core` with one thread if given); its stdout and its peak RSS in MB."""
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1") if core is not None else None
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, preexec_fn=pin, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, even with others running
        out.seek(0), err.seek(0)
        if status:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read()}")
        return out.read(), usage.ru_maxrss / 1024


def on_cores(work: Callable[[T, int | None], R], items: Iterable[T], jobs: int) -> list[R]:
    """work(item, core) for every item, `jobs` at once, each given a core of its own that it should pin its
    commands to (`run`); one at a time with core None when jobs is 1."""
    if jobs <= 1:
        return [work(item, None) for item in items]
    free: queue.Queue[int] = queue.Queue()
    for core in sorted(os.sched_getaffinity(0))[:jobs]:
        free.put(core)

    def on_a_free_core(item: T) -> R:  # an item takes whichever core the last one to finish left
        core = free.get()
        try:
            return work(item, core)
        finally:
            free.put(core)

    with ThreadPoolExecutor(free.qsize()) as pool:
        return list(pool.map(on_a_free_core, items))


def emit(records: Iterable[dict], output: str | Path | None = None) -> None:
    """Each record as one JSON line on standard output, as it comes, and appended to `output` if given."""
    import json

    for record in records:
        line = json.dumps(record)
        print(line, flush=True)
        if output:
            with open(output, "a") as out:
                out.write(line + "\n")
