"""Streaming prediction: chunks and worker processes keep the output and its order; nothing outlives a call."""
import json
import os

import pytest

from threadpoolctl import threadpool_info, threadpool_limits

from tagger import commands

from tagger.tagging import streaming
from tagger.api import Tagger


def write_lines(path, n):
    lines = [f"Line {i} : Anna Novak visited Veldmark with {i} friends ." for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_output_keeps_input_order_across_chunks_and_workers(trained_model, tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "CHUNK_LINES", 7)  # many small chunks in flight at once
    lines = write_lines(tmp_path / "in.txt", 60)
    commands.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / "one.jsonl", workers=1)
    commands.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / "two.jsonl", workers=2)
    one = (tmp_path / "one.jsonl").read_text(encoding="utf-8")
    assert one == (tmp_path / "two.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line)["text"] for line in one.splitlines()] == lines
    for record in map(json.loads, one.splitlines()):
        assert all(record["text"][e["start"] : e["end"]] == e["text"] for e in record["entities"])


def test_workers_score_as_one_process_does(trained_model, tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "CHUNK_LINES", 7)
    write_lines(tmp_path / "in.txt", 30)
    for workers in (1, 2):
        commands.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / f"{workers}.jsonl", workers=workers,
                     scores=True, n_best=2)
    one = (tmp_path / "1.jsonl").read_text(encoding="utf-8")
    assert one == (tmp_path / "2.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in one.splitlines()]
    assert all("score" in e for r in records for e in r["entities"]) and all(r["alternatives"] for r in records)


def test_auto_workers_use_every_core_only_for_large_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(streaming.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("a b c\n")
    large.write_bytes(b"a b c\n" * (streaming.PARALLEL_BYTES // 6 + 1))
    assert streaming.auto_workers([str(small)]) == 1
    assert streaming.auto_workers(["-"]) == 1  # standard input: size unknown
    assert streaming.auto_workers([str(small), str(large)]) == 3


def test_prediction_leaves_no_state_behind(trained_model, tmp_path, monkeypatch):
    import gc

    monkeypatch.setattr(streaming, "CHUNK_LINES", 7)
    write_lines(tmp_path / "in.txt", 30)
    blas_before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    environ, frozen = dict(os.environ), gc.get_freeze_count()
    commands.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / "out.jsonl", workers=2)
    commands.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / "out1.jsonl", workers=1, force=True)
    assert gc.get_freeze_count() == frozen  # collector tuning is the CLI's, not the library's
    assert dict(os.environ) == environ
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == blas_before


def test_workers_take_sigterms_default_whatever_handler_the_caller_has():
    """ray.init leaves a SIGTERM handler (sys.exit) behind; forked workers inherited it, and once one of them
    outlived the pool's terminate(), which then waited for it forever. Killed by default, they cannot."""
    import multiprocessing as mp
    import signal

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        with mp.get_context("fork").Pool(1, initializer=streaming._set_job, initargs=((),)) as pool:
            assert pool.apply(signal.getsignal, (signal.SIGTERM,)) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_tagging_runs_blas_on_one_thread_and_restores_it(trained_model, monkeypatch):
    from tagger.tagging import engine

    seen = []
    real = engine.Engine.tag

    def tag(self, batch):
        seen.append([lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"])
        return real(self, batch)

    monkeypatch.setattr(engine.Engine, "tag", tag)
    tagger = Tagger.load(trained_model)
    with threadpool_limits(limits=2, user_api="blas"):  # what the caller had: two threads
        tagger.predict("Anna Novak visited Veldmark .")
        after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert seen and all(threads == [1] * len(threads) for threads in seen)
    assert after and after == [2] * len(after)


def test_tagging_changes_nothing_in_the_tagger(trained_model):
    """The pipeline reads a Tagger and never writes to it (it once stored its BLAS controller there)."""
    tagger = Tagger.load(trained_model)
    before = dict(vars(tagger))
    tagger.predict(["Anna Novak visited Veldmark .", "Bo went home ."], scores=True)
    tagger.predict_tokens([["Anna", "Novak"]])
    tagger.marginals([["Anna", "Novak"]])
    assert vars(tagger).keys() == before.keys()
    assert all(vars(tagger)[name] is value for name, value in before.items())


def test_a_conll_file_given_as_raw_text_is_tagged_with_one_warning(trained_model, tmp_path, capsys):
    conll = tmp_path / "doc.txt"
    conll.write_text("-DOCSTART- O\n\nJohn B-PER\nSmith I-PER\nvisited O\n\nMary B-PER\n", encoding="utf-8")
    warnings = []
    commands.predict(trained_model, [str(conll)], output=tmp_path / "out.jsonl", warn=warnings.append)
    assert len(warnings) == 1 and str(conll) in warnings[0] and "--input-format conll" in warnings[0]
    assert len((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()) == 7  # still one record a line
    plain = tmp_path / "plain.txt"
    write_lines(plain, 5)
    commands.predict(trained_model, [str(plain)], output=tmp_path / "plain.jsonl", warn=warnings.append)
    assert len(warnings) == 1  # raw text: no warning


def read_line_within(stream, seconds: float) -> str:
    """One line from a subprocess's pipe, or "" if none came within `seconds`."""
    import select

    ready, _, _ = select.select([stream], [], [], seconds)
    return stream.readline().decode("utf-8") if ready else ""


@pytest.mark.parametrize("options", [[], ["--workers", "2"], ["--input-format", "tokens", "--scores"]])
def test_a_pipe_held_open_gets_each_line_s_result_as_it_comes(options, trained_model):
    """`tail -f log | tagger predict MODEL`: standard input stays open, yet each line's result comes out."""
    import subprocess
    import sys
    from pathlib import Path

    command = [sys.executable, "-m", "cli.main", "predict", str(trained_model), *options]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          cwd=Path(__file__).parent.parent) as process:
        try:
            for text in ("Anna Novak visited Veldmark .", "John Smith met Mary ."):
                process.stdin.write(f"{text}\n".encode("utf-8"))
                process.stdin.flush()
                record = json.loads(read_line_within(process.stdout, 60) or "null")
                assert record is not None, "no result while standard input stays open"
                assert record.get("text", " ".join(record.get("tokens", []))) == text
            process.stdin.close()
            assert process.wait(60) == 0, process.stderr.read().decode()
            assert process.stdout.read() == b""  # one result a line, nothing held back
        finally:
            process.kill()



@pytest.mark.parametrize("name,asked,first", [("out.html", None, "<!DOCTYPE html>"), ("out.conll", None, "Anna"),
                                              ("out.jsonl", None, '{"text"'), ("out.txt", "html", "<!DOCTYPE html>")])
def test_the_output_s_extension_chooses_its_format(trained_model, tmp_path, name, asked, first):
    source = tmp_path / "in.txt"
    source.write_text("Anna visited Paris .\n", encoding="utf-8")
    commands.predict(trained_model, [str(source)], output_format=asked, output=tmp_path / name)
    assert (tmp_path / name).read_text(encoding="utf-8").startswith(first)


def test_an_extension_that_disagrees_with_output_format_is_refused(trained_model, tmp_path):
    from tagger.errors import ConfigError

    with pytest.raises(ConfigError, match=r"out\.html ends in \.html.*--output-format is jsonl"):
        commands.predict(trained_model, ["-"], output_format="jsonl", output=tmp_path / "out.html")
    assert not (tmp_path / "out.html").exists()


def test_gzipped_text_is_tagged_as_the_plain_text(trained_model, tmp_path):
    import gzip

    plain, packed = tmp_path / "news.txt", tmp_path / "news.txt.gz"
    write_lines(plain, 30)
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    counted = []
    for source in (plain, packed):
        commands.predict(trained_model, [str(source)], output=tmp_path / f"{source.name}.jsonl",
                         progress=lambda units, tokens: counted.append((units, tokens)))
    assert (tmp_path / "news.txt.jsonl").read_bytes() == (tmp_path / "news.txt.gz.jsonl").read_bytes()
    assert counted[0] == counted[1] and counted[0][0] == 30 and counted[0][1] > 30  # lines, tokens
