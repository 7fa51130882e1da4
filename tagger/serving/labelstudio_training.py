"""The Label Studio backend's warm-start training (tagger/serving/labelstudio.py) in a process of its own.

The training function is the library's (tagger.commands.train), handed in by the CLI edge: the doors do not
import the commands. It runs in a spawned process (a fresh interpreter: nothing of the server's threads,
event loop or locks is forked into it), with absolute paths, and says how it ended in one line through a
pipe. It ends with the server: `tagger serve` leaves by os._exit, which skips multiprocessing's clean-up of
daemonic children, so the process watches its parent and leaves when the parent is gone.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from tagger.errors import USER_ERRORS

TrainFunction = Callable[..., Any]  # tagger.commands.train: (train, dev, output, *, init, extend_tags, force)
log = logging.getLogger("tagger.labelstudio")


@dataclass
class Training:
    """The last warm-start training: its state (idle, running, swapped, kept, failed), the output directory
    and a one-line message."""

    state: str = "idle"
    output: str | None = None
    message: str = ""
    started: float = 0.0


@dataclass
class Running:
    """A training process and the end of the pipe its outcome comes through."""

    process: Any  # multiprocessing's SpawnProcess
    outcome: Any  # multiprocessing.connection.Connection

    def wait(self) -> str | None:
        """Wait for it to end: None when it succeeded, else its error in one line."""
        try:
            error = self.outcome.recv()
        except EOFError:  # it died before saying (killed, out of memory): its exit status says
            error = None
        self.process.join()
        self.outcome.close()
        if error is None and self.process.exitcode:
            return f"the training process ended with exit status {self.process.exitcode}"
        return error


def spawn(train: TrainFunction, train_ref: str, dev_ref: str, output: Any, **options: Any) -> Running:
    """`train(train_ref, dev_ref, output, **options)` started in a spawned process."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(train, (train_ref, dev_ref, output), options, send),
                              daemon=True, name="labelstudio-train")
    process.start()
    send.close()
    return Running(process, receive)


def _child(train: TrainFunction, paths: tuple, options: dict, send: Any) -> None:
    """The spawned process: leave with the parent; run the training; send None, or its error in one line."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_leave_with, args=(parent.sentinel,), daemon=True).start()
    try:
        train(*paths, **options)
        send.send(None)
    except USER_ERRORS as e:
        send.send(f"error: {e}"[:500])
    except BaseException as e:  # a bug: its traceback goes to the server's log, one line to /health
        log.exception("the training failed")
        send.send(f"{type(e).__name__}: {e}"[:500])


def _leave_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])  # ready once the parent process has ended
    os._exit(1)
