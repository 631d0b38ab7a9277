"""The gateway's background work, in one table: what runs, how often, and that a failure is
logged by type and the next run goes ahead. Nothing here is on the request path."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gatehouse.audit import checkpoints
from gatehouse.core.config import Settings
from gatehouse.identity.governance import enforce_reviews
from gatehouse.monitoring.evaluate import evaluate, prune_usage
from gatehouse.monitoring.usage import UsageRollup, write_rows
from gatehouse.policy.workers import HEARTBEAT_INTERVAL
from gatehouse.runtime.enforced import PolicyFollower
from gatehouse.runtime.keytable import KeyTable
from gatehouse.store.db import Database
from gatehouse.telemetry import exposition

log = logging.getLogger("gatehouse")
REFRESH_INTERVAL = 0.2  # seconds between checks for key and identity changes
REVIEW_ENFORCE_INTERVAL = 60.0  # seconds between closing access reviews past their due date
USAGE_WRITE_INTERVAL = 5.0  # seconds between writes of this worker's per-minute counts


@dataclass(frozen=True)
class Job:
    seconds: float
    what: str
    work: Callable[[], Awaitable[Any]]


async def every(job: Job) -> None:
    """Run the job every ``job.seconds`` until cancelled. A failure is logged by its type only
    (a message could carry a secret or a connection string) and the next run goes ahead."""
    while True:
        await asyncio.sleep(job.seconds)
        try:
            await job.work()
        except Exception as exc:
            log.error("%s failed: %s", job.what, type(exc).__name__)


class UsageWriter:
    """This worker's per-minute counts to the store; a failed write is retried next time, and
    the last write at shutdown waits for one still running."""

    def __init__(self, db: Database, usage: UsageRollup) -> None:
        self.db = db
        self.usage = usage
        self._writing = threading.Lock()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self._writing:
            write_rows(self.db, rows)

    async def __call__(self) -> None:
        rows, minutes = self.usage.take()
        try:
            await asyncio.to_thread(self._write, rows)
        except Exception:
            self.usage.retry(minutes)
            raise


def jobs(db: Database, settings: Settings, keys: KeyTable, follower: PolicyFollower, write_usage: UsageWriter,
         signing_key: Any) -> list[Job]:
    def checkpoint() -> None:
        with db.write() as session:
            checkpoints.checkpoint_now(session, signing_key)

    async def refresh_engine_gauges() -> None:
        for engine in follower.engines():
            metrics = getattr(engine, "metrics", None)
            if metrics is not None:
                metrics.refresh()

    async def close_overdue_reviews() -> None:
        suspended = await asyncio.to_thread(enforce_reviews, db)
        if suspended:
            log.warning("access review past due: suspended %s", ", ".join(suspended))

    async def evaluate_thresholds() -> None:
        policy = follower.current.policy
        thresholds = policy.loaded.document.monitoring.thresholds
        if thresholds:
            opened = await asyncio.to_thread(evaluate, db, thresholds, policy.version, settings, None,
                                             settings.monitor_interval)
            if opened:
                log.warning("threshold crossed: opened %s", ", ".join(opened))

    table = [
        Job(REFRESH_INTERVAL, "key table refresh", lambda: asyncio.to_thread(keys.refresh, db)),  # keep the last good table
        # apart from keys: loading a model for a new policy version must not delay a revocation
        Job(REFRESH_INTERVAL, "policy refresh", follower.poll),  # keep enforcing the last good version
        Job(REVIEW_ENFORCE_INTERVAL, "review enforcement", close_overdue_reviews),
        Job(settings.audit_checkpoint_minutes * 60, "audit checkpoint", lambda: asyncio.to_thread(checkpoint)),
        Job(HEARTBEAT_INTERVAL, "worker heartbeat", lambda: asyncio.to_thread(follower.heartbeat)),
        Job(min(USAGE_WRITE_INTERVAL, settings.monitor_interval), "usage counts", write_usage),
        Job(settings.monitor_interval, "threshold evaluation", evaluate_thresholds),
        Job(3600.0, "usage pruning", lambda: asyncio.to_thread(prune_usage, db)),
    ]
    if exposition.multiprocess():
        table.append(Job(1.0, "engine gauges", refresh_engine_gauges))
    return table
