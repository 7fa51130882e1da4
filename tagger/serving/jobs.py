"""The engine side of the HTTP server: a batch of requests (`TagJob`s, tagger/serving/bodies.py) tagged in a
worker thread, off the event loop, with the work each request may cost bounded.

- Each request is measured first, in tokens as the model tokenises it: past `Limits.sentence_tokens` in
  one sentence or `Limits.request_tokens` in all, it gets 413 and is never tagged. A token is at least one
  character, so raw text that has no more characters than the limits allow cannot pass them: it is not
  tokenised twice (here and to be tagged); its tokens are counted as it is tagged.
- Requests asking the same (kind, options) are tagged together, in chunks of at most `Limits.chunk_tokens`
  tokens. Before each chunk, the requests whose deadline has passed (their client got 504 and left) are
  dropped, so that abandoned work stops within a chunk instead of running to its end.
- Answers are built from the engine's data (tagger/tagging/pipeline.py), as the records `tagger predict
  --output-format jsonl` writes: {"text", "entities"[, "alternatives"]} for raw text, {"tokens", "tags"[,
  "scores"][, "alternatives"]} for token lists.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import pairwise
from typing import Callable, Iterator, Sequence

from tagger.errors import TaggerError
from tagger.serving.bodies import HTTPError, TagJob
from tagger.tagging import pipeline
from tagger.tagging.confidence import ScoreOptions
from tagger.tagging.tagger import Tagger
from tagger.text import sentence_ends


@dataclass(frozen=True)
class Limits:
    """What one request may cost, in tokens, and how the work is cut (Settings fields, `tagger serve` flags)."""

    sentence_tokens: int  # --max-sentence-tokens
    request_tokens: int   # --max-request-tokens
    chunk_tokens: int     # deadlines are checked between chunks of this many tokens (--max-batch-tokens)
    batch_size: int       # sentences a network pass (--batch-size)


@dataclass
class Tagged:
    """One request's answer: a record per item, in order, and the tokens tagged."""

    records: list[dict]
    tokens: int


def handle(tagger: Tagger, jobs: Sequence[TagJob], limits: Limits, clock: Callable[[], float] = time.monotonic
           ) -> list[Tagged | Exception]:
    """Tag a batch of requests; a refused or abandoned request's entry is its HTTPError (413, 422, 504)."""
    out: list[Tagged | Exception] = [None] * len(jobs)  # type: ignore[list-item]
    groups: dict[tuple[str, ScoreOptions], list[tuple[int, list[int]]]] = {}
    for i, job in enumerate(jobs):
        try:
            sizes = measure(tagger, job, limits)
        except HTTPError as e:
            out[i] = e
            continue
        groups.setdefault((job.kind, job.options), []).append((i, sizes))
        out[i] = Tagged([], 0)
    for (kind, options), members in groups.items():
        for chunk in chunks(members, limits.chunk_tokens):
            live = [(i, k) for i, k in chunk if isinstance(out[i], Tagged)]
            for i in {i for i, _ in live}:
                if _abandoned(jobs[i], clock):
                    out[i] = HTTPError(504, "abandoned: past the time limit")
            live = [(i, k) for i, k in live if isinstance(out[i], Tagged)]
            if not live:
                continue
            try:
                records = tag(tagger, kind, [jobs[i].items[k] for i, k in live], options, limits.batch_size)
            except TaggerError as e:
                for i in {i for i, _ in live}:
                    out[i] = HTTPError(422, str(e))
                continue
            for (i, _), (record, tokens) in zip(live, records):
                if isinstance(out[i], Tagged):
                    out[i].records.append(record)
                    out[i].tokens += tokens
    return out


def measure(tagger: Tagger, job: TagJob, limits: Limits) -> list[int]:
    """Tokens of each item of the request; 413 past a limit. Raw text is tokenised here as the model does
    (a few percent of tagging's cost), so that the limit counts what the engine would work on."""
    if job.kind == "call":  # an extra route's own engine work (server.Service.run): it bounds itself
        return [0] * len(job.items)
    if job.kind == "tokens":
        sentences = [len(item) for item in job.items]
    elif max(map(len, job.items), default=0) <= limits.sentence_tokens \
            and sum(map(len, job.items)) <= limits.request_tokens:  # fewer characters than the limits: no scan
        return [estimate(tagger, text) for text in job.items]
    else:
        tokenizer = "words" if tagger.config.tokenizer == "auto" else tagger.config.tokenizer
        scanned = [sentence_ends(text, tokenizer)[1] for text in job.items]
        sentences = [b - a for ends in scanned for a, b in pairwise([0, *ends])]
        sizes = [ends[-1] if ends else 0 for ends in scanned]
    longest = max(sentences, default=0)
    if longest > limits.sentence_tokens:
        raise HTTPError(413, f"a sentence of {longest} tokens is longer than the server's limit of "
                             f"{limits.sentence_tokens} tokens a sentence (--max-sentence-tokens)")
    total = sum(sentences)
    if total > limits.request_tokens:
        raise HTTPError(413, f"the request holds {total} tokens, more than the server's limit of "
                             f"{limits.request_tokens} tokens a request (--max-request-tokens)")
    return sentences if job.kind == "tokens" else sizes


def estimate(tagger: Tagger, text: str) -> int:
    """Tokens a raw text will have, roughly, without tokenising it (what batch and chunk budgets count)."""
    return len(text) if tagger.config.tokenizer == "chars" else text.count(" ") + 1


def chunks(members: Sequence[tuple[int, list[int]]], budget: int) -> Iterator[list[tuple[int, int]]]:
    """(job, item) pairs in order, cut into runs of at most `budget` tokens (an item larger than the budget
    is a run of its own)."""
    run: list[tuple[int, int]] = []
    tokens = 0
    for i, sizes in members:
        for k, size in enumerate(sizes):
            if run and tokens + size > budget:
                yield run
                run, tokens = [], 0
            run.append((i, k))
            tokens += size
    if run:
        yield run


def tag(tagger: Tagger, kind: str, items: list, options: ScoreOptions, batch_size: int) -> list[tuple[object, int]]:
    """(record, tokens tagged) of each raw text or token list, in order (the record: what `tagger predict`
    writes as JSONL); for "call" jobs, each function's result on the tagger (and 0)."""
    if kind == "call":
        return [(fn(tagger), 0) for fn in items]
    if kind == "text":
        return [(_text_record(t), len(t.tokens.texts)) for t in pipeline.tag_texts(tagger, items, options, batch_size)]
    return [(record, len(record["tokens"])) for record in _token_records(tagger, items, options, batch_size)]


def _token_records(tagger: Tagger, items: list, options: ScoreOptions, batch_size: int) -> list[dict]:
    if not options.active:
        tags = tagger.predict_tokens(items, (), batch_size)
        return [{"tokens": list(tokens), "tags": t} for tokens, t in zip(items, tags)]
    records = []
    for tokens, (tags, scores) in zip(items, pipeline.scored_tokens(tagger, items, (), options, batch_size)):
        record = {"tokens": list(tokens), "tags": tags}
        if scores.tags is not None:
            record["scores"] = scores.tags
        if scores.alternatives is not None:
            record["alternatives"] = scores.alternatives
        records.append(record)
    return records


def _text_record(tagged: pipeline.TaggedText) -> dict:
    record = {"text": tagged.text, "entities": tagged.entities}
    if tagged.alternatives is not None:
        record["alternatives"] = tagged.alternatives
    return record


def _abandoned(job: TagJob, clock: Callable[[], float]) -> bool:
    return job.deadline is not None and clock() > job.deadline
