"""Models on the Hugging Face Hub: `hf://ORG/NAME[@REVISION]` names one wherever a model directory is taken.

`download` fetches the repository's snapshot with huggingface_hub's `snapshot_download` into Hugging Face's
own cache (HF_HUB_CACHE, HF_HOME) and returns the snapshot's directory; the model files in it are then checked
as any model directory is (tagger/store.py: checksums, format version). HF_HUB_OFFLINE=1 is huggingface_hub's
own switch: nothing is asked of the Hub and a cached snapshot is used (the revision's refs/ entry, or the commit
itself). huggingface_hub is optional (pip install 'bilstm-tagger[hub]') and imported only here, only when a
hf:// name is given. Uploading (tagger push) is tagger/commands/hub.py; the model card is tagger/card.py.
"""
from __future__ import annotations

import os
from pathlib import Path

from tagger.errors import ConfigError, ModelError

PREFIX = "hf://"
INSTALL_HINT = "pip install 'bilstm-tagger[hub]'"


def is_hub_ref(ref: "str | os.PathLike") -> bool:
    """Whether `ref` names a Hub model: "hf://ORG/NAME[@REV]" (or "hf:/ORG/NAME", what pathlib.Path makes of it
    when a command's argument passed through Path)."""
    return isinstance(ref, (str, os.PathLike)) and os.fspath(ref).startswith("hf:/")


def parse(ref: "str | os.PathLike") -> tuple[str, str | None]:
    """("ORG/NAME", revision or None) of a hf:// name; ConfigError naming it when it is malformed."""
    text = os.fspath(ref)
    body = text[len(PREFIX):] if text.startswith(PREFIX) else text[len("hf:/"):]
    repo_id, at, revision = body.partition("@")
    owner, slash, name = repo_id.partition("/")
    if not (owner and slash and name) or "/" in name or (at and not revision):
        raise ConfigError("a Hub model is named hf://ORG/NAME or hf://ORG/NAME@REVISION", path=text)
    _check_repo_id(repo_id, text)
    return repo_id, revision or None


def download(ref: "str | os.PathLike") -> Path:
    """The local directory of the Hub model `ref` names: its snapshot in Hugging Face's cache, downloaded if
    the cache lacks it (and HF_HUB_OFFLINE is not set). Every failure is one ModelError naming `ref`."""
    repo_id, revision = parse(ref)
    hub = _import_hub()
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, library_name="bilstm-tagger",
                                       library_version=_version())
    except Exception as e:  # huggingface_hub raises many types (HTTP, offline, cache); the user needs one line
        raise ModelError(_why(e, revision), path=os.fspath(ref)) from None
    return Path(folder)


def _version() -> str | None:
    """This package's version, for huggingface_hub's user agent (None when not installed as a package)."""
    from importlib import metadata

    try:
        return metadata.version("bilstm-tagger")
    except metadata.PackageNotFoundError:
        return None


def _why(error: Exception, revision: str | None) -> str:
    """One line saying why a snapshot could not be had, from huggingface_hub's exception."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if isinstance(error, RevisionNotFoundError):
        return f"the repository has no revision {revision!r}"
    if isinstance(error, GatedRepoError):
        return "the repository is gated: accept its conditions on the Hub and log in (hf auth login)"
    if isinstance(error, RepositoryNotFoundError):
        return "no such model repository on the Hub, or it is private and you are not logged in (hf auth login)"
    if isinstance(error, LocalEntryNotFoundError):
        cause = "HF_HUB_OFFLINE is set" if constants.is_offline_mode() else "the Hub cannot be reached"
        return (f"not in Hugging Face's cache ({constants.HF_HUB_CACHE}) and {cause}: download it once online "
                "(or point HF_HUB_CACHE at a cache that holds it)")
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"cannot download from the Hugging Face Hub: {type(error).__name__}: {first}"


def _check_repo_id(repo_id: str, ref: str) -> None:
    _import_hub()
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ConfigError(f"not a Hub repository name: {str(e).splitlines()[0]}", path=ref) from None


def _import_hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError(f"hf:// models need huggingface_hub: {INSTALL_HINT}") from None
    return huggingface_hub
