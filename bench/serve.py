"""`tagger serve` under load: requests/s, tokens/s, latency percentiles, errors and RSS, driven by `hey`
(Debian: apt-get install hey).

    flock /tmp/cpu.lock python bench/serve.py --model /tmp/serve-conll --data ../shared/data/conll2003 \
        --workers 2 --clients 1 64 --duration 30 --output bench/results-serve.json

One run measures first the library call (`Tagger.predict` on the same one-sentence body, --library-calls
times, in this process), then each server point. Each point starts a fresh `tagger serve MODEL --workers W` (plus --serve-args), warms it for 2 s, then runs
`hey -z DURATION -c CLIENTS` with one fixed body: a single sentence ({"text": ...}, the first CoNLL-2003
test sentence of --sentence-tokens tokens, 12 by default) or, with --sentences 100, {"texts": [100 test sentences]}. `hey` runs on
the same 2 cores as the server: its own CPU time is reported beside the server's. The server's RSS
(parent and workers summed) is read after the warm-up and at the end. A non-200 answer counts as an error.

--offline measures what the numbers are compared with: `tagger predict` (default --workers: one per core)
on the test sentences as raw text, repeated to --offline-tokens tokens, wall time including its start.
--soak SECONDS runs one long point and samples RSS every 10 s. --abuse runs issue 33's floods against one
server, --long N... times one long sentence against the same tokens batched (bench/serve_abuse.py says
how). --baseline CHECKOUT runs each point against that checkout's server too, right after this one's
(`git worktree add /tmp/base ab36df7`; --rounds N repeats each pair), so that an A/B shares the machine's
state. Results append to --output (JSON lines).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from runcli import emit  # bench/ is on sys.path when a script in it runs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def test_sentences(data: Path) -> list[list[str]]:
    from corpora.conll import read_conll

    return [list(s.tokens) for s in read_conll(data / "test.txt") if s.tokens and s.tokens[0] != "-DOCSTART-"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and its descendants (the server's workers), in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total / 1024


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


class Server:
    def __init__(self, model: str, workers: int, extra: list[str], checkout: Path = ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", str(Path(model).resolve()),
                                         "--port", str(self.port), "--workers", str(workers), "--quiet", *extra],
                                        cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    if workers == 1 or self._all_workers_up(workers):
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not start")

    def _all_workers_up(self, workers: int) -> bool:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return len(children) >= workers + 1 and time.sleep(3) is None  # + multiprocessing's resource tracker

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def hey(url: str, body: Path, clients: int, duration: float) -> dict:
    """Run hey; its summary parsed, and its own CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["hey", "-z", f"{duration}s", "-c", str(clients), "-m", "POST", "-T", "application/json",
                          "-D", str(body), url], capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    transport = re.findall(r"^\s+\[(\d+)\]\s+(.*)$", out.split("Error distribution:")[1], re.M) \
        if "Error distribution:" in out else []  # [(count, message)]: connections refused, reset, timed out
    latency = {int(p): float(s) * 1000 for p, s in re.findall(r"(\d+)% in ([\d.]+) secs", out)}
    ok = statuses.get(200, 0)
    failed = sum(n for code, n in statuses.items() if code != 200) + sum(int(n) for n, _ in transport)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "ok": ok,
            "errors": failed, "statuses": statuses, "transport_errors": [m for _, m in transport][:5],
            "p50_ms": latency.get(50), "p95_ms": latency.get(95), "p99_ms": latency.get(99),
            "hey_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def point(args, workers: int, clients: int, sentences: list[list[str]], duration: float, soak: bool = False,
          checkout: Path = ROOT) -> dict:
    body = {"text": " ".join(sentences[0])} if len(sentences) == 1 else {"texts": [" ".join(s) for s in sentences]}
    tokens = sum(map(len, sentences))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(body, f)
    server = Server(args.model, workers, args.serve_args.split(), checkout)
    try:
        subprocess.run(["hey", "-z", "2s", "-c", str(min(clients, 16)), "-m", "POST", "-T", "application/json",
                        "-D", f.name, f"{server.url}/v1/tag"], capture_output=True, check=True)  # warm-up
        rss_start = tree_rss_mb(server.process.pid)
        cpu_start = tree_cpu_s(server.process.pid)
        samples = []
        if soak:
            sampler = subprocess.Popen([sys.executable, "-c", SAMPLER, str(server.process.pid)], stdout=subprocess.PIPE,
                                       text=True)
        result = hey(f"{server.url}/v1/tag", Path(f.name), clients, duration)
        if soak:
            sampler.terminate()
            samples = [float(x) for x in sampler.communicate()[0].split()]
        rss_end = tree_rss_mb(server.process.pid)
        server_cpu = tree_cpu_s(server.process.pid) - cpu_start
    finally:
        code = server.stop()
        os.unlink(f.name)
    result |= {"workers": workers, "clients": clients, "sentences_per_request": len(sentences),
               "tokens_per_request": tokens, "tokens_per_s": round(result["requests_per_s"] * tokens),
               "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
               "server_cpu_s": round(server_cpu, 1), "hey_cpu_s": round(result["hey_cpu_s"], 1),
               "duration_s": duration, "exit_code": code, "serve_args": args.serve_args,
               "checkout": "this" if checkout == ROOT else str(checkout)}
    if samples:
        result["rss_samples_mb"] = samples
    return result


SAMPLER = """
import sys, time
sys.path.insert(0, 'bench')
from serve import tree_rss_mb
while True:
    time.sleep(10)
    print(round(tree_rss_mb(int(sys.argv[1])), 1), flush=True)
"""


def offline(args, sentences: list[list[str]]) -> dict:
    """`tagger predict` on the raw test text repeated to --offline-tokens tokens: tokens/s, wall clock."""
    per_copy = sum(map(len, sentences))
    copies = max(1, args.offline_tokens // per_copy)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for _ in range(copies):
            f.writelines(" ".join(s) + "\n" for s in sentences)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli.main", "predict", args.model, f.name, "-o", os.devnull, "--force"],
                   cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    os.unlink(f.name)
    return {"offline": "tagger predict (default workers)", "tokens": copies * per_copy, "seconds": round(seconds, 2),
            "tokens_per_s": round(copies * per_copy / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--sentences", type=int, default=1, help="sentences per request")
    parser.add_argument("--sentence-tokens", type=int, default=12, help="tokens of the one-sentence body")
    parser.add_argument("--library-calls", type=int, default=3000, help="Tagger.predict calls timed (0: none)")
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--serve-args", default="", help="more `tagger serve` options, e.g. '--batch-wait 1'")
    parser.add_argument("--offline", action="store_true", help="measure offline `tagger predict` instead")
    parser.add_argument("--offline-tokens", type=int, default=1_000_000)
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS", help="one long point, RSS sampled")
    parser.add_argument("--abuse", action="store_true", help="issue 33's floods, RSS before/during/after")
    parser.add_argument("--flood-mb", type=float, default=86, help="--abuse: MB each pipelining connection writes")
    parser.add_argument("--read-timeout", type=float, default=10, help="--abuse: the server's --read-timeout")
    parser.add_argument("--max-request-tokens", type=int, default=100_000, help="--abuse: the heavy request's size")
    parser.add_argument("--long", type=int, nargs="+", metavar="N", help="one sentence of N tokens, timed")
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT", help="another checkout (git worktree add DIR "
                        "COMMIT) whose server runs each point too, right after this one's: an A/B on the same machine")
    parser.add_argument("--rounds", type=int, default=1, help="each point this many times (interleaved with "
                        "--baseline's)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    import serve_abuse

    sentences = test_sentences(args.data)
    one = next(s for s in sentences if len(s) == args.sentence_tokens)
    if not (args.offline or args.long) and not shutil.which("hey"):
        raise SystemExit("error: bench/serve.py needs hey on the PATH (Debian: apt-get install hey)")
    if args.offline:
        results = [offline(args, sentences)]
    elif args.long:
        results = serve_abuse.long_sentences(args.model, sentences, args.long)
    elif args.abuse:
        results = serve_abuse.abuse(args, Server, tree_rss_mb, " ".join(one))
    else:
        chosen = [one] if args.sentences == 1 else sentences[: args.sentences]
        duration = args.soak or args.duration
        results = [serve_abuse.library(args.model, " ".join(one), args.library_calls)] if args.library_calls else []
        checkouts = [ROOT, *([args.baseline.resolve()] if args.baseline else [])]
        results += [point(args, w, c, chosen, duration, bool(args.soak), checkout) for w in args.workers
                    for c in args.clients for _ in range(args.rounds) for checkout in checkouts]
    emit(results, args.output)


if __name__ == "__main__":
    main()
