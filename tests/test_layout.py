"""The architecture's rules, checked: imports go one way (cli -> tagger -> corpora; inside tagger, the doors and
training use the engine, never the reverse), the engine and the doors never import torch, the shared core
imports no road, and no two siblings import each other. The contracts are in pyproject.toml
([tool.importlinter], type-checking imports included); import-linter reads the import graph statically, and
each contract is shown to fail on a deliberate break written into a copy of the packages."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


@pytest.mark.parametrize("module", ["tagger.tagging", "tagger.tagging.pipeline", "tagger.tagging.streaming",
                                    "tagger.api", "tagger.reports.report", "cli.main"])
def test_tagging_and_the_cli_import_no_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


LAYERS = "cli -> tagger -> corpora: corpora imports nothing of ours, tagger never imports the CLI"
ROOMS = ("inside tagger: commands -> the public facades -> the doors (serving) -> training | export -> the engine "
         "(tagging) -> reports")
NO_TORCH = "the engine, the doors, reports, export and the facades never import torch"
CORE = "the shared core (tagger's flat modules) imports no road"
ACYCLIC = "no import cycles between sibling modules or packages"


def broken_contracts(tree: Path) -> set[str]:
    """The names of the contracts lint-imports finds broken in a copy of the packages at `tree`."""
    out = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache", "--no-logo"], cwd=tree,
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "1000", "PYTHONPATH": str(tree)})
    assert "Contracts:" in out.stdout, out.stdout + out.stderr  # it ran
    return {line.removesuffix(" BROKEN") for line in out.stdout.splitlines() if line.endswith(" BROKEN")}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A copy of the three packages and pyproject.toml, whose contracts all hold."""
    tree = tmp_path_factory.mktemp("layout")
    for package in ("tagger", "cli", "corpora"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    assert broken_contracts(tree) == set()
    return tree


@pytest.mark.parametrize("module, code, expected", [
    ("corpora/_break.py", "import tagger.errors", {LAYERS}),  # corpora imports ours
    ("tagger/reports/_break.py", "import tagger.serving.bodies", {ROOMS, ACYCLIC}),  # reports use a door
    ("tagger/tagging/_break.py", "import torch", {NO_TORCH}),  # the engine imports torch
    ("tagger/tagging/_break.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch",
     {NO_TORCH}),  # type-checking imports count too
    ("tagger/lac.py", "import tagger.reports.metrics", {CORE, ACYCLIC}),  # the core uses a road
    ("tagger/tagging/viterbi.py", "import tagger.tagging.engine", {ACYCLIC}),  # engine <-> viterbi
], ids=["layers", "rooms", "no-torch", "no-torch-type-checking", "core", "acyclic"])
def test_each_contract_fails_on_a_deliberate_break(pristine, tmp_path, module, code, expected):
    """Each contract can fail: one bad import, written into a copy of the packages, breaks exactly these."""
    tree = tmp_path / "tree"
    shutil.copytree(pristine, tree)
    with open(tree / module, "a", encoding="utf-8") as f:
        f.write("\n" + code + "\n")
    assert broken_contracts(tree) == expected
