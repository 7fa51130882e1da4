"""Active learning (tagger/tagging/selection.py, `tagger select`): each strategy's exact value against brute-force
enumeration of every tag sequence, the streamed top k, and the command as a user runs it."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from conftest import assert_user_error, make_sentences, write_corpus
from corpora import schemes
from corpora.conll import read_conll
from tagger.api import Tagger
from tagger.errors import ConfigError
from tagger.tagging import pipeline, selection as S
from tagger.tagging.confidence import ScoreOptions
from tagger.tagging.selection import Uncertainty
from tagger.tensors import FORBIDDEN

BIOES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
IOB2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def random_crf(tags, scheme, rng, constrained=True):
    """start (K,), trans (K, K), end (K,) at random, FORBIDDEN where the scheme forbids a move."""
    k = len(tags)
    start, trans, end = (rng.normal(0, 1.0, shape).astype(np.float32) for shape in ((k,), (k, k), (k,)))
    if constrained:
        allowed = map(np.array, schemes.allowed_transitions(tags, scheme))
        start, trans, end = (np.where(ok, x, np.float32(FORBIDDEN)) for ok, x in zip(allowed, (start, trans, end)))
    return start, trans, end


def brute_force(emissions, start, trans, end, temperature=1.0):
    """(best path, P(best path), token marginals (T, K)) of one sentence, by scoring every tag sequence."""
    seq_len, k = emissions.shape
    paths = np.array(list(itertools.product(range(k), repeat=seq_len)))  # (P, T)
    em, start, trans, end = (np.asarray(x, np.float64) for x in (emissions, start, trans, end))
    score = start[paths[:, 0]] + end[paths[:, -1]] + em[np.arange(seq_len), paths].sum(1)
    score += trans[paths[:, :-1], paths[:, 1:]].sum(1)
    forbidden = (start[paths[:, 0]] <= FORBIDDEN) | (end[paths[:, -1]] <= FORBIDDEN) | \
        (trans[paths[:, :-1], paths[:, 1:]] <= FORBIDDEN).any(1)
    cooled = np.where(forbidden, -np.inf, score / temperature)  # forbidden moves stay forbidden when cooled
    probs = np.exp(cooled - np.logaddexp.reduce(cooled))
    best = int(np.argmax(score))
    token_marginals = np.zeros((seq_len, k))
    for t in range(seq_len):
        np.add.at(token_marginals[t], paths[:, t], probs)
    return paths[best].tolist(), probs[best], token_marginals


def expected(emissions, crf, temperature):
    """Each strategy's value for one sentence, from its enumeration."""
    _, p_best, m = brute_force(emissions, *crf, temperature)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(m > 0, m * np.log(m), 0.0).sum(1).mean()
    return {"mnlp": math.log(p_best) / len(emissions), "least-confidence": 1 - p_best, "entropy": entropy}


@pytest.mark.parametrize("tags,scheme,temperature", [(BIOES, "bioes", 1.0), (IOB2, "iob2", 1.0),
                                                      (IOB2, "iob2", 2.5), (BIOES, "bioes", 0.7)])
def test_each_strategy_equals_brute_force_enumeration_on_a_padded_batch(tags, scheme, temperature):
    rng = np.random.default_rng(len(tags))
    crf = random_crf(tags, scheme, rng)
    lengths = [4, 1, 3, 5] if len(tags) == 5 else [4, 1, 3]
    emissions = rng.normal(0, 2, (len(lengths), max(lengths), len(tags))).astype(np.float32)  # (B, T, K)
    mask = np.arange(max(lengths))[None, :] < np.array(lengths)[:, None]  # (B, T)
    found = S.batch_uncertainty(emissions, mask, crf, temperature)
    for b, n in enumerate(lengths):
        want = expected(emissions[b, :n], crf, temperature)
        assert found[b].tokens == n
        for strategy, value in want.items():
            assert found[b].score(strategy) == pytest.approx(value, rel=1e-9, abs=1e-12), (b, strategy)


def test_without_entropy_the_path_probability_is_the_same():
    rng = np.random.default_rng(3)
    crf = random_crf(BIOES, "bioes", rng)
    emissions = rng.normal(0, 2, (2, 4, len(BIOES))).astype(np.float32)
    mask = np.ones((2, 4), bool)
    full, lean = S.batch_uncertainty(emissions, mask, crf), S.batch_uncertainty(emissions, mask, crf, entropy=False)
    assert [u.log_p for u in lean] == pytest.approx([u.log_p for u in full], abs=1e-12)
    assert [u.entropy for u in lean] == [0.0, 0.0]


def test_an_unconstrained_crf_and_a_certain_sentence():
    rng = np.random.default_rng(5)
    crf = random_crf(IOB2, "iob2", rng, constrained=False)
    emissions = rng.normal(0, 1, (1, 3, len(IOB2))).astype(np.float32)
    u, = S.batch_uncertainty(emissions, np.ones((1, 3), bool), crf)
    assert u.score("mnlp") == pytest.approx(expected(emissions[0], crf, 1.0)["mnlp"], rel=1e-9)
    sure = np.full((1, 2, len(IOB2)), -50.0, np.float32)
    sure[:, :, 0] = 50.0  # every token is O beyond doubt
    u, = S.batch_uncertainty(sure, np.ones((1, 2), bool), crf)
    assert u.score("least-confidence") == pytest.approx(0.0, abs=1e-12)
    assert u.score("mnlp") <= 0.0 and u.score("entropy") == pytest.approx(0.0, abs=1e-12)


def test_a_text_of_two_sentences_is_their_sum():
    a, b = Uncertainty(-0.5, 3, 0.6), Uncertainty(-1.5, 1, 0.2)
    both = a + b
    assert both.score("mnlp") == pytest.approx(-2.0 / 4)
    assert both.score("least-confidence") == pytest.approx(1 - math.exp(-2.0))
    assert both.score("entropy") == pytest.approx(0.8 / 4)
    assert S.CERTAIN.score("mnlp") == S.CERTAIN.score("entropy") == S.CERTAIN.score("least-confidence") == 0.0


# -- the streamed top k --------------------------------------------------------------------------------------

def by_value(values):
    """A scorer for top_k over integer units: the unit i has log P = values[i] and one token."""
    return lambda units: [Uncertainty(values[i], 1, -values[i]) for i in units]


@pytest.mark.parametrize("chunk", [1, 3, 100])
def test_top_k_streams_in_chunks_and_keeps_the_k_most_uncertain(chunk):
    rng = np.random.default_rng(0)
    values = (-rng.random(50) * 3).tolist()
    pool = ([i] for i in range(50))  # a generator: read once
    chosen = S.top_k(pool, lambda units: by_value(values)([u[0] for u in units]), 7, "mnlp", chunk=chunk)
    order = sorted(range(50), key=lambda i: values[i])[:7]  # lowest log P per token first
    assert [c.index for c in chosen] == order
    assert [c.score for c in chosen] == [values[i] for i in order]


def test_ties_go_to_the_unit_that_came_first_and_a_small_pool_gives_all():
    values = [-1.0, -2.0, -2.0, -1.0, -2.0]
    chosen = S.top_k([[i] for i in range(5)], lambda us: by_value(values)([u[0] for u in us]), 2, "mnlp", chunk=2)
    assert [c.index for c in chosen] == [1, 2]
    everything = S.top_k([[i] for i in range(5)], lambda us: by_value(values)([u[0] for u in us]), 10, "mnlp")
    assert sorted(c.index for c in everything) == [0, 1, 2, 3, 4]


def test_least_confidence_and_entropy_take_the_highest_first():
    values = [-0.1, -3.0, -1.0]
    scorer = lambda us: by_value(values)([u[0] for u in us])  # noqa: E731
    assert [c.index for c in S.top_k([[0], [1], [2]], scorer, 2, "least-confidence")] == [1, 2]
    assert [c.index for c in S.top_k([[0], [1], [2]], scorer, 2, "entropy")] == [1, 2]


def test_random_is_seeded_independent_of_the_chunk_and_never_scores():
    def refuse(units):
        raise AssertionError("random must not run the model")

    pool = [[i] for i in range(100)]
    first = [c.index for c in S.top_k(pool, refuse, 10, "random", seed=1, chunk=7)]
    again = [c.index for c in S.top_k(pool, refuse, 10, "random", seed=1, chunk=64)]
    other = [c.index for c in S.top_k(pool, refuse, 10, "random", seed=2, chunk=7)]
    assert first == again and first != other and len(set(first)) == 10


def test_empty_units_are_never_selected():
    chosen = S.top_k([["a"], [], ["b"]], lambda us: [Uncertainty(-1.0, 1)] * len(us), 3, "mnlp")
    assert [c.index for c in chosen] == [0, 2]


@pytest.mark.parametrize("k,strategy,fragment", [(0, "mnlp", "--budget"), (2.5, "mnlp", "--budget"),
                                                 (True, "mnlp", "--budget"), (3, "margin", "unknown strategy 'margin'")])
def test_a_bad_budget_or_strategy_is_a_config_error(k, strategy, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("-", r"\-")):
        S.check(k, strategy)


# -- on a trained model --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tagger(trained_model):
    return Tagger.load(trained_model)


@pytest.fixture(scope="module")
def pool():
    return [tokens for tokens, _ in make_sentences(40, seed=9)]


@pytest.mark.parametrize("strategy", ["mnlp", "least-confidence", "entropy"])
def test_select_picks_what_scoring_the_whole_pool_and_sorting_picks(tagger, pool, strategy):
    scores = [u.score(strategy) for u in S.uncertainties(tagger, pool, strategy=strategy)]
    sign = 1 if strategy == "mnlp" else -1
    order = sorted(range(len(pool)), key=lambda i: (sign * scores[i], i))[:5]
    chosen = S.select(tagger, iter(pool), 5, strategy, chunk=6)
    assert [c.index for c in chosen] == order
    assert [c.unit for c in chosen] == [pool[i] for i in order]
    assert [c.score for c in chosen] == pytest.approx([scores[i] for i in order])


def test_the_model_scores_agree_with_its_marginals_and_its_tags(tagger, pool):
    sentence = pool[0]
    u, = S.uncertainties(tagger, [sentence], strategy="entropy")
    m = tagger.marginals([sentence])[0]  # (T, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert u.score("entropy") == pytest.approx(-np.where(m > 0, m * np.log(m), 0).sum(1).mean(), rel=1e-9)
    (_, best), = pipeline.score_sentences(tagger, [sentence], options=ScoreOptions(n_best=1))[0].alternatives
    assert 1 - u.score("least-confidence") == pytest.approx(best, rel=1e-6)


def test_select_texts_scores_a_text_as_its_sentences_together(tagger):
    texts = ["Angela Merkel visited Paris. She met Jacques Chirac.", "hello", "", "Paris is big."]
    chosen = S.select_texts(tagger, texts, 4, "least-confidence")
    assert sorted(c.index for c in chosen) == [0, 1, 3]  # the blank line is not a unit
    first = next(c for c in chosen if c.index == 0)
    p = tagger.alternatives(texts[0], 1)[0]["probability"]  # the product of its two sentences'
    assert first.score == pytest.approx(1 - p, rel=1e-6)


def test_select_refuses_raw_text_and_points_to_select_texts(tagger):
    with pytest.raises(ConfigError, match="select_texts"):
        S.select(tagger, ["a plain string"], 2)


# -- the command -----------------------------------------------------------------------------------------------

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, ["select", *map(str, args)], input=input)


@pytest.fixture
def conll_pool(tmp_path):
    """A CoNLL pool whose tags the command must ignore: every tag is B-MISC, a type the model lacks."""
    sentences = [(tokens, ["B-MISC"] + ["I-MISC"] * (len(tokens) - 1)) for tokens, _ in make_sentences(30, seed=4)]
    return write_corpus(tmp_path / "pool.txt", sentences)


def test_select_writes_the_budget_as_conll_pre_annotated_by_the_model(trained_model, conll_pool, tmp_path, tagger):
    out = tmp_path / "next.conll"
    result = run(trained_model, conll_pool, "--budget", 4, "--input-format", "conll", "--output", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    picked = list(read_conll(out, format="conll2003"))
    assert len(picked) == 4
    pool = [s.tokens for s in read_conll(conll_pool, labelled=False)]
    want = [c.unit.tokens for c in S.select(tagger, read_conll(conll_pool, labelled=False), 4, "mnlp")]
    assert [s.tokens for s in picked] == want and all(t in pool for t in want)
    # the last column is the model's tags (its pool tags were B-MISC), ready to correct and train on
    assert [list(s.tags) for s in picked] == tagger.predict_tokens([s.tokens for s in picked])


def test_select_jsonl_has_each_sentences_index_and_score_in_order(trained_model, tmp_path, tagger):
    lines = [" ".join(tokens) for tokens, _ in make_sentences(25, seed=6)]
    pool = tmp_path / "pool.tokens"
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "next.jsonl"
    result = run(trained_model, pool, "-k", 5, "--strategy", "least-confidence", "--input-format", "tokens",
                 "--output-format", "jsonl", "-o", out)
    assert result.exit_code == 0, result.output
    assert "selected 5 of 25 units by least-confidence" in result.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["score"] for r in records] == sorted((r["score"] for r in records), reverse=True)
    for r in records:
        assert r["tokens"] == lines[r["index"]].split() and r["strategy"] == "least-confidence"
        assert r["tags"] == tagger.predict_tokens([r["tokens"]])[0]
        u, = S.uncertainties(tagger, [r["tokens"]], strategy="least-confidence")
        assert r["score"] == pytest.approx(u.score("least-confidence"))


def test_select_raw_text_from_standard_input_to_standard_output(trained_model):
    text = "Angela Merkel visited Paris.\n\nJacques Chirac met Angela Merkel in Berlin.\n"
    result = run(trained_model, "-", "--budget", 5, "--strategy", "random", "--seed", 3, "--output", "-",
                 "--output-format", "jsonl", "-q", input=text)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["index"] for r in records) == [0, 2]
    for r in records:
        assert all(r["text"][e["start"]:e["end"]] == e["text"] for e in r["entities"])


@pytest.mark.parametrize("args,fragment", [
    (["--budget", 0], "--budget"),  # bad option values are usage errors (exit 2), as everywhere
    (["--budget", 2, "--strategy", "margin"], "margin"),
])
def test_select_bad_options_are_usage_errors(trained_model, conll_pool, tmp_path, args, fragment):
    result = run(trained_model, conll_pool, "-o", tmp_path / "o", *args)
    assert result.exit_code == 2 and fragment in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_select_bad_input_is_one_line(trained_model, conll_pool, tmp_path):
    assert_user_error(run(trained_model, tmp_path / "nope.txt", "-k", 2, "-o", tmp_path / "o"), "no such file")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    assert_user_error(run(trained_model, empty, "-k", 2, "-o", tmp_path / "o"), "empty.txt", "no sentence to select")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff line\n")
    assert_user_error(run(trained_model, bad, "-k", 2, "-o", tmp_path / "o"), "bad.txt:2:", "UTF-8")
    taken = tmp_path / "taken.conll"
    taken.write_text("keep me\n", encoding="utf-8")
    assert_user_error(run(trained_model, conll_pool, "-k", 2, "-o", taken, "--input-format", "conll"),
                   "already exists", "--force")
    assert taken.read_text(encoding="utf-8") == "keep me\n"
    assert_user_error(run(tmp_path / "no-model", conll_pool, "-k", 2, "-o", tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_a_conll_pool_without_input_format_is_read_as_conll(trained_model, tmp_path, tagger):
    # CoNLL-2003 columns (token POS chunk NER): read as raw text, each column line was a unit of its own
    conll = tmp_path / "pool.conll"
    conll.write_text("-DOCSTART- -X- -X- O\n\n" + "\n".join(
        "\n".join(f"{t} NNP B-NP O" for t in tokens) + "\n" for tokens, _ in make_sentences(12, seed=5)),
        encoding="utf-8")
    out = tmp_path / "sel.conll"
    result = run(trained_model, conll, "--budget", 5, "-o", out)
    assert result.exit_code == 0, result.output
    assert "looks like a CoNLL file" in result.stderr and "selected 5 of 12 units" in result.stderr
    picked = list(read_conll(out, format="conll2003"))
    assert len(picked) == 5 and all(len(s.rows[0]) == 5 for s in picked)  # its 4 columns + the model's tag
    assert not any(t in ("NNP", "B-NP") for s in picked for t in s.tokens)


def test_a_gzipped_pool_is_read_like_a_plain_one(trained_model, tmp_path):
    import gzip

    text = "".join(" ".join(tokens) + "\n" for tokens, _ in make_sentences(10, seed=8))
    plain, packed = tmp_path / "pool.txt", tmp_path / "pool.txt.gz"
    plain.write_text(text, encoding="utf-8")
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    outputs = []
    for pool in (plain, packed):
        result = run(trained_model, pool, "-k", 3, "-o", "-", "--output-format", "jsonl", "-q")
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 3


def test_an_onnx_export_says_it_is_one_and_which_commands_take_it(trained_model, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"onnx")
    (export / "preprocess.json").write_text("{}", encoding="utf-8")
    assert_user_error(run(export, "-", "-k", 2, "-o", "-", input="Anna went home .\n"), "is an ONNX export",
                      "`tagger predict`", "the model directory it was exported from")


def test_quiet_keeps_the_note_on_a_conll_pool_to_itself(trained_model, conll_pool, tmp_path):
    result = run(trained_model, conll_pool, "-k", 2, "-o", tmp_path / "o.conll", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert len(list(read_conll(tmp_path / "o.conll", labelled=False))) == 2
