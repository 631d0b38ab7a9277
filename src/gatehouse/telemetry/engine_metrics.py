"""Prometheus metrics of an embedded engine, labelled by deployment.

Gauges are read from the scheduler when scraped; counters and histograms are fed by the
scheduler thread as it works.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from gatehouse.telemetry.exposition import multiprocess

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)

# With several workers each has its own engine: gauges are summed over the live ones, except the
# cache ratio, which is per worker (a ``pid`` label).
RUNNING = Gauge("gatehouse_engine_requests_running", "Sequences being decoded", ["deployment"], multiprocess_mode="livesum")
WAITING = Gauge("gatehouse_engine_requests_waiting", "Requests queued for a slot", ["deployment"], multiprocess_mode="livesum")
KV_USAGE = Gauge("gatehouse_engine_kv_cache_usage_ratio", "Share of KV cache cells in use or cached", ["deployment"],
                 multiprocess_mode="liveall")
TOKENS_PER_SECOND = Gauge("gatehouse_engine_generation_tokens_per_second",
                          "Generated tokens per second over the last 10 seconds", ["deployment"],
                          multiprocess_mode="livesum")
PREFIX_HITS = Counter("gatehouse_engine_prefix_cache_hit_tokens", "Prompt tokens served from the prefix cache",
                      ["deployment"])
GENERATED = Counter("gatehouse_engine_generation_tokens", "Tokens generated", ["deployment"])
TTFT = Histogram("gatehouse_engine_time_to_first_token_seconds", "Time from arrival to first token",
                 ["deployment"], buckets=LATENCY_BUCKETS)
ITL = Histogram("gatehouse_engine_inter_token_latency_seconds", "Time between two tokens of one sequence",
                ["deployment"], buckets=LATENCY_BUCKETS)
QUEUE = Histogram("gatehouse_engine_queue_time_seconds", "Time spent waiting for a slot", ["deployment"],
                  buckets=LATENCY_BUCKETS)


class EngineMetrics:
    WINDOW = 10.0

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self._recent: deque[float] = deque()
        self._ttft = TTFT.labels(deployment)
        self._itl = ITL.labels(deployment)
        self._queue = QUEUE.labels(deployment)
        self._hits = PREFIX_HITS.labels(deployment)
        self._generated = GENERATED.labels(deployment)
        self._readings: tuple = ()

    def bind(self, scheduler: Any) -> None:
        self._readings = ((RUNNING, lambda: scheduler.running), (WAITING, lambda: scheduler.waiting),
                          (KV_USAGE, scheduler.kv_usage), (TOKENS_PER_SECOND, self.tokens_per_second))
        if not multiprocess():  # read when scraped; shared files are written by refresh() instead
            for gauge, read in self._readings:
                gauge.labels(self.deployment).set_function(read)

    def refresh(self) -> None:
        """Write the gauges to the workers' shared files (multiprocess mode, every second)."""
        for gauge, read in self._readings:
            gauge.labels(self.deployment).set(read())

    def tokens_per_second(self) -> float:
        horizon = time.monotonic() - self.WINDOW
        while self._recent and self._recent[0] < horizon:
            self._recent.popleft()
        return len(self._recent) / self.WINDOW

    def observe(self, name: str, value: float) -> None:
        if name == "generated_tokens":
            self._generated.inc(value)
            self._recent.append(time.monotonic())
            if len(self._recent) > 100_000:
                self._recent.popleft()
        elif name == "ttft_seconds":
            self._ttft.observe(value)
        elif name == "itl_seconds":
            self._itl.observe(value)
        elif name == "queue_seconds":
            self._queue.observe(value)
        elif name == "prefix_hit_tokens":
            self._hits.inc(value)
