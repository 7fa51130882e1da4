"""The Label Studio backend's /predict under a large request: how long it takes, and how long /health waits
meanwhile (it used to tag on the event loop: /health waited as long as the predict, 25.3 s for 1 MB).

    python bench/labelstudio.py --model M --data ../shared/data/conll2003 --kb 400 --output bench/results-labelstudio.json

Starts `tagger serve M --label-studio WORKDIR --workers 1 --token-file T` (Basic auth, as Label Studio
connects), sends one /labelstudio/predict of CoNLL-2003 test sentences as tasks (about --kb KB of text, under
the server's --max-request-tokens), and polls GET /health from a second client while it is answered. Prints
and appends one JSON line: tasks, tokens, predict seconds, and /health polls with their median and largest
latency. Run it alone on the machine: the figures are timings.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from serve import free_port, test_sentences  # noqa: E402

CONFIG = ('<View><Labels name="ner" toName="doc"><Label value="PER"/><Label value="LOC"/><Label value="ORG"/>'
          '<Label value="MISC"/></Labels><Text name="doc" value="$text"/></View>')
TOKEN = "bench-token"


def tasks(data: Path, kb: int) -> list[dict]:
    """CoNLL-2003 test sentences as Label Studio tasks, repeated until they hold `kb` KB of text."""
    texts = [" ".join(s) for s in test_sentences(data)]
    out, size = [], 0
    while size < kb * 1000:
        text = texts[len(out) % len(texts)]
        out.append({"id": len(out) + 1, "data": {"text": text}})
        size += len(text.encode("utf-8")) + 1
    return out


def start(model: Path, work: Path) -> tuple[subprocess.Popen, httpx.Client]:
    (work / "token").write_text(TOKEN, encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "cli.main", "serve", str(model), "--port", str(port), "--workers", "1",
               "--label-studio", str(work / "ls"), "--token-file", str(work / "token"), "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600, auth=("label-studio", TOKEN))
    for _ in range(600):
        try:
            if client.get("/health").status_code == 200:
                return process, client
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--kb", type=int, default=400, help="KB of text in the one predict request")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    body = {"tasks": tasks(args.data, args.kb), "label_config": CONFIG}
    with tempfile.TemporaryDirectory(prefix="bench-labelstudio-") as work:
        process, client = start(args.model, Path(work))
        try:
            done, polls, answer = threading.Event(), [], {}

            def predict() -> None:
                begin = time.perf_counter()
                answer["response"] = client.post("/labelstudio/predict", json=body)
                answer["seconds"] = time.perf_counter() - begin
                done.set()

            thread = threading.Thread(target=predict)
            thread.start()
            with httpx.Client(base_url=client.base_url, timeout=600) as health:
                while not done.is_set():
                    begin = time.perf_counter()
                    health.get("/health")
                    polls.append(time.perf_counter() - begin)
                    time.sleep(0.05)
            thread.join()
        finally:
            process.terminate()
            process.wait(60)
    response = answer["response"]
    if response.status_code != 200:
        raise SystemExit(f"predict answered {response.status_code}: {response.text[:200]}")
    result = {"bench": "labelstudio-predict", "tasks": len(body["tasks"]), "kb": args.kb,
              "tokens": sum(len(t["data"]["text"].split()) for t in body["tasks"]),
              "predict_s": round(answer["seconds"], 3), "health_polls": len(polls),
              "health_p50_ms": round(1000 * statistics.median(polls), 2) if polls else None,
              "health_max_ms": round(1000 * max(polls), 2) if polls else None}
    print(json.dumps(result))
    if args.output:
        with open(args.output, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
