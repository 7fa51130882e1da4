"""bench/calibration.py end to end on the tiny trained model and synthetic corpora."""
import importlib.util
import json
from pathlib import Path

from corpora import schemes
from conftest import make_sentences, write_corpus

BENCH = Path(__file__).resolve().parent.parent / "bench" / "calibration.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("calibration_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibration_bench_reports_the_table_and_fits_a_temperature(trained_model, tmp_path, capsys):
    sents = make_sentences(40, seed=5)
    dev = write_corpus(tmp_path / "dev.txt", sents[:20])
    test = write_corpus(tmp_path / "test.txt", sents[20:], scheme="bioes")  # gold in another scheme
    out = tmp_path / "calibration.json"
    result = load_bench().main(["--model", str(trained_model), "--dev", str(dev), "--test", str(test),
                                "--out", str(out), "--fit"])
    assert json.loads(out.read_text()) == json.loads(capsys.readouterr().out) == result
    plain = result["test_scores"]
    assert plain["temperature"] == 1.0 and len(plain["bins"]) == 10
    assert plain["entities"] == sum(b["count"] for b in plain["bins"]) > 0
    assert plain["gold_entities"] == sum(len(schemes.spans(tags, "iob2")) for _, tags in sents[20:])
    right = sum(b["count"] * b["precision"] for b in plain["bins"] if b["count"])
    assert right > 0  # the BIOES gold is read in the model's scheme: its entities can be right
    assert [row["threshold"] for row in plain["thresholds"]] == [0.5, 0.8, 0.9, 0.95]
    assert 0.0 <= plain["ece"] <= 1.0
    assert result["fitted_temperature"] > 0
    assert result["test_scores_at_fitted_temperature"]["entities"] == plain["entities"]
