"""`tagger card` and `tagger push`: a model directory's card, written locally, or the model uploaded to the
Hugging Face Hub with it (huggingface_hub's create_repo + upload_folder). Downloading (hf:// names) is
tagger/hub.py, in the loading path every command shares; the card's text is tagger/card.py.

What is uploaded is staged first in a directory, the same one `--dry-run DIR` leaves for the user to read:
config.json, the files its checksums cover (vocab.json, model.safetensors, a lexicon), the training's
metrics.jsonl and training.svg when present, and README.md (the card). Never checkpoint/ (what --resume
needs, not what a user loads).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from tagger import hub, store
from tagger.card import CardFacts, Score, render
from tagger.errors import ConfigError, InputError
from tagger.tagging.tagger import Tagger

EXTRAS = ("metrics.jsonl", "training.svg")  # the training's curves: uploaded when the model directory has them
CARD = "README.md"
_CHINESE_INPUTS = ("lexicon", "embeddings", "context")  # "jieba" in any of these: the model reads Chinese


def card(model: "str | os.PathLike", output: Path | None = None, repo_id: str | None = None,
         language: Sequence[str] = (), test: str | None = None, force: bool = False) -> Path | None:
    """Write MODEL's card to `output` (default MODEL/README.md; "-": standard output); an existing file is
    refused unless `force`. `repo_id` fills the usage snippet (when None: a Hub model's own, else ORG/NAME).
    Returns the path written (None: standard output)."""
    if output is None and hub.is_hub_ref(model):
        raise ConfigError("a Hub model's directory is Hugging Face's cache: write its card elsewhere (-o FILE)",
                          path=os.fspath(model))
    directory = store.resolve(model)
    target = directory / CARD if output is None else output
    if str(target) != "-" and Path(target).exists() and not force:
        raise InputError("exists: pass --force to overwrite it", path=str(target))
    repo_id = repo_id or (hub.parse(model)[0] if hub.is_hub_ref(model) else "ORG/NAME")
    text = render(facts(directory, repo_id, language, test))
    with store.atomic_file(None if str(target) == "-" else Path(target)) as f:
        f.write(text)
    return None if str(target) == "-" else Path(target)


def push(model: "str | os.PathLike", repo_id: str, private: bool = False, revision: str | None = None,
         dry_run: Path | None = None, language: Sequence[str] = (), test: str | None = None,
         card_file: Path | None = None) -> dict:
    """Upload MODEL to the Hub as `repo_id` (created if missing; `private` on creation; `revision`: a branch,
    created from main if missing), README.md generated unless `card_file` gives one. With `dry_run`, only
    stage the upload into that directory (which must be new or empty). Returns what was (to be) uploaded."""
    check_repo_id(repo_id)
    directory = store.resolve(model)
    text = _read_card(card_file) if card_file else None
    if text is None:
        text = render(facts(directory, repo_id, language, test, revision))
    if dry_run is not None:
        _check_empty(dry_run)
        return {"repo_id": repo_id, "revision": revision, "files": stage(directory, text, dry_run),
                "dry_run": str(dry_run)}
    with tempfile.TemporaryDirectory(prefix="tagger-push-") as tmp:
        files = stage(directory, text, Path(tmp))
        url = _upload(Path(tmp), repo_id, private, revision)
    return {"repo_id": repo_id, "revision": revision, "files": files, "url": url}


def facts(directory: Path, repo_id: str, language: Sequence[str] = (), test: str | None = None,
          revision: str | None = None) -> CardFacts:
    """What the card of the model in `directory` says: its config.json and info(), its dev score (and a test
    score when `test` data is given: the model is scored on it), the Hub datasets it was trained on, and the
    language (given, or Chinese when jieba's resources were read)."""
    tagger = Tagger.load(directory)
    meta, about = tagger.meta, tagger.info()
    training = meta.get("training", {})
    scores = []
    dev_f1, dev = meta.get("dev_f1"), training.get("dev")
    if dev and isinstance(dev_f1, (int, float)) and 0 <= dev_f1 <= 1:  # without dev data it holds the epoch
        scores.append(Score("validation", dev, float(dev_f1), hub_dataset(dev)))
    if test:
        from tagger.commands.predicting import evaluate

        result = evaluate(directory, test)
        scores.append(Score("test", test, result.get("f1", result["accuracy"]), hub_dataset(test)))
    datasets = [d for d in dict.fromkeys(hub_dataset(training.get(k) or "") for k in ("train", "dev")) if d]
    languages = list(language) or (["zh"] if any("jieba" in str(training.get(k) or "") for k in _CHINESE_INPUTS)
                                   else [])
    return CardFacts(repo_id, meta, about, scores, datasets, languages, revision)


def hub_dataset(ref: str) -> str | None:
    """The Hub dataset id a corpus reference names ("conll2003", "org/name:split" -> "org/name"), None for a
    file or a saved dataset directory (corpora/hf.py decides what a dataset name looks like)."""
    from corpora import hf

    name = ref.partition(":")[0]
    if not ref or os.path.exists(ref) or os.path.exists(name) or not hf.is_dataset_ref(ref):
        return None
    return name


def stage(directory: Path, card_text: str, target: Path) -> list[str]:
    """Copy what is uploaded from the model `directory` into `target`, with `card_text` as README.md; returns
    the file names, sorted. The model files are those config.json checksums (and config.json itself)."""
    meta = store.load_model(directory)[3]  # checked as any model is loaded: what is uploaded loads
    names = ["config.json", *meta.get("sha256", {}), *(n for n in EXTRAS if (directory / n).is_file())]
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(directory / name, target / name)  # follows the symlinks of a Hub snapshot
    (target / CARD).write_text(card_text, encoding="utf-8")
    return sorted([*names, CARD])


def check_repo_id(repo_id: str) -> None:
    """ConfigError unless `repo_id` is a Hub repository name ORG/NAME."""
    owner, slash, name = repo_id.partition("/")
    if not (owner and slash and name) or "/" in name:
        raise ConfigError(f"{repo_id!r} is not a Hub repository name: expected ORG/NAME")
    hub.parse(hub.PREFIX + repo_id)


def _read_card(path: Path) -> str:
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "is not a file", path=str(path))
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("invalid UTF-8", path=str(path)) from None


def _check_empty(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InputError("exists and is not an empty directory: --dry-run writes into a new one", path=str(directory))


def _upload(folder: Path, repo_id: str, private: bool, revision: str | None) -> str:
    """create_repo (exist_ok), create_branch for a revision, upload_folder; one TaggerError line on failure."""
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError(f"tagger push needs huggingface_hub: {hub.INSTALL_HINT}") from None
    try:
        huggingface_hub.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            huggingface_hub.create_branch(repo_id, branch=revision, exist_ok=True)
        info = huggingface_hub.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                             commit_message="tagger push: model and card")
    except Exception as e:  # HTTP, auth, network: many types; the user needs one line
        raise InputError(f"upload failed: {_upload_error(e)}", path=f"hf://{repo_id}") from None
    return str(getattr(info, "commit_url", info))


def _upload_error(error: Exception) -> str:
    """One line for what went wrong talking to the Hub, with what to do where that is known."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    first = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: unset it to upload"
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, HfHubHTTPError) and status in (401, 403):
        return f"not allowed ({status}): log in with `hf auth login` (or set HF_TOKEN) with write access to it"
    return f"{type(error).__name__}: {first}"
