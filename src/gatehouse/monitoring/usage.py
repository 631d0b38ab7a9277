"""Per-minute counts of traffic, added to ``usage_minutes`` with the decision records they count.

Thresholds are judged on these rows, summed over every worker and replica: a decision record
per request is too many rows to read every fifteen seconds, a minute per subject is not. The
record writer tallies each batch of records the store newly accepted and adds the counts in
the same transaction, so the counts are exactly as durable as the records: a record stored
once is counted once, whatever crashed in between (ADR 0014).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from gatehouse.core.clock import as_utc
from gatehouse.core.decision import RequestRecord
from gatehouse.store.db import Database
from gatehouse.store.models import UsageMinute

# Upper bounds (seconds) of the latency buckets; a last bucket holds everything slower.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
COUNTS = ("requests", "errors", "blocked", "guardrail_hits", "upstream_attempts", "upstream_errors")


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
    """Tallies decision records by minute and subject (cheap: a few dictionary updates each)."""

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
        """Count one record in the minute it arrived (``now`` overrides, for tests)."""
        minute = int((now if now is not None else record.ts.timestamp()) // 60)
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

    def take(self) -> list[dict[str, Any]]:
        """The tallies as ``usage_minutes`` rows, and start again."""
        rows = self._rows(iter(sorted(self._dirty)))
        self._minutes, self._dirty = {}, set()
        return rows

    def flush(self, db: Database) -> int:
        rows = self.take()
        write_rows(db, rows)
        return len(rows)


def add_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add these counts to the store's, inside the caller's transaction. Rows are keyed by
    worker and only that worker's record writer adds to them, so the read below (locked on
    PostgreSQL) sees every earlier addition."""
    if not rows:
        return
    keys = {(row["minute"], row["worker"], row["scope"], row["subject"]): row for row in rows}
    minutes = {row["minute"] for row in rows}
    workers = {row["worker"] for row in rows}
    query = select(UsageMinute).where(UsageMinute.minute.in_(minutes), UsageMinute.worker.in_(workers))
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    for stored in session.execute(query).scalars():
        row = keys.get((as_utc(stored.minute), stored.worker, stored.scope, stored.subject))
        if row is None:
            continue
        for name in COUNTS:
            row[name] += getattr(stored, name)
        row["latency"] = [mine + theirs for mine, theirs in zip(row["latency"], _buckets(stored.latency), strict=True)]
    insert = postgres_insert if session.bind is not None and session.bind.dialect.name == "postgresql" else sqlite_insert
    merged = list(keys.values())
    for start in range(0, len(merged), 500):
        statement = insert(UsageMinute).values(merged[start:start + 500])
        statement = statement.on_conflict_do_update(
            index_elements=["minute", "worker", "scope", "subject"],
            set_={name: statement.excluded[name] for name in (*COUNTS, "latency")})
        session.execute(statement)


def _buckets(stored: list[int] | None) -> list[int]:
    """A stored latency histogram, padded if it was written with fewer buckets."""
    values = list(stored or [])
    size = len(LATENCY_BUCKETS) + 1
    return (values + [0] * size)[:size]


def write_rows(db: Database, rows: list[dict[str, Any]]) -> None:
    """Add ``rows`` in a transaction of their own."""
    if rows:
        with db.write() as session:
            add_rows(session, rows)


def prune(db: Database, before: datetime) -> int:
    with db.write() as session:
        result = session.execute(delete(UsageMinute).where(UsageMinute.minute < before))
        return cast(CursorResult[Any], result).rowcount or 0  # a DELETE's result is a cursor result
