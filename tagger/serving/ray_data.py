"""Prediction on Ray Data: the same model over a laptop's cores or a cluster's nodes.

Ray schedules, streams and retries; this module only says what one actor does (load the model once, tag
batches of texts with one BLAS thread) and how shards of text, JSONL and Parquet become rows that carry
their source file and line. Ray is an optional extra (`pip install bilstm-tagger[ray]`): it is imported
here, inside functions, so that the rest of the package works without it.

    >>> import ray.data
    >>> ds = ray.data.from_items([{"id": 7, "text": "Angela Merkel visited Paris."}])
    >>> tag_dataset(ds, "model_dir").take_all()
    [{'id': 7, 'text': '...', 'entities': [{'start': 0, 'end': 13, 'label': 'PER', 'text': 'Angela Merkel'}, ...]}]
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tagger.errors import ConfigError, InputError, TaggerError
from tagger.store import FILES
from tagger.serving.shards import SOURCE_COLUMNS, shard_datasource

if TYPE_CHECKING:
    import pyarrow
    import ray.data

INPUT_FORMATS = ("text", "jsonl", "parquet")
OUTPUT_FORMATS = ("jsonl", "parquet")
RAY_ONLY_INPUTS = ("jsonl", "parquet")
RAY_ONLY_OUTPUTS = ("parquet",)
INSTALL_HINT = "pip install bilstm-tagger[ray]"


def import_ray():
    """The `ray` module with Ray Data, or a one-line ConfigError saying which extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(f"--ray needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray


def quiet_ray_data_logs() -> None:
    """Ray Data's console logs (progress, and a task's traceback before the driver re-raises it) off, for the
    CLI, which prints a user's error as one line. Process-wide: for commands, not for library callers."""
    import logging

    import_ray()  # Ray Data sets its loggers up when imported: after that, or they would be reset
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def entities_type(scores: bool = False) -> "pyarrow.DataType":
    """Arrow type of the `entities` column: a list of {start, end, label, text} structs per row (and "score",
    the entity's probability, with `scores`).

    Explicit so that a batch without any entity still has the same schema (not list<null>): Parquet shards
    then share one schema, and JSONL holds the plain objects `tagger predict` writes."""
    import pyarrow as pa

    fields = [("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("text", pa.string())]
    return pa.list_(pa.struct(fields + ([("score", pa.float64())] if scores else [])))


# -- the actor --------------------------------------------------------------------------------------------

class TagBatches:
    """A Ray Data actor: one loaded numpy-engine Tagger and one BLAS thread, fed pyarrow batches.

    The model comes as its files' bytes (by reference, from the object store), so workers need no access
    to the driver's model directory. Its BLAS thread limit is held for the actor's life: Ray gives each
    actor one CPU (num_cpus=1), and more threads per actor would only contend with the other actors."""

    def __init__(self, model_ref: list, text_column: str, batch_size: int, scores: bool = False,
                 min_score: float | None = None):
        import ray
        from threadpoolctl import threadpool_limits

        self._threads = threadpool_limits(limits=1)  # kept: released only when the actor process ends
        self.tagger = load_from_files(ray.get(model_ref[0]))
        self.batch_size = batch_size
        self.scores, self.min_score = scores or min_score is not None, min_score
        self.text_column = text_column

    def __call__(self, batch: "pyarrow.Table") -> "pyarrow.Table":
        import pyarrow as pa

        texts = batch.column(self.text_column).to_pylist()
        if None in texts:
            raise InputError(f"no {self.text_column!r} value (null) in {_where(batch, texts.index(None))}")
        entities = self.tagger.predict(texts, self.scores, self.min_score, self.batch_size)
        return batch.append_column("entities", pa.array(entities, type=entities_type(self.scores)))


def _where(batch: "pyarrow.Table", row: int) -> str:
    """`file:line` of a batch's row when it has the source columns, else its position in the batch."""
    if all(c in batch.column_names for c in SOURCE_COLUMNS):
        return f"{batch.column('file')[row].as_py()}:{batch.column('line')[row].as_py()}"
    return f"row {row} of a batch"


def model_files(model_dir: str | os.PathLike) -> dict[str, bytes]:
    """The model directory's files, checked by loading them once here (a bad model fails on the driver,
    with its one-line ModelError, before any actor starts)."""
    from tagger.tagging.tagger import Tagger

    Tagger.load(model_dir)
    return {name: (Path(model_dir) / name).read_bytes() for name in FILES}


def load_from_files(files: dict[str, bytes]):
    """A numpy-engine Tagger from a model directory's files (written to a temporary directory, then read)."""
    from tagger.tagging.tagger import Tagger

    with tempfile.TemporaryDirectory(prefix="tagger-model-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return Tagger.load(tmp)


ROWS_PER_CALL = 4096  # rows an actor tags per call, in batches of `batch_size` sentences: as `tagger predict`
                      # tags CHUNK_LINES lines at a time, so that Ray's per-call overhead is amortised


def tag_dataset(ds: "ray.data.Dataset", model_dir: str | os.PathLike, text_column: str = "text",
                batch_size: int = 256, concurrency: int = 2, scores: bool = False,
                min_score: float | None = None) -> "ray.data.Dataset":
    """`ds` with an `entities` column: the spans `Tagger.predict` finds in each row's `text_column`
    (with `scores`, each with its probability; `min_score` drops those below it).

    Every other column is kept (ids, metadata, source file and line). Lazy, like any Ray Data transform:
    nothing runs until the dataset is written or iterated. `concurrency` actors, one CPU each, each holding
    the model (shipped from `model_dir` on the driver through the object store) and one BLAS thread.
    When the actors take every CPU, read `ds` with `num_cpus=0` (as tag_files does), or Ray has no CPU
    left to run the reads on and waits forever."""
    ray = import_ray()
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    names = ds.columns(fetch_if_missing=False)
    if names is not None and text_column not in names:
        raise InputError(f"no column {text_column!r} (columns: {', '.join(names)}): choose one with --text-column")
    model_ref = [ray.put(model_files(model_dir))]  # in a list: Ray hands the constructor the ref, not the bytes
    return ds.map_batches(TagBatches, fn_constructor_args=(model_ref, text_column, batch_size, scores, min_score),
                          batch_size=max(batch_size, ROWS_PER_CALL), batch_format="pyarrow", num_cpus=1,
                          compute=ray.data.ActorPoolStrategy(size=concurrency))


# -- the job -------------------------------------------------------------------------------------------------

def check_formats(input_format: str, output_format: str | None, ray: bool, address: str | None = None) -> None:
    """Refuse format combinations that cannot work, with or without --ray, before anything starts."""
    if not ray:
        if address:
            raise ConfigError("--address names a Ray cluster: it needs --ray")
        if input_format in RAY_ONLY_INPUTS or output_format in RAY_ONLY_OUTPUTS:
            fmt = input_format if input_format in RAY_ONLY_INPUTS else output_format
            raise ConfigError(f"{fmt} input or output needs --ray (with --output OUT_DIR)")
        return
    if input_format not in INPUT_FORMATS:
        raise ConfigError(f"--ray reads {', '.join(INPUT_FORMATS)} input, not {input_format}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"--ray writes {' or '.join(OUTPUT_FORMATS)} shards, not {output_format}")


def resolve_inputs(refs: Sequence[str]) -> list[str]:
    """Files, directories or globs; local ones checked and globs expanded here, URIs (s3://...) left to Ray."""
    paths: list[str] = []
    for ref in refs:
        if ref == "-":
            raise InputError("--ray reads files, directories or globs, not standard input")
        if "://" in ref:
            paths.append(ref)
        elif glob.has_magic(ref):
            found = sorted(glob.glob(ref, recursive=True))
            if not found:
                raise InputError("no file matches this pattern", path=ref)
            paths += found
        elif not Path(ref).exists():
            raise InputError("no such file or directory", path=ref)
        else:
            paths.append(str(Path(ref).resolve()))
    return paths


def check_shard_dir(output: str) -> None:
    if "://" in output:
        return
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise InputError("exists and is not a directory", path=output)
    if path.is_dir() and any(path.iterdir()):
        raise InputError("already exists and is not empty: choose a new or empty output directory", path=output)


def tag_files(model: str | os.PathLike, inputs: Sequence[str], output: str | os.PathLike | None,
                  input_format: str = "text", output_format: str = "jsonl", text_column: str = "text",
                  batch_size: int = 256, concurrency: int = 0, address: str | None = None, scores: bool = False,
                  min_score: float | None = None) -> None:
    """Tag text, JSONL or Parquet shards on Ray and write JSONL or Parquet shards into the directory `output`.

    Each output row is its input row (for text: `text`) plus `file`, `line` (1-based; for Parquet the row)
    and `entities`; shards are written as blocks finish, so sort by (file, line) to restore input order.
    address: None starts a local Ray on this machine's cores; "auto" or "ray://host:10001" joins a cluster
    (a Ray already initialised in this process is used as it is). concurrency: actors, 0 for one per CPU
    in the cluster. A local `output` appears only once complete (written beside it, then renamed)."""
    check_formats(input_format, output_format, ray=True)
    if output is None:
        raise ConfigError("--ray writes shards into a directory: give --output OUT_DIR")
    if not inputs:
        raise ConfigError("--ray reads files, directories or globs: give at least one INPUT")
    ray = import_ray()
    paths = resolve_inputs(inputs)
    output = str(output)
    check_shard_dir(output)
    started = not ray.is_initialized()
    if started:
        # workers' own logs stay in Ray's session logs: a user error comes back here as an exception
        ray.init(address=address, logging_level="WARNING", include_dashboard=False, log_to_driver=False)
    try:
        concurrency = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Reading and writing are light next to tagging: their tasks ask for no CPU, or the actors (one CPU
        # each, `concurrency` of them: every CPU by default) would leave them none and the job would wait forever.
        ds = ray.data.read_datasource(shard_datasource(paths, input_format, text_column), num_cpus=0)
        ds = tag_dataset(ds, model, text_column="text" if input_format == "text" else text_column,
                         batch_size=batch_size, concurrency=concurrency, scores=scores, min_score=min_score)
        with _staged(output) as target:
            _run(lambda: getattr(ds, f"write_{'json' if output_format == 'jsonl' else 'parquet'}")(
                target, **_write_args(output_format)))
    finally:
        if started:
            ray.shutdown()


def _write_args(output_format: str) -> dict:
    args: dict = {"ray_remote_args": {"num_cpus": 0}}
    if output_format == "jsonl":  # pandas' to_json, one object a line: UTF-8 kept readable
        args["force_ascii"] = False
    return args


def _run(job) -> None:
    """Run a Ray job; a user error raised in a task or actor (an InputError naming a shard) comes back as
    itself, one line, instead of Ray's wrapped traceback (a RayTaskError, which may also be an InputError
    subclass whose message holds the task's traceback)."""
    try:
        job()
    except Exception as e:
        cause = _user_error(e)
        if cause is None:
            raise
        # Ray Data appends lines about its retries to the message: ours is its first line, as raised
        raise type(cause)(str(cause).splitlines()[0]) from None


def _user_error(e: BaseException | None) -> TaggerError | None:
    """The TaggerError a task raised, from the exception the driver got (its `.cause` or `__cause__` chain)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        nested = getattr(e, "cause", None)  # ray.exceptions.RayTaskError: the task's own exception
        if isinstance(nested, TaggerError):
            return _user_error(nested) or nested
        if isinstance(e, TaggerError) and not isinstance(nested, BaseException):
            return e
        e = nested if isinstance(nested, BaseException) else (e.__cause__ or e.__context__)
    return None


class _staged:
    """Write into a temporary directory beside a local `output` and rename it into place when complete
    (a failed job leaves no half-written output); URIs are written in place."""

    def __init__(self, output: str):
        self.output, self.tmp = output, None

    def __enter__(self) -> str:
        if "://" in self.output:
            return self.output
        path = Path(self.output).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = str(path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp")
        os.mkdir(self.tmp)  # not mkdtemp: the output gets the usual permissions (umask), not 0700
        return self.tmp

    def __exit__(self, kind, value, tb) -> None:
        if self.tmp is None:
            return
        if kind is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        path = Path(self.output)
        if path.is_dir():
            path.rmdir()  # empty: checked before the job
        os.replace(self.tmp, path)
