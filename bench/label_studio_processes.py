"""The processes of bench/label_studio_loop.py: Label Studio (started with a user from the environment, on a
free port) and `tagger serve`, each in a session of its own, ended with the loop; and the waits for them.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator

# Legacy tokens (Label Studio 1.23 refuses them unless this was true when the organisation was made); the
# ML backend and the webhook on localhost (refused by the SSRF guards otherwise); no error reports sent out.
LS_ENV = {"LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "SSRF_PROTECTION_ENABLED": "false",
          "ML_BLOCK_LOCAL_IP": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}


class NotUp(Exception):
    """A process ended, or did not answer in time: its one line."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return json.loads(r.read())


def wait_up(url: str, seconds: float, process: subprocess.Popen, log: Path, token: str | None = None) -> None:
    """Wait until `url` answers {"status": "UP"}; NotUp if the process ends or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotUp(f"{process.args[0]} ended ({process.returncode}): see {log}")
        try:
            if get_json(url, token).get("status") == "UP":
                return
        except (OSError, ValueError):
            pass
        time.sleep(1)
    raise NotUp(f"{url} not up after {seconds:.0f} s: see {log}")


@contextmanager
def started(command: list[str], log: Path, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """A process of its own session, ended (SIGTERM, then SIGKILL) with the block."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                   start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def start_label_studio(stack: ExitStack, args: argparse.Namespace, work: Path) -> tuple[str, str, str, str]:
    """Label Studio on a free port: (url, api key, user, password)."""
    user = os.environ.get("LABEL_STUDIO_USERNAME", "admin@example.com")
    password = os.environ.get("LABEL_STUDIO_PASSWORD") or secrets.token_hex(8)
    token, port = secrets.token_hex(20), free_port()
    env = {**LS_ENV, "LABEL_STUDIO_BASE_DATA_DIR": str(work / "ls-data"), "LABEL_STUDIO_USERNAME": user,
           "LABEL_STUDIO_PASSWORD": password, "LABEL_STUDIO_USER_TOKEN": token}
    command = [str(Path(sys.executable).parent / "label-studio"), "start", "--no-browser", "--host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(work / "ls-data"), "--enable-legacy-api-token"]
    log = work / "label-studio.log"
    process = stack.enter_context(started(command, log, env))
    wait_up(f"http://127.0.0.1:{port}/health", args.start_timeout, process, log)
    return f"http://127.0.0.1:{port}", token, user, password
