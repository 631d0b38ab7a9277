"""Decision records: spooled on the request path, drained into the store in order.

``add`` runs before a request's answer leaves: it shows the record to the observers (metrics,
traces) and appends it to the spool (:mod:`gatehouse.runtime.spool`), one ``write`` of one
JSON line. A background task drains the spool into the store every second, or at once when
much is waiting, batch by batch and in order. Each batch is one transaction: the records the
store did not have yet, the per-minute usage counts of exactly those records, and the
last-used time and model of their keys. A store that cannot be reached keeps the records in
the spool until it can; a record the store refuses as invalid is set aside in the spool's
``rejected/`` folder, counted and logged, never silently dropped (ADR 0014).

When the spool holds ``max_bytes`` not yet stored, the operator's choice applies: refuse new
requests with 503 ``evidence_unavailable`` (the default outside ``dev``), or keep serving and
count every record that could not be kept (a metric, the log, and an incident once the store
is back).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from gatehouse.core.decision import STORED, RequestRecord
from gatehouse.monitoring.incidents import evidence_lost
from gatehouse.monitoring.usage import UsageRollup, add_rows
from gatehouse.runtime.spool import Segment, Spool
from gatehouse.store.db import Database
from gatehouse.store.models import Credential, DecisionRecord
from gatehouse.telemetry import evidence_metrics as metrics

log = logging.getLogger("gatehouse.records")
BATCH_BYTES = 1024 * 1024  # of spooled lines per store transaction (~2,000 records)
WAKE_BYTES = 256 * 1024    # drain at once, not at the next tick, when this much is waiting
MARGIN = 0.01              # refuse new requests this close to the bound: those in flight still fit


def encode(record: RequestRecord) -> bytes:
    return encode_row(record.row())


def encode_row(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row)


def decode(line: bytes) -> dict[str, Any]:
    """A spooled line back into a ``decision_records`` row; ValueError if it is not one."""
    row = orjson.loads(line)
    if not isinstance(row, dict) or set(row) != set(STORED):
        raise ValueError("not a decision record")
    row["ts"] = datetime.fromisoformat(row["ts"])
    return row


class RecordWriter:
    def __init__(self, db: Database, spool: Spool, *, max_bytes: int = 512 * 1024 * 1024, refuse_at_bound: bool = True,
                 flush_interval: float = 1.0, last_used_interval: float = 60.0,
                 defined: Callable[[str], bool] = lambda alias: True,
                 observers: Sequence[Callable[[RequestRecord], None]] = (), policy_version: Callable[[], str] = str) -> None:
        self._db = db
        self.spool = spool
        self.max_bytes = max_bytes
        self.refuse_at_bound = refuse_at_bound
        self._observers = tuple(observers)  # metrics, traces: see each finished request once
        self._defined = defined             # whether an alias exists in the enforced policy (usage subjects)
        self._policy_version = policy_version
        self._flush_interval = flush_interval
        self._last_used_interval = last_used_interval
        self._last_used: dict[str, float] = {}     # key id → last authentication not yet written (no record)
        self._written_used: dict[str, float] = {}  # key id → when its last-used time was last written
        self._wake = asyncio.Event()
        self._draining = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._pending_wake = 0
        self.lost = 0          # records of answered requests not kept
        self._lost_reported = 0
        self.set_aside = 0     # records the store refused, kept in rejected/
        self.stored = 0
        self.store_down_since: float | None = None

    # -- the request path ---------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether a new request's record can be kept; False only at the bound in refuse mode."""
        return not self.refuse_at_bound or self.spool.pending < self.max_bytes * (1 - MARGIN)

    def add(self, record: RequestRecord) -> None:
        for observe in self._observers:
            try:
                observe(record)
            except Exception as exc:  # a metric must never cost a request its record
                log.error("record observer %s failed: %s", getattr(observe, "__qualname__", observe), type(exc).__name__)
        line = encode(record)
        if self.spool.pending + len(line) > self.max_bytes:
            self._lose("the spool is at its bound")
            return
        try:
            self.spool.append(line)
        except OSError as exc:
            self._lose(f"the spool could not be written ({exc.strerror or type(exc).__name__})")
            return
        self._pending_wake += len(line)
        if self._pending_wake >= WAKE_BYTES:
            self._pending_wake = 0
            self._wake.set()

    def _lose(self, why: str) -> None:
        self.lost += 1
        metrics.LOST.inc()
        if self.lost == 1 or self.lost % 1000 == 0:
            log.critical("decision record NOT KEPT (%s): %d lost so far", why, self.lost)

    def note_used(self, used: dict[str, float]) -> None:
        """Authentications without a record (listing models): written every ``last_used_interval``."""
        for key_id, moment in used.items():
            if moment > self._last_used.get(key_id, 0.0):
                self._last_used[key_id] = moment

    # -- the drain ----------------------------------------------------------------------------

    def start(self, take_last_used: Callable[[], dict[str, float]]) -> None:
        self._task = asyncio.create_task(self._run(take_last_used))

    async def _run(self, take_last_used: Callable[[], dict[str, float]]) -> None:
        loop = asyncio.get_running_loop()
        next_last_used = loop.time() + self._last_used_interval
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await asyncio.to_thread(self.drain)
            except Exception as exc:
                log.error("draining the spool failed: %s", type(exc).__name__)
            metrics.SPOOL_BYTES.set(self.spool.pending)
            if loop.time() >= next_last_used:
                self.note_used(take_last_used())
                await self.flush_last_used()
                next_last_used = loop.time() + self._last_used_interval

    async def stop(self, take_last_used: Callable[[], dict[str, float]]) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            await asyncio.to_thread(self.drain)
        except Exception as exc:  # what is left stays in the spool for the next worker
            log.error("could not drain the spool at shutdown (%s): the next worker will", type(exc).__name__)
        self.note_used(take_last_used())
        await self.flush_last_used()

    def drain(self) -> int:
        """Store everything spooled so far, oldest first; returns how many records were stored.
        Stops at the first batch the store cannot take (it stays spooled)."""
        with self._draining:  # one drainer at a time (shutdown's, and a tick's still running)
            return self._drain()

    def _drain(self) -> int:
        self.spool.claim_orphans()
        total = 0
        try:
            for segment in self.spool.segments():
                total += self._drain_segment(segment)
        except Exception as exc:
            if self.store_down_since is None:
                self.store_down_since = time.monotonic()
                metrics.STORE_DOWN.set(1)
                log.error("cannot write decision records to the store (%s): %d bytes kept in the spool, retrying",
                          type(exc).__name__, self.spool.pending)
            raise
        if self.store_down_since is not None:
            log.warning("store reachable again after %.1f s: decision records drained from the spool",
                        time.monotonic() - self.store_down_since)
            self.store_down_since = None
            metrics.STORE_DOWN.set(0)
        self._report_lost()
        return total

    def _drain_segment(self, segment: Segment) -> int:
        total = 0
        while True:
            lines, end = segment.read(BATCH_BYTES)
            if not lines:
                if segment.orphan and end < segment.written:  # a torn last line: the worker died mid-write
                    self._set_aside(segment, [segment.tail(end)], "an incomplete last record")
                    segment.written = end
                if segment.write_fd is None:
                    self.spool.stored(segment, end)  # finished: deleted
                return total
            rows, bad = [], []
            for line in lines:
                try:
                    rows.append(decode(line))
                except ValueError:
                    bad.append(line)
            if bad:
                self._set_aside(segment, bad, "unreadable records")
            total += self._store_rows(segment, rows)
            if self.spool.stored(segment, end):
                return total

    def _store_rows(self, segment: Segment, rows: list[dict[str, Any]]) -> int:
        """Store ``rows``; rows the store refuses as invalid are found by halving and set aside.
        Anything else (the store is down, locked, or missing a table) is raised: retry later."""
        if not rows:
            return 0
        try:
            return self._store_batch(rows)
        except (IntegrityError, DataError):
            if len(rows) == 1:
                self._set_aside(segment, [encode_row(rows[0])], "a record the store refused")
                return 0
            middle = len(rows) // 2
            return self._store_rows(segment, rows[:middle]) + self._store_rows(segment, rows[middle:])

    def _set_aside(self, segment: Segment, lines: list[bytes], why: str) -> None:
        path = self.spool.set_aside(segment, b"\n".join(lines))
        self.set_aside += len(lines)
        metrics.SET_ASIDE.inc(len(lines))
        log.error("%d decision record(s) set aside in %s: %s", len(lines), path, why)

    def _store_batch(self, rows: list[dict[str, Any]]) -> int:
        with self._db.write() as session:
            insert = postgres_insert if self._db.engine.dialect.name == "postgresql" else sqlite_insert
            statement = insert(DecisionRecord).on_conflict_do_nothing(index_elements=["request_id"])
            inserted = set(session.execute(statement.returning(DecisionRecord.request_id), rows).scalars())
            new = [row for row in rows if row["request_id"] in inserted]
            rollup = UsageRollup(self.spool.worker, self._defined)
            for row in new:
                rollup.observe(RequestRecord(**row))
            add_rows(session, rollup.take())
            self._write_last_used(session, new)
        self.stored += len(new)
        metrics.STORED.inc(len(new))
        return len(new)

    def _write_last_used(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Each key's newest use and model in the batch, with the records: exact to
        ``last_used_interval`` (a key is written at most that often by one worker, always on
        its first use), never going backwards."""
        newest: dict[str, tuple[datetime, str | None]] = {}
        for row in rows:
            key_id = row["key_id"]
            if key_id is None:
                continue
            model = row["alias"] if row["status"] == 200 else None
            seen = newest.get(key_id)
            if seen is None or row["ts"] > seen[0]:
                newest[key_id] = (row["ts"], model or (seen[1] if seen else None))
        now = time.monotonic()
        for key_id, (moment, model) in newest.items():
            if now - self._written_used.get(key_id, -1e18) < self._last_used_interval:
                continue
            self._written_used[key_id] = now
            _set_last_used(session, key_id, moment, model)

    def _report_lost(self) -> None:
        """Once the store is reachable, records lost since the last report become an incident."""
        lost = self.lost - self._lost_reported
        if lost <= 0:
            return
        incident = evidence_lost(self._db, self.spool.worker, lost, self._policy_version())
        self._lost_reported += lost
        log.critical("opened incident %s: %d decision record(s) were not kept", incident, lost)

    async def flush_last_used(self) -> None:
        if not self._last_used:
            return
        used, self._last_used = self._last_used, {}
        try:
            await asyncio.to_thread(self._flush_used, used)
        except Exception as exc:
            log.error("could not record last-used times (%s); will retry", type(exc).__name__)
            self.note_used(used)

    def _flush_used(self, used: dict[str, float]) -> None:
        with self._db.write() as session:
            for key_id, moment in used.items():
                _set_last_used(session, key_id, datetime.fromtimestamp(moment, UTC), None)


def _set_last_used(session: Session, key_id: str, moment: datetime, model: str | None) -> None:
    # Deliberately leaves ``revision`` alone: last use is not a change workers must reload.
    newer = (Credential.last_used_at.is_(None)) | (Credential.last_used_at < moment)
    session.execute(update(Credential).where(Credential.id == key_id, newer).values(last_used_at=moment))
    if model is not None:
        session.execute(update(Credential).where(Credential.id == key_id).values(last_model=model))
