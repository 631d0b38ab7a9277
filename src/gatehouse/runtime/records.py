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
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
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
ID_PAGE = 1000             # request ids looked up at a time (a driver's parameter limit)
WAKE_BYTES = 256 * 1024    # drain at once, not at the next tick, when this much is waiting
MARGIN = 0.01              # refuse new requests this close to the bound (a share of it, at least
MARGIN_BYTES = 64 * 1024   # this many bytes, at most half the bound): those in flight still fit
RETRY_APPEND = 1.0         # seconds refuse mode refuses after the spool refused a write, before trying again
STARTED = "started"        # a stream's start marker: {"started": row}
STOPPED = "worker_stopped_mid_stream"  # the error code of a stream whose worker died before its end
OUTAGE = (OperationalError, InterfaceError, ProgrammingError, InternalError, PoolTimeout, DisconnectionError)


def encode(record: RequestRecord) -> bytes:
    return encode_row(record.row())


def encode_row(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row)


def started_line(record: RequestRecord) -> bytes:
    """The marker a stream leaves before its first byte (see ``RecordWriter.started``)."""
    return orjson.dumps({STARTED: record.row()})


def decode(line: bytes) -> tuple[bool, dict[str, Any]]:
    """A spooled line: (whether it is a stream's start marker, the ``decision_records`` row).
    ValueError if it is neither."""
    value = orjson.loads(line)
    marker = isinstance(value, dict) and set(value) == {STARTED}
    row = value[STARTED] if marker else value
    if not isinstance(row, dict) or set(row) != set(STORED):
        raise ValueError("not a decision record")
    row["ts"] = datetime.fromisoformat(row["ts"])
    return marker, row


def _is_outage(exc: BaseException) -> bool:
    """Whether the store could not take a batch because of itself (down, locked, a missing
    table, a pool timeout): the batch waits. Anything else is the batch's fault."""
    return isinstance(exc, OUTAGE)


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
        self._written_used: dict[str, float] = {}  # key id → when its last-used time was last written (committed)
        self._wake = asyncio.Event()
        self._draining = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._pending_wake = 0
        self._refused_at = -1e18
        self._open_streams: dict[str, dict[str, Any]] = {}  # a dead worker's streams with no end yet
        self.lost = 0          # records of answered requests not kept
        self._lost_reported = 0
        self.set_aside = 0     # records the store refused, kept in rejected/
        self.stored = 0
        self.store_down_since: float | None = None

    # -- the request path ---------------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether a new request's record can be kept; False only in refuse mode, at the bound
        or just after the disk refused a write."""
        if not self.refuse_at_bound:
            return True
        margin = min(max(self.max_bytes * MARGIN, MARGIN_BYTES), self.max_bytes / 2)
        return self.spool.pending < self.max_bytes - margin and time.monotonic() - self._refused_at > RETRY_APPEND

    def add(self, record: RequestRecord) -> bool:
        """Show the record to the observers and spool it. Returns whether it was kept: in refuse
        mode a False means the caller must not be given the answer."""
        for observe in self._observers:
            try:
                observe(record)
            except Exception as exc:  # a metric must never cost a request its record
                log.error("record observer %s failed: %s", getattr(observe, "__qualname__", observe), type(exc).__name__)
        return self._spool(self._encode(record))

    def started(self, record: RequestRecord) -> bool:
        """A stream is about to send its first byte. Should this worker die before the stream's
        end, whoever drains its spool stores the record from this marker (error code
        ``worker_stopped_mid_stream``); a live worker's markers are skipped."""
        try:
            line = started_line(record)
        except TypeError:
            line = started_line(self._minimal(record))
        return self._spool(line)

    def _encode(self, record: RequestRecord) -> bytes:
        try:
            return encode(record)
        except TypeError as exc:  # orjson's JSONEncodeError: a value it cannot write (e.g. past 64 bits)
            log.error("decision record %s could not be encoded (%s): kept without its details",
                      record.request_id, type(exc).__name__)
            return encode(self._minimal(record))

    @staticmethod
    def _minimal(record: RequestRecord) -> RequestRecord:
        """What is always encodable of a record: who, when, what, and how it ended."""
        return RequestRecord(record.request_id, record.ts, record.endpoint, record.policy_version,
                             identity=record.identity, key_id=record.key_id, status=record.status,
                             error_code="record_unencodable", stream=record.stream,
                             latency_ms=float(record.latency_ms) if isinstance(record.latency_ms, float | int) else 0.0)

    def _spool(self, line: bytes) -> bool:
        if self.spool.pending + len(line) > self.max_bytes:
            self._lose("the spool is at its bound")
            return False
        try:
            self.spool.append(line)
        except OSError as exc:
            self._refused_at = time.monotonic()
            self._lose(f"the spool could not be written ({exc.strerror or type(exc).__name__})")
            return False
        self._pending_wake += len(line)
        if self._pending_wake >= WAKE_BYTES:
            self._pending_wake = 0
            self._wake.set()
        return True

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
            self._stopped_streams()
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
                    marker, row = decode(line)
                except ValueError:
                    bad.append(line)
                    continue
                if marker:
                    if segment.orphan:
                        self._open_streams[row["request_id"]] = row
                    continue
                self._open_streams.pop(row["request_id"], None)
                rows.append(row)
            if bad:
                self._set_aside(segment, bad, "unreadable records")
            total += self._store_rows(segment, rows)
            if self.spool.stored(segment, end):
                return total

    def _stopped_streams(self) -> None:
        """The streams of dead workers whose end never came: their records, from the start
        marker, into this worker's own spool (so they are as durable as any other)."""
        while self._open_streams:
            _, row = self._open_streams.popitem()
            row.update(error_code=STOPPED, ts=row["ts"].isoformat())
            self._spool(encode_row(row))

    def _store_rows(self, segment: Segment, rows: list[dict[str, Any]]) -> int:
        """Store ``rows``; rows the store refuses (invalid, too long, out of range, unencodable
        for its driver) are found by halving and set aside. When the store itself is the
        problem (``OUTAGE``) the error is raised: the rows stay spooled and are tried again."""
        if not rows:
            return 0
        try:
            return self._store_batch(rows)
        except Exception as exc:
            if _is_outage(exc):
                raise
            if len(rows) == 1:
                self._set_aside(segment, [encode_row(rows[0])], f"the store refused it ({type(exc).__name__})")
                return 0
            middle = len(rows) // 2
            return self._store_rows(segment, rows[:middle]) + self._store_rows(segment, rows[middle:])

    def _set_aside(self, segment: Segment, lines: list[bytes], why: str) -> None:
        path = self.spool.set_aside(segment, b"\n".join(lines))
        self.set_aside += len(lines)
        metrics.SET_ASIDE.inc(len(lines))
        log.error("%d decision record(s) set aside in %s: %s", len(lines), path, why)

    def _store_batch(self, rows: list[dict[str, Any]]) -> int:
        unique = list({row["request_id"]: row for row in reversed(rows)}.values())[::-1]  # a line spooled twice
        with self._db.write() as session:
            # Only this segment's owner drains it, so a record already stored is one an earlier
            # try committed before its progress was kept: found by key, neither stored nor counted
            # again. (A plain executemany is the driver's fast path: PostgreSQL pipelines one
            # prepared statement, where INSERT … RETURNING would send one huge statement a page.)
            stored: set[str] = set()
            ids = [row["request_id"] for row in unique]
            for start in range(0, len(ids), ID_PAGE):
                stored.update(session.execute(select(DecisionRecord.request_id).where(
                    DecisionRecord.request_id.in_(ids[start:start + ID_PAGE]))).scalars())
            new = [row for row in unique if row["request_id"] not in stored]
            if new:  # DO NOTHING all the same: a row no other drainer can hold must never stop the batch
                insert = postgres_insert if self._db.engine.dialect.name == "postgresql" else sqlite_insert
                session.execute(insert(DecisionRecord).on_conflict_do_nothing(), new)
            rollup = UsageRollup(self.spool.worker, self._defined)
            for row in new:
                rollup.observe(RequestRecord(**row))
            add_rows(session, rollup.take())
            written = self._write_last_used(session, new)
        self._written_used.update(written)  # only once committed: a failed batch writes them again
        self.stored += len(new)
        metrics.STORED.inc(len(new))
        return len(new)

    def _write_last_used(self, session: Session, rows: list[dict[str, Any]]) -> dict[str, float]:
        """Each key's newest use and model in the batch, with the records: exact to
        ``last_used_interval`` (a key is written at most that often by one worker, always on
        its first use), never going backwards. Returns the keys written, and when."""
        newest: dict[str, tuple[datetime, str | None]] = {}
        for row in rows:
            key_id = row["key_id"]
            if key_id is None:
                continue
            model = row["alias"] if row["status"] == 200 and row["error_code"] is None else None
            seen = newest.get(key_id)
            if seen is None or row["ts"] > seen[0]:
                newest[key_id] = (row["ts"], model or (seen[1] if seen else None))
        now = time.monotonic()
        written: dict[str, float] = {}
        for key_id, (moment, model) in newest.items():
            if now - self._written_used.get(key_id, -1e18) < self._last_used_interval:
                continue
            written[key_id] = now
            _set_last_used(session, key_id, moment, model)
        return written

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
