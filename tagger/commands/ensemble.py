"""`tagger ensemble M1 M2 ... --output DIR`: several trained models written as one model directory that every
command loads through `Tagger.load` (tagger/tagging/ensemble.py says what it computes).

DIR holds a copy of each member (its config.json, vocab.json, model.safetensors and lexicon files, under
DIR/members/0, 1, ...), so that it stands alone and can be moved or served like any model, and a config.json
saying it is an ensemble, naming the members and recording the SHA-256 of each member's config.json. The
directory is built beside DIR under a temporary name and renamed into place: a kill leaves the old DIR or the
new one, never half of either.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from tagger import store
from tagger import tensors as spec
from tagger.api import Tagger
from tagger.errors import ConfigError, InputError, ModelError
from tagger.tagging import ensemble


def build(models: Sequence[Path], output: Path, force: bool = False) -> dict:
    """Write the ensemble of `models` to `output`; returns what it wrote (members, their dev F1)."""
    models = [Path(m) for m in models]
    if len(models) < 2:
        raise ConfigError("an ensemble needs at least two models")
    _check_output(output, models, force)
    members = [_load_member(m) for m in models]
    ensemble.check_members(models, members)
    meta = _meta(models, members)
    _write(output, models, members, meta)
    return {"output": str(output), "members": [str(m) for m in models],
            "member_dev_f1": meta["member_dev_f1"]}


def _load_member(path: Path) -> Tagger:
    """A member model (ModelError for an ensemble: name its members instead)."""
    if ensemble.kind_of(path) == ensemble.KIND:
        raise ModelError("is an ensemble: give its members (or the models it was built from) instead", path=str(path))
    return Tagger.load(path)


def _check_output(output: Path, models: Sequence[Path], force: bool) -> None:
    """InputError for an output that is a file, one of the members, or a non-empty directory without --force."""
    if output.exists() and not output.is_dir():
        raise InputError("exists and is not a directory", path=str(output))
    if any(output.resolve() == m.resolve() for m in models if m.exists()):
        raise InputError("is one of the members: write the ensemble elsewhere", path=str(output))
    if output.is_dir() and any(output.iterdir()) and not force:
        raise InputError("already exists and is not empty: use --force to overwrite it", path=str(output))


def _meta(models: Sequence[Path], members: Sequence[Tagger]) -> dict:
    """The ensemble's config.json (without the members' checksums, added as they are copied)."""
    first = members[0]
    names = [f"{ensemble.MEMBERS}/{i}" for i in range(len(members))]
    return {"format": store.FORMAT, "format_version": spec.FORMAT_VERSION, "kind": ensemble.KIND,
            ensemble.MEMBERS: names, "config": {**first.config.to_dict(), "temperature": 1.0},
            "combined": "the mean of the members' exact token marginals, decoded under the scheme's rules",
            "sources": [str(m.resolve()) for m in models],
            "member_dev_f1": [m.meta.get("dev_f1") for m in members],
            "training": first.meta.get("training", {}), "sha256": {}}


def _member_files(member: Tagger) -> list[str]:
    """The files of a member model directory that an ensemble copies: those its config.json checksums."""
    return ["config.json", *sorted(member.meta.get("sha256", {}))]


def _write(output: Path, models: Sequence[Path], members: Sequence[Tagger], meta: dict) -> None:
    """Copy the members and write config.json in a temporary directory beside `output`, then swap it in."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"))
    try:
        for name, source, member in zip(meta[ensemble.MEMBERS], models, members):
            (tmp / name).mkdir(parents=True)
            for file in _member_files(member):
                shutil.copyfile(source / file, tmp / name / file)
            meta["sha256"][f"{name}/config.json"] = store.sha256((tmp / name / "config.json").read_bytes())
        store.atomic_write(tmp / "config.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        os.chmod(tmp, 0o777 & ~_umask())
        _swap(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(new: Path, output: Path) -> None:
    """`new` renamed to `output`; an existing `output` (checked: --force) renamed aside first, then removed."""
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{os.getpid()}"
        os.replace(output, old)
    os.replace(new, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask
