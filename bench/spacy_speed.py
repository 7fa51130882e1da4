"""Tokens/s of the spaCy component (nlp.pipe) against `tagger predict` on the same text (issue 37: >= 0.8x).

    flock /tmp/cpu.lock python bench/spacy_speed.py --model MODEL [--texts conll|FILE.txt.gz] [--limit N] \
        [--batch-size 1000] [--engine-batch-size 128] [--predict-batch-size 256] [--repeat 5] \
        [--out bench/results-spacy-speed.json]

The texts: CoNLL-2003's test sentences as raw text (tokens joined by spaces), or the first --limit lines of a
raw text file (plain or .gz). One process, one BLAS thread, best of --repeat runs after a warm-up, without and
with entity scores:

- `tagger predict`: the command's own path in-process (tagger.commands.predict on a loaded model, one worker:
  read the text file, tag up to 4,096 lines at a time (streaming.CHUNK_LINES) in engine batches of
  --predict-batch-size sentences (its --batch-size, default 256), write JSONL to a temporary file), and
  `Tagger.predict(texts)` alone, all texts in one call (no files, no JSON: the stricter baseline);
- the component: `nlp.pipe(docs, batch_size=N)` (--batch-size, default spaCy's own, 1000) over docs spaCy
  has already tokenised (`nlp.make_doc`, not timed: "tokenisation excluded"): the tagger's own tokeniser,
  engine (--engine-batch-size sentences an engine call, default the component's own, 128: half the
  command's, for spaCy's smaller batches of docs), and the offsets made spaCy spans (doc.ents, and
  doc.spans["sc"] with scores); the same with batch_size=4,096, the lines `tagger predict` tags at once (the
  same window on both sides); and `nlp.pipe(texts)`, spaCy's tokeniser included. `--engine-batch-size 256`
  gives the component the command's engine batch (and `--predict-batch-size 128` the command the component's).

The five take turns within each repeat, so that a change in the machine's load falls on all of them, and the
collector runs (gc.collect) before each: a full collection walks every object spaCy's imports made (torch's
too, which thinc imports: 0.12-0.17 s here, about every second call), and would otherwise land on whichever
call happened to trigger it.

The ratio asked for is the component's tokens/s over `tagger predict`'s, given for both baselines, by wall
time and by this process's CPU time (steadier on a shared machine), at --batch-size and at the command's
window. Tokens are the tagger's tokens of the texts. Also printed, independent of the machine's load: the
engine's work in each window (token-steps, each batch padded to its longest sentence, and LSTM steps), and
the texts whose doc.ents differ from Tagger.predict's entities (where spaCy's tokens and the tagger's
disagree: the alignment counts say how).
"""
from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's matrix products on one thread, as Tagger limits them


def best_times(fns: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of the fastest of `repeat` calls of each function (by wall time), after one warm-up
    call each; the functions take turns, so that a change in the machine's load falls on all of them alike,
    and each starts from a collected heap (see the module's docstring). CPU time (this process's) is the
    steadier figure on a shared machine."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for round in range(repeat + 1):
        for name, fn in fns.items():
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            if round:
                times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: min(t) for name, t in times.items()}


def read_texts(source: str, data: Path, limit: int | None) -> list[str]:
    if source == "conll":
        from corpora.conll import read_conll

        texts = [" ".join(s.tokens) for s in read_conll(data / "test.txt") if s.tokens]
    else:
        opener = gzip.open if source.endswith(".gz") else open
        with opener(source, "rt", encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    return texts[:limit] if limit else texts


def compare(tagger, nlp, texts: list[str], scores: bool, args, tokens: int) -> dict:
    """The five timings of one setting (scores or not) and the component's ratios to both baselines."""
    from tagger import commands
    from tagger.tagging.streaming import CHUNK_LINES

    component = nlp.get_pipe("bilstm_tagger")
    component.scores, component.engine_batch_size = scores, args.engine_batch_size
    docs = [nlp.make_doc(t) for t in texts]
    suffix = " --scores" if scores else ""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "texts.txt", Path(tmp) / "out.jsonl"
        source.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        seconds = best_times({
            f"tagger predict (command, 1 worker){suffix}": lambda: commands.predict(
                tagger, [str(source)], "text", "jsonl", target, batch_size=args.predict_batch_size, force=True,
                workers=1, scores=scores),
            f"Tagger.predict(texts){suffix}": lambda: tagger.predict(texts, scores=scores,
                                                                     batch_size=args.predict_batch_size),
            f"nlp.pipe(docs, batch_size={args.batch_size}){suffix}":
                lambda: list(nlp.pipe(docs, batch_size=args.batch_size)),
            f"nlp.pipe(docs, batch_size={CHUNK_LINES}), the command's window{suffix}":
                lambda: list(nlp.pipe(docs, batch_size=CHUNK_LINES)),
            f"nlp.pipe(texts, batch_size={args.batch_size}), spaCy's tokeniser included{suffix}":
                lambda: list(nlp.pipe(texts, batch_size=args.batch_size)),
        }, args.repeat)
    rows = [{"what": name, "tokens_per_s": round(tokens / wall), "seconds": round(wall, 3),
             "cpu_tokens_per_s": round(tokens / cpu), "cpu_seconds": round(cpu, 3)}
            for name, (wall, cpu) in seconds.items()]
    for row in rows:
        print(json.dumps(row), flush=True)
    command, engine, pipe, same = (r["tokens_per_s"] for r in rows[:4])
    cpu_command, cpu_engine, cpu_pipe, cpu_same = (r["cpu_tokens_per_s"] for r in rows[:4])
    return {"scores": scores, "rows": rows, "component_over_tagger_predict": round(pipe / command, 3),
            "component_over_Tagger_predict": round(pipe / engine, 3),
            "cpu_component_over_tagger_predict": round(cpu_pipe / cpu_command, 3),
            "cpu_component_over_Tagger_predict": round(cpu_pipe / cpu_engine, 3),
            "same_window_component_over_tagger_predict": round(same / command, 3),
            "cpu_same_window_component_over_tagger_predict": round(cpu_same / cpu_command, 3)}


def engine_work(tagger, texts: list[str], window: int, batch_size: int) -> dict:
    """What the engine runs when the texts are tagged `window` at a time, as tagging's pipeline batches them
    (each text's sentences, the non-empty ones sorted by length within the window, cut every `batch_size`):
    token-steps (each batch padded to its longest sentence), LSTM steps and batches. Counts, not times: the
    cost of a smaller window, independent of the machine's load."""
    from tagger.encode import sorted_batches
    from tagger.text import sentence_ends

    tokenizer = "words" if tagger.config.tokenizer == "auto" else tagger.config.tokenizer
    padded = steps = batches = 0
    for k in range(0, len(texts), window):
        lengths = [b - a for text in texts[k : k + window]
                   for a, b in pairwise([0, *sentence_ends(text, tokenizer)[1]]) if b > a]
        for ids in sorted_batches(lengths, batch_size):
            longest = max(lengths[i] for i in ids)
            padded, steps, batches = padded + longest * len(ids), steps + longest, batches + 1
    return {"window": window, "batch_size": batch_size, "token_steps": padded, "lstm_steps": steps, "batches": batches}


def check_same(tagger, nlp, texts: list[str]) -> int:
    """Texts whose doc.ents differ from Tagger.predict's entities (must be 0 where the tokens align)."""
    expected = tagger.predict(texts)
    found = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]
    return sum(f != [(e["start"], e["end"], e["label"]) for e in x] for f, x in zip(found, expected))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model directory (or hf://ORG/NAME)")
    p.add_argument("--texts", default="conll", help="conll (CoNLL-2003 test as raw text) or a text file")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/conll2003")
    p.add_argument("--limit", type=int, help="the first N texts only")
    p.add_argument("--batch-size", type=int, default=1000, help="docs per nlp.pipe batch (spaCy's default)")
    p.add_argument("--predict-batch-size", type=int, default=256,
                   help="tagger predict's --batch-size, sentences per engine call (its default)")
    p.add_argument("--engine-batch-size", type=int, help="the component's engine_batch_size (default: its own)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args()

    import spacy

    from tagger.api import Tagger
    from tagger.serving.spacy_pipe import ENGINE_BATCH_SIZE
    from tagger.tagging.streaming import CHUNK_LINES
    from tagger.text import scan

    texts = read_texts(args.texts, args.data, args.limit)
    tagger = Tagger.load(args.model)
    tokens = sum(len(scan(t, tagger.config.tokenizer)) for t in texts)
    nlp = spacy.blank("en")
    component = nlp.add_pipe("bilstm_tagger", config={"model": str(args.model)})
    differ = check_same(tagger, nlp, texts)
    args.engine_batch_size = args.engine_batch_size or ENGINE_BATCH_SIZE
    work = {"tagger predict": engine_work(tagger, texts, CHUNK_LINES, args.predict_batch_size),
            "nlp.pipe": engine_work(tagger, texts, args.batch_size, args.engine_batch_size),
            "nlp.pipe, the command's window": engine_work(tagger, texts, CHUNK_LINES, args.engine_batch_size)}
    print(f"engine work for {tokens} tokens: " + "; ".join(
        f"{name} ({w['window']} texts a call, {w['batch_size']} sentences a batch): {w['token_steps']} token-steps, "
        f"{w['lstm_steps']} LSTM steps, {w['batches']} batches" for name, w in work.items()), flush=True)
    result = {"model": str(args.model), "texts": args.texts, "n_texts": len(texts), "tokens": tokens,
              "batch_size": args.batch_size, "predict_batch_size": args.predict_batch_size,
              "engine_batch_size": args.engine_batch_size,
              "spacy": spacy.__version__, "cpus": os.cpu_count(),
              "texts_whose_ents_differ": differ, "alignment": dict(component.alignment), "engine_work": work,
              "settings": [compare(tagger, nlp, texts, scores, args, tokens) for scores in (False, True)]}
    for setting in result["settings"]:
        print(f"scores={setting['scores']}: component / tagger predict = {setting['component_over_tagger_predict']}x"
              f" (CPU time: {setting['cpu_component_over_tagger_predict']}x), / Tagger.predict = "
              f"{setting['component_over_Tagger_predict']}x (CPU time: "
              f"{setting['cpu_component_over_Tagger_predict']}x); at the command's window: "
              f"{setting['same_window_component_over_tagger_predict']}x (CPU time: "
              f"{setting['cpu_same_window_component_over_tagger_predict']}x)", flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
