"""The annotation loop against a real Label Studio (bench/label_studio_loop.py, 30 tasks): predictions with
regions and scores, tasks sorted by our uncertainty, annotations through the webhook, training from Label
Studio's train action, a new model version and new predictions for the next tasks.

It needs a venv with label-studio and label-studio-sdk (bench/label_studio_requirements.txt), named by
TAGGER_LABEL_STUDIO_VENV; without it the test is skipped. Label Studio's first start (its database
migrations) takes minutes, so the suite does not install it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = os.environ.get("TAGGER_LABEL_STUDIO_VENV")


def venv_python() -> Path:
    if not VENV:
        pytest.skip("TAGGER_LABEL_STUDIO_VENV is not set (a venv with label-studio and label-studio-sdk: "
                    "bench/label_studio_requirements.txt)")
    python = Path(VENV) / "bin" / "python"
    if not (Path(VENV) / "bin" / "label-studio").is_file():
        pytest.skip(f"TAGGER_LABEL_STUDIO_VENV={VENV} has no bin/label-studio")
    return python


def test_the_loop_runs_against_a_real_label_studio():
    python = venv_python()
    tagger = Path(sys.executable).parent / "tagger"
    done = subprocess.run([str(python), str(ROOT / "bench" / "label_studio_loop.py"), "--tasks", "30",
                           "--annotate", "20", "--tagger", str(tagger)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [line.split("  ")[0] for line in done.stdout.splitlines()]
    assert "model version changes" in steps and "tasks sorted by uncertainty" in steps, done.stdout
    assert "changed=" in done.stdout
