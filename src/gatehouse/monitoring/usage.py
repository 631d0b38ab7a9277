"""Per-minute counts of this worker's traffic, written to ``usage_minutes`` every few seconds.

Thresholds are judged on these rows, summed over every worker and replica: a decision record
per request is too many rows to read every fifteen seconds, a minute per subject is not.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult

from gatehouse.core.decision import RequestRecord
from gatehouse.store.db import Database
from gatehouse.store.models import UsageMinute

# Upper bounds (seconds) of the latency buckets; a last bucket holds everything slower.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
COUNTS = ("requests", "errors", "blocked", "guardrail_hits", "upstream_attempts", "upstream_errors")
KEEP_MINUTES = 3  # minutes still counted in memory (a late record lands in its own minute)


class Tally:
    __slots__ = ("counts", "latency")

    def __init__(self) -> None:
        self.counts = [0] * len(COUNTS)
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)

    def add(self, requests: int, errors: int, blocked: int, hits: int, attempts: int, failed: int,
            seconds: float | None) -> None:
        counts = self.counts
        counts[0] += requests
        counts[1] += errors
        counts[2] += blocked
        counts[3] += hits
        counts[4] += attempts
        counts[5] += failed
        if seconds is not None:
            self.latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1


def _failed(attempt: str) -> tuple[str, bool]:
    deployment, _, reason = attempt.partition("=")
    # not serving an endpoint, full, or not allowed the data class: not a failure of the deployment
    return deployment, reason not in ("unsupported", "busy", "data_class")


class UsageRollup:
    """A decision-record observer (cheap: a few dictionary updates per request)."""

    def __init__(self, worker: str, defined: Callable[[str], bool] = lambda alias: True) -> None:
        self.worker = worker
        self.defined = defined  # whether an alias exists in the enforced policy
        self._minutes: dict[int, dict[tuple[str, str], Tally]] = {}
        self._dirty: set[int] = set()

    def _tally(self, minute: int, scope: str, subject: str) -> Tally:
        tallies = self._minutes.setdefault(minute, {})
        tally = tallies.get((scope, subject))
        if tally is None:
            tally = tallies[(scope, subject)] = Tally()
        return tally

    def observe(self, record: RequestRecord, now: float | None = None) -> None:
        minute = int((now if now is not None else time.time()) // 60)
        self._dirty.add(minute)
        seconds = record.latency_ms / 1000
        errors = 1 if record.status >= 500 else 0
        blocked = 1 if record.error_code == "guardrail_blocked" else 0
        hits = 1 if any(not verdict["shadow"] for verdict in record.guardrails or ()) else 0
        attempts = [_failed(attempt) for attempt in record.fallbacks]
        failed = sum(bad for _, bad in attempts)
        tried = failed + (1 if record.deployment else 0)
        subjects = [("gateway", "*")]
        if record.identity:
            subjects.append(("identity", record.identity))
        if record.alias and self.defined(record.alias):  # a name nobody defined is the caller's text, not a subject
            subjects.append(("alias", record.alias))
        for scope, subject in subjects:
            self._tally(minute, scope, subject).add(1, errors, blocked, hits, tried, failed, seconds)
        for deployment, bad in attempts:
            if bad:
                self._tally(minute, "deployment", deployment).add(1, 1, 0, 0, 1, 1, None)
        if record.deployment:
            answered_errors = 1 if record.status >= 500 else 0  # e.g. failed mid-stream
            self._tally(minute, "deployment", record.deployment).add(1, answered_errors, 0, 0, 1, answered_errors, seconds)

    def _rows(self, minutes: Iterator[int]) -> list[dict[str, Any]]:
        rows = []
        for minute in minutes:
            at = datetime.fromtimestamp(minute * 60, UTC)
            for (scope, subject), tally in self._minutes.get(minute, {}).items():
                rows.append({"minute": at, "worker": self.worker, "scope": scope, "subject": subject,
                             **dict(zip(COUNTS, tally.counts, strict=True)), "latency": list(tally.latency)})
        return rows

    def take(self, now: float | None = None) -> tuple[list[dict[str, Any]], set[int]]:
        """Rows for the minutes that changed since the last take (this worker's totals so far,
        replacing what it wrote before). Runs on the event loop, like ``observe``; the rows are
        copies, written from a thread. Minutes too old to change are forgotten."""
        dirty, self._dirty = self._dirty, set()
        rows = self._rows(iter(sorted(dirty)))
        oldest = int((now if now is not None else time.time()) // 60) - KEEP_MINUTES
        for minute in [m for m in self._minutes if m < oldest]:
            del self._minutes[minute]  # taken above if it changed; written for the last time
        return rows, dirty

    def retry(self, dirty: set[int]) -> None:
        """The rows of a take could not be written: write those minutes again next time."""
        self._dirty |= {minute for minute in dirty if minute in self._minutes}

    def flush(self, db: Database, now: float | None = None) -> int:
        rows, dirty = self.take(now)
        try:
            write_rows(db, rows)
        except Exception:
            self.retry(dirty)
            raise
        return len(rows)


def write_rows(db: Database, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = db.engine.dialect.name
    insert = postgres_insert if dialect == "postgresql" else sqlite_insert
    with db.write() as session:
        for start in range(0, len(rows), 500):
            statement = insert(UsageMinute).values(rows[start:start + 500])
            statement = statement.on_conflict_do_update(
                index_elements=["minute", "worker", "scope", "subject"],
                set_={name: statement.excluded[name] for name in (*COUNTS, "latency")})
            session.execute(statement)


def prune(db: Database, before: datetime) -> int:
    with db.write() as session:
        result = session.execute(delete(UsageMinute).where(UsageMinute.minute < before))
        return cast(CursorResult[Any], result).rowcount or 0  # a DELETE's result is a cursor result
