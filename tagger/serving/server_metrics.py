"""The server's Prometheus series (requests by route and status, latency, batch sizes, tokens, queue depth
after each engine call, requests in flight), summed over `tagger serve --workers N` processes by
prometheus_client's multiprocess mode."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tagger.serving.batcher import BatchStats


class Metrics:
    """The Prometheus series. With several worker processes, prometheus_client's multiprocess mode (the
    PROMETHEUS_MULTIPROC_DIR variable) sums them over the workers (`tagger serve` sets it up)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("tagger_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("tagger_request_seconds", "Time from reading a request to its answer",
                                 ["route"], registry=r, buckets=(.0005, .001, .0015, .002, .005, .01, .02, .05,
                                                                 .1, .2, .5, 1, 2, 5, 10, 30))
        self.batch_requests = Histogram("tagger_batch_requests", "Requests per engine call", registry=r,
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
        self.batch_tokens = Histogram("tagger_batch_tokens", "Tokens per engine call (as budgeted)", registry=r,
                                      buckets=(16, 64, 256, 1024, 4096, 16384, 65536))
        self.tokens = Counter("tagger_tokens", "Tokens tagged", registry=r)
        self.queue = Gauge("tagger_queue_depth", "Requests waiting for the engine", registry=r,
                           multiprocess_mode="livesum")
        self.in_flight = Gauge("tagger_requests_in_flight", "Requests read and not yet answered (this one too)",
                               registry=r, multiprocess_mode="livesum")

        self._answered: dict[tuple[str, int], tuple[Any, Any]] = {}  # (route, status) -> its two series

    def answered(self, route: str, status: int, seconds: float) -> None:
        """One request answered: counted by route and status, timed by route. The labelled series are looked
        up once (routes are the server's names, statuses a handful): `labels()` is most of a count's cost."""
        series = self._answered.get((route, status))
        if series is None:
            series = self._answered[route, status] = (self.requests.labels(route, str(status)),
                                                      self.latency.labels(route))
        series[0].inc()
        series[1].observe(seconds)

    def batch(self, stats: BatchStats) -> None:
        self.batch_requests.observe(stats.jobs)
        self.batch_tokens.observe(stats.tokens)

    def exposition(self) -> bytes:
        """The text Prometheus scrapes: this process's series, or every worker's in multiprocess mode."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client import multiprocess

        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return generate_latest(self.registry)
        _forget_dead_workers(Path(directory))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


def _forget_dead_workers(directory: Path) -> None:
    """A killed worker's queue depth ("live" gauges) must not count: drop the files of pids gone."""
    from prometheus_client import multiprocess

    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
