"""What `tagger predict` imports from a cold start: only what tagging needs. Ray, ONNX, the web stack, torch, the
plotting and training libraries, rich (piped, nothing is drawn), and our own doors, training, export and other
commands' code are imported by the commands that use them, never by predict on a model directory
(bench/cold_start.py measures the whole start)."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOT_FOR_PREDICT = ("ray", "onnx", "onnxruntime", "starlette", "uvicorn", "prometheus_client", "httpx", "torch",
                   "matplotlib", "datasets", "gensim", "spacy", "huggingface_hub", "seqeval", "sklearn", "rich")

# `tagger predict MODEL` in a fresh interpreter, as the console script runs it (minus the final os._exit),
# then the names of every module imported, the threads of each BLAS library and whether OPENBLAS_NUM_THREADS
# is in the environment, as JSON on the last line
PREDICT_THEN_LIST_MODULES = """
import json, os, sys
from cli.main import app
try:
    app(["predict", sys.argv[1]], prog_name="tagger")
except SystemExit as e:
    assert not e.code, e.code
modules = sorted(sys.modules)
from threadpoolctl import threadpool_info
print(json.dumps({"modules": modules, "blas_threads": [pool["num_threads"] for pool in threadpool_info()
                                                       if pool["internal_api"] == "openblas"],
                  "openblas_env": "OPENBLAS_NUM_THREADS" in os.environ}))
"""
OUR_OTHER_ROADS = ("tagger.serving", "tagger.training", "tagger.export")  # the doors, torch training, ONNX
OTHER_COMMANDS = ("tagger.commands.serve", "tagger.commands.fitting", "tagger.commands.selecting",
                  "tagger.commands.describing", "tagger.commands.ensemble", "tagger.commands.hub",
                  "tagger.tagging.selection", "tagger.tagging.calibration", "tagger.reports.analysis")


@pytest.fixture(scope="module")
def after_predict(trained_model) -> dict:
    """What a piped `tagger predict MODEL` leaves in its process once it has tagged a sentence (see above), run
    as a user runs it: no variable of ours in the environment, standard error a pipe."""
    drop = ("FORCE_COLOR", "TTY_COMPATIBLE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    done = subprocess.run([sys.executable, "-c", PREDICT_THEN_LIST_MODULES, str(trained_model)], cwd=REPO, env=env,
                          input="Angela Merkel visited Paris.\n", capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    *records, state = done.stdout.splitlines()
    assert json.loads(records[0])["text"] == "Angela Merkel visited Paris."  # it did tag
    return json.loads(state)


@pytest.fixture(scope="module")
def imported_by_predict(after_predict) -> list[str]:
    """Every module a piped `tagger predict MODEL` has imported once it has tagged a sentence."""
    return after_predict["modules"]


def test_predict_starts_openblas_with_one_thread_and_leaves_the_environment_as_it_was(after_predict):
    # the engine runs OpenBLAS on one thread (pipeline.py); starting one per core cost the cold start ~0.03 s
    assert after_predict["blas_threads"] == [1]
    assert not after_predict["openblas_env"]


def test_predict_imports_no_ray_onnx_web_stack_torch_or_rich(imported_by_predict):
    assert sorted({name.split(".")[0] for name in imported_by_predict} & set(NOT_FOR_PREDICT)) == []
    assert [name for name in imported_by_predict if name.startswith(OUR_OTHER_ROADS)] == []


def test_predict_imports_no_other_command(imported_by_predict):
    # cli.main registers every command, but what `serve`, `train`, `select`, `info` and the rest do is imported
    # when they run (tagger/commands/__init__.py resolves each name on first use)
    assert sorted(set(imported_by_predict) & set(OTHER_COMMANDS)) == []
    assert "tagger.commands.predicting" in imported_by_predict


@pytest.mark.parametrize("name", ["train", "make_config", "parse_features", "predict", "evaluate", "convert",
                                  "calibrate", "output_format_for", "predict_on_ray", "score_options", "select",
                                  "info", "plot"])
def test_every_command_name_is_still_there_when_asked_for(name):
    from tagger import commands

    assert name in commands.__all__ and name in dir(commands)
    function = getattr(commands, name)
    assert function is getattr(importlib.import_module(function.__module__), name)
    assert function.__module__.startswith("tagger.commands.")


def test_a_name_the_commands_lack_is_an_attribute_error():
    from tagger import commands

    with pytest.raises(AttributeError, match="no attribute 'tain'"):
        commands.tain  # noqa: B018
