"""Are the entity probabilities honest? Calibration of a model's entity scores on a test corpus.

    python bench/calibration.py --model models/conll2003 --dev ../shared/data/conll2003/valid.txt \
        --test ../shared/data/conll2003/test.txt --out bench/results-calibration.json

Tags the test sentences (Viterbi), gives each predicted entity its exact probability under the CRF
(tagger.marginals.span_probabilities) and checks it against the gold entities: a 10-bin reliability table
(each bin's mean score, precision and count), the expected calibration error (ECE), and precision and
recall at the thresholds 0.5, 0.8, 0.9 and 0.95 (the table a user needs to pick a minimum score). When the
ECE is above 0.05 (or with --fit), it fits a temperature on the dev entities (tagger.marginals.fit_temperature:
the temperature minimising the negative log-likelihood of "this entity is correct") and reports the test
table at that temperature too. Prints the JSON it writes to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpora import schemes  # noqa: E402
from corpora.conll import Sentence, read_conll  # noqa: E402
from tagger import marginals  # noqa: E402
from tagger.api import Tagger, feature_columns  # noqa: E402
from tagger.encode import iter_batches  # noqa: E402
from tagger.viterbi import viterbi  # noqa: E402

ECE_LIMIT = 0.05  # above this, a temperature is fitted on dev


def model_scores(t: Tagger, sentences: Sequence[Sentence]) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """The one place that touches the model: per batch, the sentences' indices, emissions (B, T, K) and
    mask (B, T). Re-point this when the tagging engine's interface changes."""
    columns = t.config.features
    enc = [t.encode(s.tokens, features=feature_columns(s, columns) if columns else ()) for s in sentences]
    for ids, batch in iter_batches(enc, 256, mixed=True):
        yield ids, t.network.emissions(batch), batch.mask


def scored_entities(t: Tagger, sentences: Sequence[Sentence]) -> tuple[list[marginals.ScoredEntities], int]:
    """The predicted entities of each batch, each marked correct or not, and the number of gold entities."""
    source = schemes.detect_scheme(s.tags for s in sentences) or t.scheme
    gold = [set(schemes.spans(schemes.convert(s.tags, source, t.scheme), t.scheme)) for s in sentences]
    names = t.vocab.tags.items
    data = []
    for ids, emissions, mask in model_scores(t, sentences):
        paths = viterbi(emissions, mask, *t.network.crf)
        predicted = [schemes.spans([names[i] for i in path], t.scheme) for path in paths]
        correct = [[span in gold[i] for span in spans] for i, spans in zip(ids, predicted)]
        data.append(marginals.ScoredEntities(emissions, mask, predicted, correct))
    return data, sum(map(len, gold))


def report(data: Sequence[marginals.ScoredEntities], t: Tagger, gold: int, temperature: float) -> dict:
    """The calibration table of the entities at `temperature`."""
    scores, correct = [], []
    for item in data:
        lattice = marginals.forward_backward(item.emissions, item.mask, *t.network.crf, temperature=temperature)
        for probs, flags in zip(marginals.span_probabilities(lattice, item.spans, t.vocab.tags.items, t.scheme),
                                item.correct):
            scores += probs
            correct += flags
    return {"temperature": temperature, "gold_entities": gold, **marginals.calibration(scores, correct, gold=gold)}


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
        temperature = marginals.fit_temperature(dev_data, t.network.crf, t.vocab.tags.items, t.scheme)
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
