"""The gateway's background work, in one table: what runs, how often, and that a failure is
logged by type and the next run goes ahead. Nothing here is on the request path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gatehouse.audit import checkpoints, witness
from gatehouse.core.config import Settings
from gatehouse.identity.governance import enforce_reviews
from gatehouse.monitoring.evaluate import evaluate, prune_usage
from gatehouse.policy.workers import HEARTBEAT_INTERVAL
from gatehouse.runtime.enforced import PolicyFollower
from gatehouse.runtime.freshness import Freshness
from gatehouse.runtime.keytable import KeyTable
from gatehouse.store.db import Database
from gatehouse.telemetry import evidence_metrics, exposition

log = logging.getLogger("gatehouse")
REFRESH_INTERVAL = 0.2  # seconds between checks for key and identity changes
FAILURE_LOG_INTERVAL = 60.0  # seconds between log lines of a job that keeps failing
REVIEW_ENFORCE_INTERVAL = 60.0  # seconds between closing access reviews past their due date


@dataclass(frozen=True)
class Job:
    seconds: float
    what: str
    work: Callable[[], Awaitable[Any]]


async def every(job: Job) -> None:
    """Run the job every ``job.seconds`` until cancelled. A failure is logged by its type only
    (a message could carry a secret or a connection string) and the next run goes ahead; while
    a job keeps failing (the store is down) it is logged once a minute, and its recovery once."""
    loop = asyncio.get_running_loop()
    failing_since: float | None = None
    logged_at = 0.0
    while True:
        await asyncio.sleep(job.seconds)
        try:
            await job.work()
        except Exception as exc:
            now = loop.time()
            if failing_since is None or now - logged_at >= FAILURE_LOG_INTERVAL:
                since = f" (failing for {now - failing_since:.0f} s)" if failing_since is not None else ""
                log.error("%s failed: %s%s", job.what, type(exc).__name__, since)
                logged_at = now
            failing_since = failing_since if failing_since is not None else now
        else:
            if failing_since is not None:
                log.warning("%s works again after %.1f s", job.what, loop.time() - failing_since)
                failing_since = None


def jobs(db: Database, settings: Settings, keys: KeyTable, follower: PolicyFollower, freshness: Freshness,
         signing_key: Any) -> list[Job]:
    def checkpoint() -> None:
        with db.write() as session:
            checkpoints.checkpoint_now(session, signing_key)
        for status in witness.catch_up(db, settings):  # what each witness lacks; failures are logged there
            evidence_metrics.WITNESS_LAG.labels(status.target).set(status.lag)

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
        # keep the last good table, and refuse once it is older than the bound (runtime.freshness)
        Job(REFRESH_INTERVAL, "key table refresh", freshness.keys_after(lambda: asyncio.to_thread(keys.refresh, db))),
        # apart from keys: loading a model for a new policy version must not delay a revocation
        Job(REFRESH_INTERVAL, "policy refresh", follower.poll),  # keep enforcing the last good version
        Job(REVIEW_ENFORCE_INTERVAL, "review enforcement", close_overdue_reviews),
        Job(settings.audit_checkpoint_minutes * 60, "audit checkpoint", lambda: asyncio.to_thread(checkpoint)),
        Job(HEARTBEAT_INTERVAL, "worker heartbeat", lambda: asyncio.to_thread(follower.heartbeat)),
        Job(settings.monitor_interval, "threshold evaluation", evaluate_thresholds),
        Job(3600.0, "usage pruning", lambda: asyncio.to_thread(prune_usage, db)),
    ]
    if exposition.multiprocess():
        table.append(Job(1.0, "engine gauges", refresh_engine_gauges))
    return table
