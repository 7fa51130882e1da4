"""Models on the Hugging Face Hub: `tagger push` (through its dry run: the Hub cannot be reached from the
tests), `tagger card`, and `hf://ORG/NAME[@REV]` loaded by the real huggingface_hub code (snapshot_download)
from a cache laid out as huggingface_hub lays it out, offline (HF_HUB_OFFLINE=1).

The cache layout is huggingface_hub's documented one (https://huggingface.co/docs/huggingface_hub/guides/
manage-cache): models--ORG--NAME/blobs/<hash>, snapshots/<commit>/<file> a relative link to its blob, and
refs/<branch> holding the commit; huggingface_hub's own scan_cache_dir is asked to agree.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import flip_byte
from tagger import Tagger, card, hub
from tagger.commands import hub as commands
from tagger.data import read_sentences
from tagger.errors import ConfigError, ModelError

huggingface_hub = pytest.importorskip("huggingface_hub")
runner = CliRunner()
COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXT = "yesterday John Smith met Mary in Paris."


def cache_snapshot(cache: Path, repo_id: str, files: Path, commit: str = COMMIT, ref: str | None = "main") -> Path:
    """Lay `files` (a directory) out in `cache` as huggingface_hub's snapshot_download leaves a download of
    `repo_id` at `commit`, with refs/`ref` naming it; returns the snapshot directory."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(files)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, offline: the variables a user sets, and the same values in
    huggingface_hub.constants, which reads them once, at import (datasets imported it before this test)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def pushed(trained_model, tmp_path, hub_cache) -> Path:
    """The session's model as `tagger push --dry-run` stages it, cached as acme/ner-tiny (refs/main)."""
    staged = tmp_path / "staged"
    commands.push(trained_model, "acme/ner-tiny", dry_run=staged)
    return cache_snapshot(hub_cache, "acme/ner-tiny", staged)


def tagger(*args):
    return runner.invoke(app, [str(a) for a in args])


def user_error(result) -> str:
    """The one `error: ...` line of a command that failed on a user's mistake (exit 1, no traceback)."""
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# -- the cache the tests lay out is huggingface_hub's -------------------------------------------------------

def test_the_cache_laid_out_here_is_the_one_huggingface_hub_reads(pushed, hub_cache):
    info = huggingface_hub.scan_cache_dir(hub_cache)
    (repo,) = info.repos
    assert (repo.repo_id, repo.repo_type) == ("acme/ner-tiny", "model")
    (revision,) = repo.revisions
    assert revision.commit_hash == COMMIT and revision.refs == frozenset({"main"})
    assert {f.file_name for f in revision.files} == {"README.md", "config.json", "vocab.json", "model.safetensors",
                                                      "metrics.jsonl", "training.svg"}
    assert not info.warnings


# -- hf:// loads through snapshot_download, offline, and is checked as any model --------------------------

def test_load_hf_name_tags_as_the_model_pushed(trained_model, pushed):
    assert Tagger.load("hf://acme/ner-tiny").predict(TEXT) == Tagger.load(trained_model).predict(TEXT)


def test_a_revision_is_a_branch_or_a_commit(trained_model, tmp_path, hub_cache):
    staged = tmp_path / "staged"
    commands.push(trained_model, "acme/ner-tiny", dry_run=staged, revision="v1")
    cache_snapshot(hub_cache, "acme/ner-tiny", staged, commit="f" * 40, ref="v1")
    expected = Tagger.load(trained_model).predict(TEXT)
    assert Tagger.load("hf://acme/ner-tiny@v1").predict(TEXT) == expected
    assert Tagger.load("hf://acme/ner-tiny@" + "f" * 40).predict(TEXT) == expected
    with pytest.raises(ModelError, match="not in Hugging Face's cache .* HF_HUB_OFFLINE is set"):
        Tagger.load("hf://acme/ner-tiny")  # no refs/main: main was never downloaded


def test_hf_name_as_a_path_argument_of_any_command(pushed):
    """Commands that take MODEL_DIR as a path get "hf:/acme/ner-tiny" (pathlib folds the //): still the Hub."""
    result = tagger("info", "hf://acme/ner-tiny", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["entity_types"] == ["LOC", "ORG", "PER"]


def test_predict_reads_hf_names_with_only_the_environment_set(pushed, hub_cache, tmp_path):
    """A fresh process, as a user runs it: HF_HUB_CACHE and HF_HUB_OFFLINE=1, nothing patched."""
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "cli.main", "predict", "hf://acme/ner-tiny"], input=TEXT + "\n",
                         capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], timeout=300)
    assert run.returncode == 0, run.stderr
    assert [e["text"] for e in json.loads(run.stdout)["entities"]] == ["John Smith", "Mary", "Paris"]


def test_train_init_starts_from_a_hf_name(pushed, corpus, tmp_path):
    result = tagger("train", corpus["train"], "--dev", corpus["dev"], "-o", tmp_path / "next", "--init",
                    "hf://acme/ner-tiny", "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert Tagger.load(tmp_path / "next").labels == Tagger.load("hf://acme/ner-tiny").labels


def test_calibrate_leaves_a_hub_model_as_it_is(pushed, corpus):
    before = (pushed / "config.json").read_bytes()
    line = user_error(tagger("calibrate", "hf://acme/ner-tiny", corpus["dev"]))
    assert "not changed in place" in line
    assert (pushed / "config.json").read_bytes() == before


def test_an_altered_download_is_refused_as_any_altered_model(pushed):
    weights = pushed / "model.safetensors"
    flip_byte(weights.resolve())  # the blob the snapshot links to
    with pytest.raises(ModelError, match="checksum does not match") as error:
        Tagger.load("hf://acme/ner-tiny")
    assert str(weights) in str(error.value)


def test_a_model_missing_from_the_cache_offline_is_one_line_naming_it(hub_cache):
    result = tagger("info", "hf://acme/absent")
    line = user_error(result)
    assert "hf:/acme/absent" in line and "HF_HUB_OFFLINE is set" in line


@pytest.mark.parametrize("ref", ["hf://acme", "hf://acme/ner/tiny", "hf://acme/ner-tiny@", "hf://acme/ner tiny"])
def test_a_malformed_hf_name_is_refused(ref):
    with pytest.raises(ConfigError):
        hub.parse(ref)


def test_a_hf_name_parses_into_repository_and_revision():
    assert hub.parse("hf://acme/ner-tiny") == ("acme/ner-tiny", None)
    assert hub.parse("hf:/acme/ner-tiny@v1") == ("acme/ner-tiny", "v1")


# -- tagger push --dry-run: exactly what would be uploaded ---------------------------------------------------

def test_dry_run_stages_the_model_files_the_curves_and_the_card_never_the_checkpoint(trained_model, tmp_path):
    staged = tmp_path / "staged"
    result = tagger("push", trained_model, "acme/ner-tiny", "--dry-run", staged)
    assert result.exit_code == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert files == sorted(p.name for p in staged.iterdir())
    assert set(files) == {"README.md", "config.json", "vocab.json", "model.safetensors", "metrics.jsonl",
                          "training.svg"}
    for name in set(files) - {"README.md"}:
        assert (staged / name).read_bytes() == (trained_model / name).read_bytes()
    assert (trained_model / "checkpoint").exists()


def test_dry_run_stages_a_card_given_instead_of_generating_one(trained_model, tmp_path):
    mine = tmp_path / "card.md"
    mine.write_text("---\nlibrary_name: bilstm-tagger\n---\n# edited by hand\n", encoding="utf-8")
    commands.push(trained_model, "acme/ner-tiny", dry_run=tmp_path / "staged", card_file=mine)
    assert (tmp_path / "staged" / "README.md").read_text(encoding="utf-8") == mine.read_text(encoding="utf-8")


def test_dry_run_into_a_non_empty_directory_is_refused(trained_model, tmp_path):
    (tmp_path / "staged").mkdir()
    (tmp_path / "staged" / "old.txt").write_text("x")
    line = user_error(tagger("push", trained_model, "acme/ner-tiny", "--dry-run", tmp_path / "staged"))
    assert "staged" in line and "not an empty directory" in line


def test_push_refuses_a_damaged_model_before_anything_is_staged(model_copy, tmp_path):
    flip_byte(model_copy / "model.safetensors")
    line = user_error(tagger("push", model_copy, "acme/ner-tiny", "--dry-run", tmp_path / "staged"))
    assert "model.safetensors" in line and "checksum" in line
    assert not (tmp_path / "staged").exists()


@pytest.mark.parametrize("repo", ["ner-tiny", "acme/ner/tiny", "acme/bad name"])
def test_push_refuses_a_repository_name_that_is_not_org_slash_name(trained_model, tmp_path, repo):
    line = user_error(tagger("push", trained_model, repo, "--dry-run", tmp_path / "staged"))
    assert repo in line


def test_push_goes_through_huggingface_hub_and_fails_in_one_line_offline(trained_model, hub_cache):
    """The real create_repo call, stopped by huggingface_hub's offline switch before any request."""
    line = user_error(tagger("push", trained_model, "acme/ner-tiny"))
    assert line == "error: hf://acme/ner-tiny: upload failed: HF_HUB_OFFLINE is set: unset it to upload"


# -- the card --------------------------------------------------------------------------------------------

def read_card(path: Path):
    """The card as huggingface_hub reads it: (front matter data, Markdown text)."""
    parsed = huggingface_hub.ModelCard.load(path)
    return parsed.data, parsed.text


def test_card_front_matter_is_what_the_hub_reads(trained_model, tmp_path):
    result = tagger("card", trained_model, "-o", tmp_path / "README.md", "--repo", "acme/ner-tiny",
                    "--language", "en")
    assert result.exit_code == 0, result.stderr
    data, text = read_card(tmp_path / "README.md")
    assert data.library_name == "bilstm-tagger"
    assert data.tags == ["token-classification", "ner", "bilstm-crf"]
    assert data.pipeline_tag == "token-classification" and data.language == ["en"]
    assert data.datasets is None  # trained on local files
    (dev,) = data.eval_results
    meta = json.loads((trained_model / "config.json").read_text())
    assert (dev.dataset_split, dev.metric_type, dev.dataset_name) == ("validation", "f1", "dev.txt")
    assert dev.metric_value == round(meta["dev_f1"], 4)
    for label in ("`LOC`", "`ORG`", "`PER`"):
        assert label in text
    assert "tagger train train.txt --dev dev.txt" in text and "hidden_size = 16" in text
    assert 'Tagger.load("hf://acme/ner-tiny")' in text and "## Limits" in text
    assert str(trained_model.parent) not in text  # local paths stay off a public card


def test_card_records_a_hub_dataset_and_a_test_score(model_copy, corpus, tmp_path):
    meta = json.loads((model_copy / "config.json").read_text())
    meta["training"].update(train="conll2003:train", dev="conll2003:validation")
    (model_copy / "config.json").write_text(json.dumps(meta))
    facts = commands.facts(model_copy, "acme/ner-tiny", test=str(corpus["test"]))
    (model_copy / "README.md").write_text(card.render(facts), encoding="utf-8")
    data, text = read_card(model_copy / "README.md")
    assert data.datasets == ["conll2003"]
    dev, test = data.eval_results
    assert (dev.dataset_type, dev.dataset_name) == ("conll2003", "conll2003:validation")
    score = Tagger.load(model_copy).evaluate(read_sentences(corpus["test"]))
    assert (test.dataset_split, test.dataset_name, test.metric_value) == ("test", "test.txt", round(score["f1"], 4))
    assert "tagger train conll2003:train --dev conll2003:validation" in text


def test_card_of_a_chinese_model_says_zh(model_copy):
    meta = json.loads((model_copy / "config.json").read_text())
    meta["training"]["lexicon"] = "jieba"
    (model_copy / "config.json").write_text(json.dumps(meta))
    assert commands.facts(model_copy, "acme/ner-tiny").language == ["zh"]


def test_card_is_written_into_the_model_directory_and_not_overwritten_without_force(model_copy):
    assert tagger("card", model_copy).exit_code == 0
    assert (model_copy / "README.md").read_text(encoding="utf-8").startswith("---\n")
    line = user_error(tagger("card", model_copy))
    assert "README.md" in line and "--force" in line
    assert tagger("card", model_copy, "--force").exit_code == 0


def test_card_of_a_hub_model_is_written_elsewhere_never_into_the_cache(pushed, tmp_path):
    before = (pushed / "README.md").read_bytes()
    line = user_error(tagger("card", "hf://acme/ner-tiny", "--force"))
    assert "-o FILE" in line
    assert tagger("card", "hf://acme/ner-tiny", "-o", tmp_path / "card.md").exit_code == 0
    assert (pushed / "README.md").read_bytes() == before
    assert 'Tagger.load("hf://acme/ner-tiny")' in (tmp_path / "card.md").read_text(encoding="utf-8")


def test_card_of_a_model_trained_without_dev_data_records_no_score(model_copy):
    meta = json.loads((model_copy / "config.json").read_text())
    meta["training"].pop("dev")
    meta["dev_f1"] = 4.0  # what training writes without dev data: the epoch
    (model_copy / "config.json").write_text(json.dumps(meta))
    data = huggingface_hub.ModelCard(card.render(commands.facts(model_copy, "acme/x"))).data
    assert data.eval_results is None


def test_what_push_uploads_loads_back(trained_model, tmp_path):
    """The staged directory is a model directory: what the Hub would hold loads and tags the same."""
    staged = tmp_path / "staged"
    commands.push(trained_model, "acme/ner-tiny", dry_run=staged)
    assert Tagger.load(staged).predict(TEXT) == Tagger.load(trained_model).predict(TEXT)
