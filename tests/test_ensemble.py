"""`tagger ensemble`: several tiny models written as one directory, checked against a hand computation (every
tag sequence enumerated), and loaded by every command that takes a model."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import assert_user_error, make_sentences, train_tiny, write_corpus
from corpora import schemes
from tagger.api import Tagger
from tagger.encode import collate
from tagger.errors import ModelError
from tagger.tagging import ensemble
from tagger.tensors import FORBIDDEN

runner = CliRunner()
SENTENCE = ["Mary", "visited", "Paris"]


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    """Three tiny models of one corpus, seeds 1, 2, 3 (so the same vocabulary, different weights)."""
    root = tmp_path_factory.mktemp("members")
    sents = make_sentences(60, seed=1)
    train, dev = write_corpus(root / "train.txt", sents[:45]), write_corpus(root / "dev.txt", sents[45:])
    return [train_tiny(root / f"m{seed}", train, dev, epochs=2, seed=seed) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def built(members, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ens") / "ens"
    result = runner.invoke(app, ["ensemble", *map(str, members[:2]), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out


def member_marginals(model: Tagger, tokens: list[str]) -> np.ndarray:
    """(T, K) a member's marginals by enumerating every tag sequence of the sentence (float64)."""
    batch = collate([model.encode(tokens)])
    em = model.engine.emissions(batch)[0].astype(np.float64)  # (T, K)
    start, trans, end = (np.asarray(x, np.float64) for x in model.engine.crf)
    paths = np.array(list(itertools.product(range(em.shape[1]), repeat=len(tokens))))  # (P, T)
    score = start[paths[:, 0]] + end[paths[:, -1]] + em[np.arange(len(tokens)), paths].sum(1)
    score += trans[paths[:, :-1], paths[:, 1:]].sum(1)
    p = np.exp(score - np.logaddexp.reduce(score))  # (P,)
    return np.stack([np.bincount(paths[:, t], p, em.shape[1]) for t in range(len(tokens))])  # (T, K)


def by_hand(models: list[Tagger], tokens: list[str]):
    """The average marginals, every allowed sequence and its P_E (∝ product of the average marginals)."""
    mean = sum(member_marginals(m, tokens) for m in models) / len(models)  # (T, K)
    ok_start, ok_trans, ok_end = (np.asarray(x) > FORBIDDEN for x in models[0].engine.crf)
    paths = [p for p in itertools.product(range(mean.shape[1]), repeat=len(tokens))
             if ok_start[p[0]] and ok_end[p[-1]] and all(ok_trans[a, b] for a, b in zip(p, p[1:]))]
    weight = np.array([np.prod(mean[np.arange(len(tokens)), p]) for p in paths])
    return mean, paths, weight / weight.sum()


def test_the_ensemble_is_the_hand_computed_average_decoded_under_the_scheme(members, built):
    models = [Tagger.load(m) for m in members[:2]]
    ens = Tagger.load(built)
    assert ens.is_ensemble and ens.tags == models[0].tags
    mean, paths, prob = by_hand(models, SENTENCE)
    # the average of the members' exact marginals, for distillation
    got = ensemble.exact_marginals(ens.engine, collate([ens.encode(SENTENCE)]))[0]
    np.testing.assert_allclose(got, mean, atol=1e-6)
    # the best allowed sequence of the average's log marginals
    best = paths[int(np.argmax(prob))]
    assert ens.model_tags([SENTENCE])[0] == [ens.tags[k] for k in best]
    # scores come from the average: P_E of an entity is the summed P_E of the sequences that spell it
    tagged = [schemes.spans([ens.tags[k] for k in p], ens.scheme) for p in paths]
    for label, s, e in {span for spans in tagged for span in spans}:
        want = sum(q for spans, q in zip(tagged, prob) if (label, s, e) in spans)
        assert ens.span_probability(SENTENCE, s, e, label) == pytest.approx(want, abs=1e-6)
    np.testing.assert_allclose(ens.marginals([SENTENCE])[0].sum(1), 1.0, atol=1e-9)


def test_the_ensemble_differs_from_each_member(members, built):
    """Not a copy of its first member: its marginals are not any member's (the test would pass vacuously)."""
    ens = Tagger.load(built)
    batch = collate([ens.encode(SENTENCE)])
    own = [ensemble.exact_marginals(Tagger.load(m).engine, batch) for m in members[:2]]
    mean = ensemble.exact_marginals(ens.engine, batch)
    assert not any(np.allclose(mean, o, atol=1e-4) for o in own)


def test_the_directory_is_readable_json_with_copied_members_and_checksums(members, built):
    meta = json.loads((built / "config.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "ensemble" and meta["members"] == ["members/0", "members/1"]
    for name in meta["members"]:
        assert (built / name / "model.safetensors").is_file()
        assert f"{name}/config.json" in meta["sha256"]
    assert not list(built.parent.glob(".*tmp"))  # the temporary directory was renamed into place


def test_every_command_takes_the_ensemble(members, built, tmp_path):
    sents = make_sentences(12, seed=7)
    dev = write_corpus(tmp_path / "dev.txt", sents)
    ens = tmp_path / "ens"
    shutil.copytree(built, ens)
    for args in (["evaluate", ens, dev, "--json"], ["info", ens, "--json"],
                 ["select", ens, dev, "--budget", 2, "--input-format", "conll", "-o", tmp_path / "next.conll"],
                 ["calibrate", ens, dev]):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, (args, result.output)
    info = json.loads(runner.invoke(app, ["info", str(ens), "--json"]).stdout)
    assert info["ensemble_members"] == ["members/0", "members/1"]
    assert Tagger.load(ens).config.temperature != 1.0  # calibrate saved the ensemble's own temperature
    result = runner.invoke(app, ["predict", str(ens), "--scores"], input="Mary visited Paris .\n")
    assert result.exit_code == 0, result.output
    assert all(0 <= e["score"] <= 1 for e in json.loads(result.stdout)["entities"])


def test_members_with_other_tags_are_refused_naming_both(members, tmp_path):
    no_org = [(t, g) for t, g in make_sentences(60, seed=1) if not any("ORG" in x for x in g)]
    train, dev = write_corpus(tmp_path / "train.txt", no_org[:30]), write_corpus(tmp_path / "dev.txt", no_org[30:])
    other = train_tiny(tmp_path / "other", train, dev, epochs=1)
    result = runner.invoke(app, ["ensemble", str(members[0]), str(other), "-o", str(tmp_path / "e")])
    assert_user_error(result, str(other), str(members[0]), "tag set")
    assert not (tmp_path / "e").exists()


def test_an_altered_member_is_refused(built, tmp_path):
    ens = tmp_path / "ens"
    shutil.copytree(built, ens)
    meta = json.loads((ens / "members/1/config.json").read_text(encoding="utf-8"))
    meta["dev_f1"] = 0.99
    (ens / "members/1/config.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelError, match="members/1/config.json.*checksum"):
        Tagger.load(ens)


def test_one_model_an_existing_output_and_a_nested_ensemble_are_refused(members, built, tmp_path):
    assert_user_error(runner.invoke(app, ["ensemble", str(members[0]), "-o", str(tmp_path / "e")]), "two models")
    assert_user_error(runner.invoke(app, ["ensemble", *map(str, members[:2]), "-o", str(built)]), "--force")
    assert_user_error(runner.invoke(app, ["ensemble", str(built), str(members[2]), "-o", str(tmp_path / "e")]),
                      "is an ensemble")


def test_force_replaces_an_ensemble_with_three_members(members, built, tmp_path):
    ens = tmp_path / "ens"
    shutil.copytree(built, ens)
    result = runner.invoke(app, ["ensemble", *map(str, members), "-o", str(ens), "--force"])
    assert result.exit_code == 0, result.output
    assert len(Tagger.load(ens).engine.members) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ens"]


def test_export_refuses_an_ensemble_in_one_line(built, tmp_path):
    result = runner.invoke(app, ["export", str(built), "--to", "onnx", str(tmp_path / "onnx")])
    assert_user_error(result, str(built), "is an ensemble")
