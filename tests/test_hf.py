"""corpora.hf: Hugging Face datasets built and saved locally (no network)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Sequence

import datasets
import pytest
from huggingface_hub import HfApi

from corpora.conll import Sentence
from corpora.errors import CorpusError
from corpora.hf import from_dataset, is_dataset_ref, load_sentences

SENTENCES = [
    Sentence(("Maria", "visited", "Oslo"), ("B-PER", "O", "B-LOC")),
    Sentence(("Rain", "fell"), ("O", "O")),
]


def to_dataset(sentences: Iterable[Sentence], tag_names: Sequence[str] | None = None) -> datasets.Dataset:
    """A Dataset with "tokens" and "ner_tags" (ClassLabel over `tag_names`, or the sorted tags seen), as a
    user's own would be: what these tests (and test_end_to_end.py) read back.

    Built with `Dataset.from_dict` and explicit features; `from_generator` would cache by generator and
    hand back stale data. Unlabelled sentences (tags None) give a "tokens"-only dataset.
    """
    sentences = list(sentences)
    tokens = [list(s.tokens) for s in sentences]
    labelled = [s.tags is not None for s in sentences]
    if not all(labelled):
        if any(labelled):
            raise ValueError("some sentences have tags and some do not")
        features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string"))})
        return datasets.Dataset.from_dict({"tokens": tokens}, features=features)
    names = list(tag_names) if tag_names is not None else sorted({t for s in sentences for t in s.tags})
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({t for s in sentences for t in s.tags} - index.keys())
    if unknown:
        raise ValueError(f"tags not in tag_names: {', '.join(unknown)}")
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
    })
    tags = [[index[t] for t in s.tags] for s in sentences]
    return datasets.Dataset.from_dict({"tokens": tokens, "ner_tags": tags}, features=features)


@pytest.fixture(autouse=True)
def quiet_datasets():
    datasets.disable_progress_bars()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hub, faked: it knows every dataset name (so `datasets.load_dataset` is called); the names asked."""
    asked = []
    monkeypatch.setattr(HfApi, "dataset_info", lambda self, name, timeout=None: asked.append(name))
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    return asked


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """A saved Dataset, a saved DatasetDict (train/validation) and a plain directory."""
    root = tmp_path_factory.mktemp("hf")
    datasets.disable_progress_bars()
    ds = to_dataset(SENTENCES)
    ds.save_to_disk(str(root / "single"))
    validation = to_dataset(SENTENCES[1:], ds.features["ner_tags"].feature.names)
    datasets.DatasetDict(train=ds, validation=validation).save_to_disk(str(root / "dict"))
    (root / "plain").mkdir()
    return {"single": root / "single", "dict": root / "dict", "plain": root / "plain", "root": root}


def test_unlabelled_sentences_give_a_tokens_only_dataset():
    ds = to_dataset([Sentence(("a", "b"))])
    assert ds.column_names == ["tokens"]
    assert list(from_dataset(ds)) == [Sentence(("a", "b"))]


def test_round_trip_through_a_dataset():
    assert list(from_dataset(to_dataset(SENTENCES))) == SENTENCES


def test_from_dataset_picks_a_tag_field_and_keeps_string_tags():
    columns = {"tokens": [["a", "b"]], "pos_tags": [["DT", "NN"]], "chunk_tags": [["B-NP", "I-NP"]]}
    ds = datasets.Dataset.from_dict(columns)
    assert list(from_dataset(ds)) == [Sentence(("a", "b"), ("DT", "NN"))]  # pos_tags comes before chunk_tags
    assert next(from_dataset(ds, tags_field="chunk_tags")).tags == ("B-NP", "I-NP")


def test_from_dataset_with_other_field_names():
    ds = datasets.Dataset.from_dict({"words": [["x"]], "labels": [["O"]]})
    assert list(from_dataset(ds, tokens_field="words", tags_field="labels")) == [Sentence(("x",), ("O",))]
    with pytest.raises(ValueError, match="no 'tokens' column"):
        from_dataset(ds)
    with pytest.raises(ValueError, match="no 'ner' column"):
        from_dataset(ds, tokens_field="words", tags_field="ner")


def test_is_dataset_ref(saved: dict[str, Path], tmp_path: Path):
    corpus = tmp_path / "conll2003"  # an existing file with a hub-like name is a file
    corpus.write_text("a O\n")
    assert is_dataset_ref(str(saved["single"])) and is_dataset_ref(str(saved["dict"]))
    assert is_dataset_ref(f"{saved['dict']}:validation")
    assert all(is_dataset_ref(ref) for ref in ["conll2003", "wnut_17", "user/name", "conll2003:test"])
    assert not is_dataset_ref(str(corpus))
    assert not is_dataset_ref(str(saved["plain"]))
    not_refs = ["train.txt", "data/train.conll", "./x", "/abs/path", "a/b/c"]
    assert not any(is_dataset_ref(ref) for ref in not_refs)


def test_a_missing_file_in_an_existing_folder_is_no_hub_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    assert not is_dataset_ref("data/mytestset")  # the user meant a file in data/: "no such file"
    assert is_dataset_ref("user/mytestset")


def test_load_single_dataset(saved: dict[str, Path]):
    assert list(load_sentences(str(saved["single"]))) == SENTENCES


def test_load_a_split_of_a_dataset_dict(saved: dict[str, Path]):
    ref = str(saved["dict"])
    assert list(load_sentences(ref)) == SENTENCES  # split="train" by default
    assert list(load_sentences(ref, split="validation")) == SENTENCES[1:]
    assert list(load_sentences(f"{ref}:validation", split="train")) == SENTENCES[1:]  # explicit split wins


def test_missing_split_lists_the_available_ones(saved: dict[str, Path]):
    ref = f"{saved['dict']}:test"
    with pytest.raises(CorpusError) as info:
        load_sentences(ref)
    assert str(info.value) == f"{ref}: no split 'test'; available splits: train, validation"


def test_split_of_a_single_dataset_is_an_error(saved: dict[str, Path]):
    ref = f"{saved['single']}:test"
    with pytest.raises(CorpusError, match="is a single dataset without splits"):
        load_sentences(ref)


def test_hub_names_go_to_load_dataset(monkeypatch: pytest.MonkeyPatch, hub):
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return to_dataset(SENTENCES)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(load_sentences("user/ner:validation", split="train")) == SENTENCES
    assert list(load_sentences("conll2003", split="test")) == SENTENCES
    assert calls == [("user/ner", "validation"), ("conll2003", "test")]
    assert hub == ["user/ner", "conll2003"]  # asked once each, before loading


def test_load_failures_are_corpus_errors(monkeypatch: pytest.MonkeyPatch, hub):
    def offline(name, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(CorpusError) as info:
        load_sentences("conll2003")
    assert str(info.value) == "conll2003: cannot load the dataset: no network"


def never_load(name, split):
    raise AssertionError(f"load_dataset({name!r}) was called")


def test_a_mistyped_file_name_is_no_such_file_when_the_hub_is_unreachable(monkeypatch: pytest.MonkeyPatch):
    """One failed connection and no more: `datasets` (and its retries) is never reached."""
    attempts = []

    def unreachable(self, name, timeout=None):
        attempts.append(name)
        raise ConnectionError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(HfApi, "dataset_info", unreachable)
    monkeypatch.setattr(datasets, "load_dataset", never_load)
    with pytest.raises(CorpusError, match=r"^mytestset: no such file \(and the Hugging Face hub.*unreachable"):
        load_sentences("mytestset", split="test")
    assert attempts == ["mytestset"]


def test_a_name_the_hub_does_not_know_is_no_such_file(monkeypatch: pytest.MonkeyPatch):
    from huggingface_hub.errors import RepositoryNotFoundError

    def not_found(self, name, timeout=None):
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # its __init__ wants an HTTP response
        Exception.__init__(error, "404 Client Error: Repository Not Found")
        raise error

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(HfApi, "dataset_info", not_found)
    monkeypatch.setattr(datasets, "load_dataset", never_load)
    with pytest.raises(CorpusError) as info:
        load_sentences("mytestset")
    assert str(info.value) == "mytestset: no such file, nor a dataset of that name on the Hugging Face hub"


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_the_hub_is_never_asked_and_a_missing_name_is_no_such_file(variable, monkeypatch):
    def not_cached(name, split):  # what `datasets` raises offline for a dataset it has not cached
        raise ConnectionError(f"Couldn't reach {name!r} on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setenv(variable, "1")
    monkeypatch.setattr(HfApi, "dataset_info", lambda self, name, timeout=None: pytest.fail("the hub was asked"))
    monkeypatch.setattr(datasets, "load_dataset", not_cached)
    with pytest.raises(CorpusError, match=f"^mytestset: no such file, nor a dataset 'mytestset' in the local "
                                          f"cache \\({variable} is set"):
        load_sentences("mytestset")


def test_evaluate_on_a_mistyped_path_offline_says_no_such_file(trained_model, tmp_path):
    """The whole command, as a user runs it offline: one error line at once, no retries or hub logs."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "cli.main", "evaluate", str(trained_model), "mytestset"],
                            capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == ["error: mytestset: no such file, nor a dataset 'mytestset' in the local "
                                          "cache (HF_HUB_OFFLINE is set, so the Hugging Face hub was not asked)"]


def test_an_empty_split_has_no_sentences(monkeypatch: pytest.MonkeyPatch, hub):
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: to_dataset([]))
    with pytest.raises(CorpusError) as info:
        load_sentences("user/empty")
    assert str(info.value) == "user/empty: no sentences found"


def test_corpora_imports_neither_datasets_nor_torch_nor_tagger():
    code = (
        "import sys, corpora, corpora.conll, corpora.schemes, corpora.hf\n"
        "print(sorted(m for m in ('datasets', 'torch', 'tagger', 'cli') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
