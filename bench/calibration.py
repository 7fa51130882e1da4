"""Are the entity probabilities honest? Calibration of a model's entity scores on a test corpus.

    python bench/calibration.py --model models/conll2003 --dev ../shared/data/conll2003/valid.txt \
        --test ../shared/data/conll2003/test.txt --out bench/results-calibration.json

Tags the test sentences (Viterbi), gives each predicted entity its exact probability under the CRF
(tagger.tagging.marginals.span_probabilities) and checks it against the gold entities: a 10-bin reliability table
(each bin's mean score, precision and count), the expected calibration error (ECE), and precision and
recall at the thresholds 0.5, 0.8, 0.9 and 0.95 (the table a user needs to pick a minimum score). When the
ECE is above 0.05 (or with --fit), it fits a temperature on the dev entities (tagger.tagging.calibration.fit_temperature:
the temperature minimising the negative log-likelihood of "this entity is correct"; what `tagger calibrate`
saves in the model) and reports the test table at that temperature too. The tables are at explicit
temperatures (1 and the fitted one), whatever the model's config.json holds. Prints the JSON it writes to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpora.conll import Sentence, read_conll  # noqa: E402
from tagger.tagging import calibration  # noqa: E402
from tagger.api import Tagger  # noqa: E402
from tagger.tagging.calibration import entity_scores, scored_entities  # noqa: E402

ECE_LIMIT = 0.05  # above this, a temperature is fitted on dev


def report(data: Sequence[calibration.ScoredEntities], t: Tagger, gold: int, temperature: float) -> dict:
    """The calibration table of the entities at `temperature`."""
    scores, correct = entity_scores(t, data, temperature)
    return {"temperature": temperature, "gold_entities": gold, **calibration.calibration(scores, correct, gold=gold)}


def labelled(path: str) -> list[Sentence]:
    return [s for s in read_conll(path) if len(s.tokens)]


def run(model: str, dev: str, test: str, fit: bool = False) -> dict:
    """Everything the script reports, as one dict."""
    t = Tagger.load(model)
    if t.scheme is None:
        raise SystemExit(f"error: {model}: the model's tags are not span tags: it has no entities to score")
    test_data, test_gold = scored_entities(t, labelled(test))
    result = {"model": model, "dev": dev, "test": test, "scheme": t.scheme,
              "test_scores": report(test_data, t, test_gold, 1.0)}
    if fit or result["test_scores"]["ece"] > ECE_LIMIT:
        dev_data, _ = scored_entities(t, labelled(dev))
        temperature = calibration.fit_temperature(dev_data, t.engine.crf, t.tags, t.scheme)
        result["fitted_temperature"] = temperature
        result["test_scores_at_fitted_temperature"] = report(test_data, t, test_gold, temperature)
    return result


def table(scores: dict) -> str:
    """The reliability table and the thresholds as text, for a reader of the log."""
    lines = [f"T = {scores['temperature']:.3f}: {scores['entities']} entities, ECE {scores['ece']:.4f}",
             "bin        count  mean score  precision"]
    for b in scores["bins"]:
        mean, precision = (f"{x:.4f}" if x is not None else "-" for x in (b["mean_score"], b["precision"]))
        lines.append(f"{b['low']:.1f}-{b['high']:.1f}  {b['count']:7d}  {mean:>10}  {precision:>9}")
    for row in scores["thresholds"]:
        p, r = (f"{x:.4f}" if x is not None else "-" for x in (row["precision"], row["recall"]))
        lines.append(f"score >= {row['threshold']}: {row['kept']} kept, precision {p}, recall {r}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--dev", required=True, help="CoNLL file a temperature is fitted on")
    parser.add_argument("--test", required=True, help="CoNLL file the calibration is measured on")
    parser.add_argument("--out", help="write the JSON here too")
    parser.add_argument("--fit", action="store_true", help="fit a temperature even when ECE <= 0.05")
    args = parser.parse_args(argv)
    result = run(args.model, args.dev, args.test, args.fit)
    for key in ("test_scores", "test_scores_at_fitted_temperature"):
        if key in result:
            print(table(result[key]), file=sys.stderr)
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return result


if __name__ == "__main__":
    main()
