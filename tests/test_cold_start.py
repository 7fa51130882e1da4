"""What `tagger predict` imports from a cold start: only what tagging needs. Ray, ONNX, the web stack, torch, the
plotting and training libraries, and our own doors, training and export code are imported by the commands that
use them, never by predict on a model directory (bench/cold_start.py measures the whole start)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_FOR_PREDICT = ("ray", "onnx", "onnxruntime", "starlette", "uvicorn", "prometheus_client", "httpx", "torch",
                   "matplotlib", "datasets", "gensim", "spacy", "huggingface_hub", "seqeval", "sklearn")

# `tagger predict MODEL` in a fresh interpreter, as the console script runs it (minus the final os._exit),
# then the top-level names of every module imported, as JSON on the last line
PREDICT_THEN_LIST_MODULES = """
import json, sys
from cli.main import app
try:
    app(["predict", sys.argv[1]], prog_name="tagger")
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps(sorted(sys.modules)))
"""
OUR_OTHER_ROADS = ("tagger.serving", "tagger.training", "tagger.export")  # the doors, torch training, ONNX


def test_predict_imports_no_ray_onnx_web_stack_or_torch(trained_model):
    done = subprocess.run([sys.executable, "-c", PREDICT_THEN_LIST_MODULES, str(trained_model)], cwd=REPO,
                          input="Angela Merkel visited Paris.\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    *records, modules = done.stdout.splitlines()
    assert json.loads(records[0])["text"] == "Angela Merkel visited Paris."  # it did tag
    imported = json.loads(modules)
    assert sorted({name.split(".")[0] for name in imported} & set(NOT_FOR_PREDICT)) == []
    assert [name for name in imported if name.startswith(OUR_OTHER_ROADS)] == []
    assert "rich.progress" not in imported  # the progress display, drawn only on a terminal
