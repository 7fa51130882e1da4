"""The one-line errors for paths a user names (tagger/paths.py): every command and reader raises these."""
from __future__ import annotations

import pytest

from tagger.errors import ConfigError, InputError
from tagger.paths import check_input_file, check_output_file


def test_an_input_must_be_a_file(tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    check_input_file(tmp_path / "a.txt")
    check_input_file("-")  # standard input
    with pytest.raises(InputError, match="missing.txt: no such file$"):
        check_input_file(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="is a directory, not an embeddings file$"):
        check_input_file(tmp_path, "embeddings file")
    with pytest.raises(ConfigError, match="no such TOML file"):
        check_input_file(tmp_path / "recipe.toml", "TOML file", ConfigError)


def test_an_output_is_never_a_directory_nor_overwritten_without_force(tmp_path):
    (tmp_path / "out.jsonl").write_text("{}\n")
    for fine in (None, "-", tmp_path / "new.jsonl"):
        check_output_file(fine, force=False)
    check_output_file(tmp_path / "out.jsonl", force=True)
    with pytest.raises(InputError, match="already exists: use --force"):
        check_output_file(tmp_path / "out.jsonl", force=False)
    with pytest.raises(InputError, match="is a directory"):
        check_output_file(tmp_path, force=True)
