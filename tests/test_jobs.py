"""Streaming prediction: chunks, worker processes and quantisation keep the output and its order."""
import json

from tagger import jobs


def write_lines(path, n):
    lines = [f"Line {i} : Anna Novak visited Veldmark with {i} friends ." for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def test_output_keeps_input_order_across_chunks_and_workers(trained_model, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "CHUNK_LINES", 7)  # many small chunks in flight at once
    lines = write_lines(tmp_path / "in.txt", 60)
    jobs.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / "one.jsonl", workers=1)
    jobs.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / "two.jsonl", workers=2)
    one = (tmp_path / "one.jsonl").read_text(encoding="utf-8")
    assert one == (tmp_path / "two.jsonl").read_text(encoding="utf-8")
    assert [json.loads(line)["text"] for line in one.splitlines()] == lines


def test_auto_workers_use_every_core_only_for_large_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text("a b c\n")
    large.write_bytes(b"a b c\n" * (jobs.PARALLEL_BYTES // 6 + 1))
    assert jobs.auto_workers([str(small)]) == 1
    assert jobs.auto_workers(["-"]) == 1  # standard input: size unknown
    assert jobs.auto_workers([str(small), str(large)]) == 3


def test_quantized_model_tags_every_line_with_valid_offsets(trained_model, tmp_path):
    lines = write_lines(tmp_path / "in.txt", 20)
    jobs.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / "q.jsonl", quantize=True)
    out = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [o["text"] for o in out] == lines
    for o in out:
        assert all(o["text"][e["start"] : e["end"]] == e["text"] for e in o["entities"])


def test_parallel_prediction_leaves_the_garbage_collector_as_it_found_it(trained_model, tmp_path, monkeypatch):
    import gc

    monkeypatch.setattr(jobs, "CHUNK_LINES", 7)
    write_lines(tmp_path / "in.txt", 30)
    jobs.predict(trained_model, [str(tmp_path / "in.txt")], output=tmp_path / "out.jsonl", workers=2)
    assert gc.get_freeze_count() == 0  # objects frozen for the fork are collectable again
