"""Prediction on Ray Data (tagger/serving/ray_data.py, `tagger predict --ray`): the same entities as `tagger predict`, keyed
by file and line, through dying workers, bad shards and a small object store.

One local Ray (2 CPUs, a small object store) serves the whole module: starting Ray costs seconds. Its workers
run `_die_once`, which makes the first actor that meets DIE_LINE exit, as a crashed or killed worker does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import signal
import threading
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is the [ray] extra: pip install bilstm-tagger[ray]")
import pyarrow as pa  # noqa: E402  (installed with ray[data])
import pyarrow.parquet as pq  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cli.main import app  # noqa: E402
from conftest import make_sentences  # noqa: E402
from tagger.serving import ray_data as cluster  # noqa: E402
from tagger.api import Tagger  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OBJECT_STORE = 80 * 1024 * 1024  # Ray's minimum is 75 MiB
DIE_LINE = "Mary visited Rome and this worker dies ."
UNICODE_LINES = ["Angela Merkel 😀 visited Paris .", "東京 Siemens AG hired John Smith .",
                 "Zoe\u0301 met Anna in Berlin .", "", "e\u0301\u0301 Paul Jones works for Acme Corp in Rome .",
                 "\U0001F1E9\U0001F1EA Peter Brown visited New York ."]


def _die_once() -> None:
    """Worker set-up hook: the first actor to tag DIE_LINE exits at once (marker file: only the first)."""
    from tagger.serving import ray_data as c

    real = c.TagBatches.__call__

    def call(self, batch):
        marker = os.environ["TAGGER_TEST_DIE_MARKER"]
        if DIE_LINE in batch.column(self.text_column).to_pylist() and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return real(self, batch)

    c.TagBatches.__call__ = call


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    marker = tmp_path_factory.mktemp("ray") / "died"
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init installs its own, which would outlive these tests
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hook travels by value
    ray.init(num_cpus=2, object_store_memory=OBJECT_STORE, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _die_once,
                          "env_vars": {"TAGGER_TEST_DIE_MARKER": str(marker), "PYTHONPATH": str(ROOT)}})
    yield marker
    ray.shutdown()
    signal.signal(signal.SIGTERM, sigterm)


def write_lines(path: Path, lines: list[str], newline: str = "\n") -> Path:
    path.write_bytes(newline.join(lines).encode("utf-8"))
    return path


def single_process(model: Path, shard: Path) -> list[dict]:
    """What plain `tagger predict MODEL shard` writes: one {"text", "entities"} per line."""
    run = subprocess.run([sys.executable, "-m", "cli.main", "predict", str(model), str(shard)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return [json.loads(line) for line in run.stdout.splitlines()]


def read_jsonl_dir(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(out.iterdir()) for line in f.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tagged(local_ray, trained_model, tmp_path_factory):
    """Four text shards (one empty, one Unicode, one whose DIE_LINE kills a worker) through tag_files."""
    root = tmp_path_factory.mktemp("shards")
    shards = root / "in"
    shards.mkdir()
    plain = [" ".join(tokens) for tokens, _ in make_sentences(300, seed=5)]
    write_lines(shards / "a.txt", plain[:200])
    write_lines(shards / "b.txt", [])
    write_lines(shards / "c.txt", UNICODE_LINES, newline="\r\n")
    write_lines(shards / "d.txt", [*plain[200:250], DIE_LINE, *plain[250:]])
    cluster.tag_files(trained_model, [str(shards / "*.txt")], root / "out", batch_size=32, concurrency=2)
    return shards, read_jsonl_dir(root / "out")


def test_output_equals_single_process_predict_keyed_by_file_and_line(tagged, trained_model):
    shards, rows = tagged
    expected = {(str(shard), n): record for shard in sorted(shards.iterdir())
                for n, record in enumerate(single_process(trained_model, shard), start=1)}
    got = {(r["file"], r["line"]): {"text": r["text"], "entities": r["entities"]} for r in rows}
    assert got == expected
    assert not any(file.endswith("b.txt") for file, _ in got)  # the empty shard: no rows, no error
    assert any(r["entities"] for r in rows)  # the model does find entities: the comparison is not of empties


def test_unicode_lines_keep_their_code_point_offsets(tagged):
    _, rows = tagged
    unicode = sorted((r for r in rows if r["file"].endswith("c.txt")), key=lambda r: r["line"])
    assert [r["text"] for r in unicode] == UNICODE_LINES  # \r\n ends dropped, combining marks kept
    spans = [e for r in unicode for e in r["entities"]]
    assert spans
    for r in unicode:
        for e in r["entities"]:
            assert r["text"][e["start"]:e["end"]] == e["text"]


def test_a_worker_that_dies_has_its_batch_retried_and_nothing_duplicated(tagged, local_ray):
    _, rows = tagged
    assert local_ray.exists()  # an actor really exited on DIE_LINE
    keys = [(r["file"], r["line"]) for r in rows]
    assert len(keys) == len(set(keys)) == 200 + len(UNICODE_LINES) + 101
    assert [r["text"] for r in rows if r["file"].endswith("d.txt") and r["line"] == 51] == [DIE_LINE]


def test_jsonl_shards_keep_their_fields(local_ray, trained_model, tmp_path):
    lines = ["John Smith visited Paris .", "it rained all day ."]
    shard = tmp_path / "docs.jsonl"
    shard.write_text("".join(json.dumps({"id": f"doc-{i}", "body": t}) + "\n" for i, t in enumerate(lines)))
    cluster.tag_files(trained_model, [str(shard)], tmp_path / "out", input_format="jsonl", text_column="body")
    rows = sorted(read_jsonl_dir(tmp_path / "out"), key=lambda r: r["line"])
    expected = Tagger.load(trained_model).predict(lines)
    assert [(r["id"], r["body"], r["line"], r["entities"]) for r in rows] == [
        ("doc-0", lines[0], 1, expected[0]), ("doc-1", lines[1], 2, expected[1])]


def test_parquet_in_parquet_out_round_trips_the_entities(local_ray, trained_model, tmp_path):
    texts = [" ".join(tokens) for tokens, _ in make_sentences(20, seed=9)]
    pq.write_table(pa.table({"doc_id": list(range(20)), "text": texts}), tmp_path / "part-0.parquet")
    cluster.tag_files(trained_model, [str(tmp_path / "part-0.parquet")], tmp_path / "out",
                          input_format="parquet", output_format="parquet")
    table = pq.read_table(tmp_path / "out").sort_by("doc_id")
    assert table.schema.field("entities").type == cluster.entities_type()
    assert table.column("doc_id").to_pylist() == list(range(20))
    assert table.column("line").to_pylist() == list(range(1, 21))  # Parquet: the row in its file
    assert table.column("entities").to_pylist() == Tagger.load(trained_model).predict(texts)


def test_scores_through_ray_are_the_api_s(local_ray, trained_model, tmp_path):
    texts = [" ".join(tokens) for tokens, _ in make_sentences(12, seed=4)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "part-0.parquet")
    cluster.tag_files(trained_model, [str(tmp_path / "part-0.parquet")], tmp_path / "out",
                          input_format="parquet", output_format="parquet", scores=True)
    table = pq.read_table(tmp_path / "out").sort_by("line")
    assert table.schema.field("entities").type == cluster.entities_type(scores=True)
    got = table.column("entities").to_pylist()
    expected = Tagger.load(trained_model).predict(texts, scores=True)
    assert [[e["label"] for e in row] for row in got] == [[e["label"] for e in row] for row in expected]
    for row, want in zip(got, expected):
        assert [e["score"] for e in row] == pytest.approx([e["score"] for e in want], abs=1e-9)
    assert any(row for row in got)


# -- mistakes: one line naming the shard, never a gap in the output ---------------------------------------

runner = CliRunner()


def tagger(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert [line for line in lines if "error" in line.lower()] == lines[-1:], result.stderr
    for fragment in fragments:
        assert fragment in lines[-1]


def test_invalid_utf8_shard_is_an_error_naming_it_and_its_line(local_ray, trained_model, tmp_path):
    write_lines(tmp_path / "good.txt", ["John Smith visited Paris ."])
    (tmp_path / "bad.txt").write_bytes(b"Mary visited Rome .\nPar\xffis\n")
    result = tagger("predict", trained_model, tmp_path / "*.txt", "--ray", "--output", tmp_path / "out")
    assert_one_line_error(result, f"{tmp_path / 'bad.txt'}:2: invalid UTF-8")
    assert not (tmp_path / "out").exists()  # no partial output that looks complete


def test_parquet_shard_without_the_text_column_is_an_error_naming_it(local_ray, trained_model, tmp_path):
    pq.write_table(pa.table({"text": ["John Smith visited Paris ."]}), tmp_path / "ok.parquet")
    pq.write_table(pa.table({"body": ["Mary visited Rome ."]}), tmp_path / "other.parquet")
    result = tagger("predict", trained_model, tmp_path, "--ray", "--input-format", "parquet",
                    "--output", tmp_path / "out")
    assert_one_line_error(result, str(tmp_path / "other.parquet"), "no column 'text'", "--text-column")


@pytest.mark.parametrize("args, fragment", [
    (["--input-format", "jsonl"], "jsonl input or output needs --ray"),
    (["--output-format", "parquet"], "parquet input or output needs --ray"),
    (["--address", "auto"], "--address names a Ray cluster"),
    (["--ray", "--output-format", "conll", "--output", "OUT"], "--ray writes jsonl or parquet"),
    (["--ray"], "give --output OUT_DIR"),
])
def test_option_combinations_that_cannot_work_are_refused(trained_model, tmp_path, args, fragment):
    write_lines(tmp_path / "a.txt", ["John Smith visited Paris ."])
    result = tagger("predict", trained_model, tmp_path / "a.txt", *[a.replace("OUT", str(tmp_path / "o"))
                                                                     for a in args])
    assert_one_line_error(result, fragment)


def test_without_ray_installed_ray_names_the_extra(trained_model, tmp_path, monkeypatch):
    write_lines(tmp_path / "a.txt", ["John Smith visited Paris ."])
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    result = tagger("predict", trained_model, tmp_path / "a.txt", "--ray", "--output", tmp_path / "out")
    assert_one_line_error(result, "pip install bilstm-tagger[ray]")


# -- memory ------------------------------------------------------------------------------------------------

def spilled_bytes() -> int:
    """Bytes Ray has spilled from the object store to disk, now (its files in the session's spill directory)."""
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    return sum(f.stat().st_size for d in session.glob("ray_spilled_objects*") for f in d.rglob("*") if f.is_file())


def rss_bytes() -> int:
    """This (the driver's) process's resident memory now."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024


def test_memory_stays_bounded_on_a_corpus_larger_than_the_object_store(local_ray, trained_model, tmp_path):
    """Streamed: the driver never holds the corpus, and the object store (80 MiB) never holds it all, which
    would spill at least the corpus's size to disk (a materialising pipeline holds input and output)."""
    rows, payload = 25_000, "x" * 4000  # ~100 MB of JSONL: more than the whole 80 MiB object store
    shard = tmp_path / "big.jsonl"
    with shard.open("w") as f:
        for i in range(rows):
            f.write(json.dumps({"text": "John visited Paris .", "meta": payload, "n": i}) + "\n")
    size = shard.stat().st_size
    assert size > OBJECT_STORE
    spilled_before, rss_before = spilled_bytes(), rss_bytes()
    peak = {"spilled": 0, "rss": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak["spilled"] = max(peak["spilled"], spilled_bytes() - spilled_before)
            peak["rss"] = max(peak["rss"], rss_bytes() - rss_before)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        cluster.tag_files(trained_model, [str(shard)], tmp_path / "out", input_format="jsonl", batch_size=512)
    finally:
        done.set()
        sampler.join()
    assert peak["rss"] < size / 4, peak  # the driver streams: it never gathers rows
    assert peak["spilled"] < size, peak  # the store held part of the corpus at a time, never all of it
    lines = sum(1 for f in (tmp_path / "out").iterdir() for _ in f.open())
    assert lines == rows
