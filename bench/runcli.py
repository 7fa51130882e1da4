"""The `tagger` command of this checkout, run with one thread, for the bench scripts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tagger(*args: str) -> str:
    """Run `tagger ARGS` (this checkout's, one torch and BLAS thread); its stdout, or exit with its stderr."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"tagger {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout
