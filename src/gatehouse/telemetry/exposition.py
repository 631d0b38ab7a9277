"""``GET /metrics``: one worker's registry, or every worker's when ``serve`` runs several.

Several worker processes share one port, so a scrape reaches one of them at random. With more
than one worker ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the
workers start; each then writes its samples to memory-mapped files there and any worker's
scrape adds up all of them (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_VARIABLE))


def prepare_multiprocess(folder: Path) -> None:
    """Start the workers' shared metric files afresh: samples left by an earlier run would be
    added to this one's. Must run before any worker imports prometheus_client."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROCESS_VARIABLE] = str(folder)


def render() -> bytes:
    if not multiprocess():
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess as shared

    registry = CollectorRegistry()
    shared.MultiProcessCollector(registry)
    return generate_latest(registry)


def worker_exited(pid: int) -> None:
    """Drop an exited worker's live gauges (counters and histograms keep counting)."""
    if multiprocess():
        from prometheus_client import multiprocess as shared

        shared.mark_process_dead(pid)
