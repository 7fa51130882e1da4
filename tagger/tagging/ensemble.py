"""An ensemble of trained models, loaded as one `Tagger`: its members' exact token marginals averaged, and
the average decoded under the tagging scheme's rules. What `tagger ensemble M1 M2 ... --output DIR` writes
(tagger/commands/ensemble.py) and `Tagger.load` reads.

The members are copies of the models, each an ordinary model directory under DIR/members/ (so DIR stands
alone and every member file keeps its own checksums); DIR/config.json says the directory is an ensemble,
names the members and records the SHA-256 of each member's config.json, which in turn checksums that
member's weights. Nothing is pickled.

What the ensemble is, exactly. Each member m gives the exact marginals P_m(y_t = k | x) of its CRF (tagging's
forward-backward at temperature 1). Their mean m̄_t(k) is the token marginal of the mixture of the members.
The ensemble answers with the CRF whose emissions are log m̄_t(k) and whose transitions are only the scheme's
rules (0 where a move is allowed, FORBIDDEN where not), i.e. P_E(y | x) ∝ Π_t m̄_t(y_t) over the sequences
the scheme allows. Viterbi under it is the allowed sequence of the highest summed log average marginal
(what the ensemble predicts), and every score tagging reports (entity probabilities, n-best, selection's
uncertainty, the calibrated temperature) is exact under P_E: they all come from the average. For
distillation (tagger/training/teachers.py) the mean itself is the target: `exact_marginals`.

The members must share their vocabulary (words, characters, tags; so their tag set and tokeniser): a batch
is encoded once, for all of them. Models of the same recipe, corpus and vectors do, whatever their seeds.
numpy only: tagging never imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tagger import store
from tagger.encode import Batch
from tagger.errors import ModelError
from tagger.tagging.marginals import forward_backward
from tagger.tagging.viterbi import viterbi
from tagger.tensors import FORBIDDEN

KIND = "ensemble"      # config.json's "kind" for an ensemble directory
MEMBERS = "members"    # the folder of the member models' copies
FLOOR = 1e-30          # an average marginal of 0 (a tag no member allows there) is read as this: log 0 is -inf


@dataclass
class EnsembleEngine:
    """What the tagging pipeline calls on `Tagger.engine` (emissions, tag, crf), for an ensemble: the
    members' engines (tagger/tagging/engine.py) and the scheme's rules as a CRF that scores nothing else."""

    members: list[Any]  # each member's Engine
    crf: tuple[np.ndarray, np.ndarray, np.ndarray]  # start (K,), trans (K, K), end (K,): 0 or FORBIDDEN

    def average(self, batch: Batch) -> np.ndarray:
        """(B, T, K) the mean of the members' exact token marginals, 0 on padding."""
        return sum(exact_marginals(engine, batch) for engine in self.members) / len(self.members)  # (B, T, K)

    def emissions(self, batch: Batch) -> np.ndarray:
        """(B, T, K) float64: log of the average marginals, what P_E scores each tag with."""
        return np.log(np.maximum(self.average(batch), FLOOR))

    def tag(self, batch: Batch) -> list[list[int]]:
        """Best tag ids of each sentence under P_E (the scheme's rules, the average's log marginals)."""
        return viterbi(self.emissions(batch), batch.mask, *self.crf)


def exact_marginals(engine: Any, batch: Batch) -> np.ndarray:
    """(B, T, K) P(y_t = k | x) of one model's engine (forward-backward at temperature 1: the CRF as
    trained), or the mean of an ensemble's members': what distillation learns from either."""
    if isinstance(engine, EnsembleEngine):
        return engine.average(batch)
    return forward_backward(engine.emissions(batch), batch.mask, *engine.crf).marginals


def rules_of(crf: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scheme's rules of a model's CRF scores: 0 where a move is allowed, FORBIDDEN where not."""
    return tuple(np.where(np.asarray(x) <= FORBIDDEN, FORBIDDEN, 0.0) for x in crf)  # type: ignore[return-value]


def is_ensemble(meta: Any) -> bool:
    """Whether a config.json's content describes an ensemble directory."""
    return isinstance(meta, dict) and meta.get("kind") == KIND


def member_dirs(directory: Path, meta: dict) -> list[Path]:
    """The members' directories named by an ensemble's config.json, each checked against its SHA-256
    (ModelError naming the file when one is missing or altered)."""
    names = meta.get(MEMBERS)
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise ModelError("an ensemble's config.json must name at least two members", path=str(directory / "config.json"))
    out = []
    for name in names:
        path = directory / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ModelError(f"member {name!r} is outside the ensemble directory", path=str(directory / "config.json"))
        config = path / "config.json"
        if not config.is_file():
            raise ModelError("ensemble member lacks config.json", path=str(path))
        if store.sha256(config.read_bytes()) != meta.get("sha256", {}).get(f"{name}/config.json"):
            raise ModelError("checksum does not match the ensemble's config.json: the member was altered or "
                             "replaced", path=str(config))
        out.append(path)
    return out


def check_members(paths: Sequence[Path], members: Sequence[Any]) -> None:
    """ModelError unless the loaded members (Taggers) can be averaged: the same tags (in the same order),
    tokeniser and vocabulary; the first that differs from the first member is named, with both."""
    first = members[0]
    for path, other in zip(paths[1:], members[1:]):
        if other.tags != first.tags:
            raise ModelError(f"tag set {', '.join(other.tags)} differs from {paths[0]}'s "
                             f"({', '.join(first.tags)}): an ensemble's members must share their tags", path=str(path))
        if other.config.tokenizer != first.config.tokenizer:
            raise ModelError(f"tokenizer {other.config.tokenizer!r} differs from {paths[0]}'s "
                             f"({first.config.tokenizer!r}): an ensemble's members must share their tokeniser",
                             path=str(path))
        if other.vocab.to_json() != first.vocab.to_json() or other.meta.get("sha256", {}).get("lexicon.txt") != \
                first.meta.get("sha256", {}).get("lexicon.txt"):
            raise ModelError(f"vocabulary differs from {paths[0]}'s: an ensemble's members must be trained on the "
                             "same corpus with the same vectors (and lexicon)", path=str(path))


def load(directory: Path, meta: dict, load_member: Callable[[Path], Any], make: Callable[..., Any]) -> Any:
    """The ensemble in `directory` (config.json's content `meta`) as a Tagger: members loaded with
    `load_member` (Tagger.load), checked, and `make(config, vocab, meta, engine)` called with the first
    member's config (at the ensemble's temperature) and vocabulary and an EnsembleEngine."""
    from tagger.config import Config
    from tagger.errors import ConfigError

    paths = member_dirs(directory, meta)
    members = [load_member(p) for p in paths]
    check_members(paths, members)
    try:
        config = Config.from_dict(meta["config"], source=str(directory / "config.json"))
    except (ConfigError, KeyError, TypeError) as e:
        raise ModelError(getattr(e, "message", f"malformed config ({e})"), path=str(directory / "config.json")) from None
    first = members[0]
    config = Config.from_dict({**first.config.to_dict(), "temperature": config.temperature})
    engine = EnsembleEngine([m.engine for m in members], rules_of(first.engine.crf))
    return make(config, first.vocab, meta, engine)


def kind_of(directory: str | Path) -> str | None:
    """config.json's "kind" in a directory ("ensemble"), or None (a single model, or no readable config.json:
    loading it as a model then says what is wrong)."""
    import json

    try:
        meta = json.loads((Path(directory) / "config.json").read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return meta.get("kind") if isinstance(meta, dict) else None
