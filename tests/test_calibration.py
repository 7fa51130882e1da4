"""Temperature fitting and the calibration table (tagger/tagging/calibration.py), on lattices small enough
to enumerate: the fitted temperature is the one the gold tags were drawn at."""
import numpy as np
import pytest

from corpora import schemes
from tagger.tagging import calibration as C
from tagger.tagging.viterbi import viterbi
from test_marginals import IOB2, crf_scores, enumerate_paths


def sample_gold(emissions, crf, temperature, rng):
    """One tag sequence drawn from the CRF at `temperature` (by enumeration)."""
    paths, _, probs, _ = enumerate_paths(emissions / temperature, *(x / temperature for x in crf))
    return paths[rng.choice(len(paths), p=probs / probs.sum())]


def test_fit_temperature_recovers_the_temperature_the_gold_tags_were_drawn_at():
    """Gold drawn from the CRF at T = 2.5: the model's own scores are overconfident, and the fitted
    temperature is the one that makes its entity probabilities honest."""
    rng = np.random.default_rng(0)
    crf = crf_scores(IOB2, "iob2", False, rng, scale=2.0)
    emissions = rng.normal(0, 4, (400, 4, len(IOB2))).astype(np.float32)
    mask = np.ones((400, 4), bool)
    predicted = [schemes.spans([IOB2[i] for i in p], "iob2") for p in viterbi(emissions, mask, *crf)]
    gold = [set(schemes.spans([IOB2[i] for i in sample_gold(em, crf, 2.5, rng)], "iob2")) for em in emissions]
    correct = [[span in g for span in p] for p, g in zip(predicted, gold)]
    data = [C.ScoredEntities(emissions[i : i + 100], mask[i : i + 100], predicted[i : i + 100],
                             correct[i : i + 100]) for i in range(0, 400, 100)]
    fitted = C.fit_temperature(data, crf, IOB2, "iob2")
    assert 2.0 < fitted < 3.1
    assert C.entity_nll(data, crf, IOB2, "iob2", fitted) < C.entity_nll(data, crf, IOB2, "iob2", 1.0)


def test_calibration_table_bins_ece_and_thresholds():
    scores = [0.97, 0.93, 0.91, 0.85, 0.55, 0.15, 1.0]
    correct = [True, True, False, True, True, False, True]
    table = C.calibration(scores, correct, bins=10, gold=10)
    counts = [b["count"] for b in table["bins"]]
    assert counts == [0, 1, 0, 0, 0, 1, 0, 0, 1, 4]
    top = table["bins"][9]
    assert top["mean_score"] == pytest.approx((0.97 + 0.93 + 0.91 + 1.0) / 4) and top["precision"] == 0.75
    assert table["bins"][0]["precision"] is None
    expected_ece = (1 * 0.15 + 1 * 0.45 + 1 * 0.15 + 4 * abs(0.9525 - 0.75)) / 7
    assert table["ece"] == pytest.approx(expected_ece)
    at = {t["threshold"]: t for t in table["thresholds"]}
    assert at[0.9] == {"threshold": 0.9, "kept": 4, "precision": 0.75, "recall": 0.3}
    assert at[0.95]["kept"] == 2 and at[0.95]["precision"] == 1.0
    assert C.calibration(scores, correct)["thresholds"][0]["recall"] is None
