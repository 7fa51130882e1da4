"""The bridge to Hugging Face `datasets`: sentences from a Dataset, and loading a corpus by reference.

`datasets` takes seconds to import, so it is imported inside the functions that need it: the CLI and the
CoNLL reader stay fast for users who never touch it.
"""
from __future__ import annotations

import os
import re
from typing import Any, Iterator

from corpora.conll import Sentence
from corpora.errors import CorpusError

TAG_FIELDS = ("ner_tags", "tags", "pos_tags", "chunk_tags")  # looked for in this order when none is named
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # written by DatasetDict / Dataset .save_to_disk
_BATCH = 1000
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_HUB_TIMEOUT = 10.0  # seconds for the one request that asks the hub whether a dataset exists


def from_dataset(ds: Any, tokens_field: str = "tokens", tags_field: str | None = None) -> Iterator[Sentence]:
    """Sentences from a Dataset split; tags from `tags_field` or the first of TAG_FIELDS present.

    ClassLabel ids become their names; string tags are kept. No tag field at all gives unlabelled
    sentences (tags None). Missing fields raise ValueError at once, not on the first `next()`.
    """
    if isinstance(ds.column_names, dict):
        raise ValueError(f"a DatasetDict has several splits ({', '.join(ds)}); pick one")
    columns = list(ds.column_names or [])
    if tokens_field not in columns:
        raise ValueError(f"no {tokens_field!r} column (columns: {', '.join(columns)})")
    if tags_field is not None and tags_field not in columns:
        raise ValueError(f"no {tags_field!r} column (columns: {', '.join(columns)})")
    if tags_field is None:
        tags_field = next((f for f in TAG_FIELDS if f in columns), None)
    return _sentences(ds, tokens_field, tags_field)


def _sentences(ds: Any, tokens_field: str, tags_field: str | None) -> Iterator[Sentence]:
    fields = [tokens_field] + ([tags_field] if tags_field else [])
    names = _label_names(ds, tags_field)
    for batch in ds.select_columns(fields).iter(batch_size=_BATCH):
        for i, tokens in enumerate(batch[tokens_field]):
            tags = None if tags_field is None else tuple(_tag_name(t, names) for t in batch[tags_field][i])
            yield Sentence(tuple(tokens), tags)


def _label_names(ds: Any, field: str | None) -> list[str] | None:
    """The ClassLabel names behind a sequence-of-ints column, or None when the column holds strings."""
    import datasets

    feature = (ds.features or {}).get(field) if field else None
    inner = getattr(feature, "feature", None)
    return inner.names if isinstance(inner, datasets.ClassLabel) else None


def _tag_name(tag: Any, names: list[str] | None) -> str:
    return names[tag] if names is not None and isinstance(tag, int) else str(tag)


def is_dataset_ref(ref: str) -> bool:
    """Whether `ref` names a dataset rather than a corpus file: a `save_to_disk` directory, or a missing
    path that looks like a hub name ("conll2003", "user/name", optionally ":split").

    A missing path with a file extension ("train.txt"), or in a local folder ("data/mytestset" where data/
    exists), is not a hub name, so its error stays "no such file".
    """
    if os.path.exists(ref):
        return _is_saved_dataset(ref)
    name, _, _ = ref.partition(":")
    if _is_saved_dataset(name):
        return True
    owner, slash, _ = name.partition("/")
    if slash and os.path.isdir(owner):
        return False
    return _HUB_NAME.fullmatch(name) is not None and not os.path.splitext(name)[1]


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in _SAVED_MARKERS)


def load_sentences(ref: str, split: str = "train", tags_field: str | None = None) -> Iterator[Sentence]:
    """Sentences of a dataset split: `ref` is a `save_to_disk` directory or a hub name, either optionally
    followed by ":split" (which wins over `split`). Every failure is a CorpusError naming `ref`."""
    name, explicit_split = _parse_ref(ref)
    try:
        if _is_saved_dataset(name):
            ds = _load_local(ref, name, explicit_split or split, explicit_split is not None)
        else:
            ds = _load_hub(ref, name, explicit_split or split)
        if len(ds) == 0:
            raise CorpusError(ref, None, "no sentences found")
        return from_dataset(ds, tags_field=tags_field)
    except CorpusError:
        raise
    except Exception as e:  # datasets raises many types; the user needs one clear line
        raise CorpusError(ref, None, f"cannot load the dataset: {e}") from e


def _parse_ref(ref: str) -> tuple[str, str | None]:
    """("dir or name", split or None): an existing path is taken whole, otherwise "name:split" is split."""
    if os.path.exists(ref):
        return ref, None
    name, sep, split = ref.partition(":")
    if sep and not split:
        raise CorpusError(ref, None, "empty split name after ':'")
    return name, split if sep else None


def _load_local(ref: str, path: str, split: str, explicit: bool) -> Any:
    import datasets

    loaded = datasets.load_from_disk(path)
    if not isinstance(loaded, datasets.DatasetDict):
        if explicit:
            raise CorpusError(ref, None, f"is a single dataset without splits; drop ':{split}'")
        return loaded
    if split not in loaded:
        raise CorpusError(ref, None, f"no split {split!r}; available splits: {', '.join(loaded)}")
    return loaded[split]


def _load_hub(ref: str, name: str, split: str) -> Any:
    """A split of a hub dataset. Offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE), only the local cache is read;
    online, one request asks the hub first, so a mistyped file name fails at once with "no such file"
    instead of after minutes of retries."""
    import datasets

    offline = _offline_variable()
    if offline is None:
        _check_on_hub(ref, name)
    try:
        return datasets.load_dataset(name, split=split)
    except (ConnectionError, FileNotFoundError) as e:
        if offline is None:
            raise
        raise CorpusError(ref, None, f"no such file, nor a dataset {name!r} in the local cache ({offline} is "
                          "set, so the Hugging Face hub was not asked)") from e


def _offline_variable() -> str | None:
    """The environment variable that forbids contacting the hub, if one is set to a true value."""
    truthy = ("1", "true", "yes", "on")
    return next((v for v in _OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in truthy), None)


def _check_on_hub(ref: str, name: str) -> None:
    """One request, no retries: CorpusError "no such file" when the hub does not know `name` or cannot be
    reached. Other answers (a gated dataset, a server error) are left to `datasets` to explain."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        HfApi().dataset_info(name, timeout=_HUB_TIMEOUT)
    except RepositoryNotFoundError:
        raise CorpusError(ref, None, "no such file, nor a dataset of that name on the Hugging Face hub") from None
    except HfHubHTTPError:
        return
    except Exception as e:  # the HTTP client's own connection and timeout errors
        raise CorpusError(ref, None, f"no such file (and the Hugging Face hub, where {name!r} could be a dataset, "
                          f"is unreachable: {type(e).__name__})") from None
