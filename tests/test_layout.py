"""The architecture's rules, checked: imports go one way (cli -> tagger -> corpora; inside tagger, training may
use tagging, never the reverse), tagging never imports torch, and no two modules import each other. The
contracts are in pyproject.toml ([tool.importlinter]); import-linter reads the import graph statically."""
from __future__ import annotations

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


def test_a_broken_rule_is_caught(tmp_path):
    """The check can fail: a tagging module that imports training breaks the layers contract."""
    from importlinter.cli import lint_imports

    broken = (ROOT / "pyproject.toml").read_text().replace('source_modules = ["tagger.tagging", ',
                                                            'source_modules = ["tagger.training", ')
    config = tmp_path / "pyproject.toml"
    config.write_text(broken)
    assert lint_imports(config_filename=str(config), no_cache=True) == 1
