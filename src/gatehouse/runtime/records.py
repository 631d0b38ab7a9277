"""Decision records and key last-used times, written in batches off the hot path.

Requests append to an in-memory buffer; a background task writes it every second (or
sooner when it fills). ``last_used_at`` is coalesced: at most one write per key per
flush interval, never one per request. Shutdown flushes everything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import DBAPIError

from gatehouse.core.decision import RequestRecord
from gatehouse.store.db import Database
from gatehouse.store.models import Credential, DecisionRecord

log = logging.getLogger("gatehouse.records")
MAX_BUFFER = 200_000


class RecordWriter:
    def __init__(self, db: Database, flush_interval: float = 1.0, last_used_interval: float = 60.0,
                 observers: Sequence[Callable[[RequestRecord], None]] = ()) -> None:
        self._db = db
        self._observers = tuple(observers)  # metrics, monitoring: see each finished request once
        self._buffer: deque[RequestRecord] = deque()
        self._flush_interval = flush_interval
        self._last_used_interval = last_used_interval
        self._last_used: dict[str, float] = {}
        self._last_model: dict[str, str] = {}  # key id → the alias its latest successful request used
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.rejected = 0

    def add(self, record: RequestRecord) -> None:
        for observe in self._observers:
            try:
                observe(record)
            except Exception as exc:  # a metric must never cost a request its record
                log.error("record observer %s failed: %s", getattr(observe, "__qualname__", observe), type(exc).__name__)
        if len(self._buffer) >= MAX_BUFFER:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(record)
        if record.status == 200 and record.key_id is not None and record.alias is not None:
            self._last_model[record.key_id] = record.alias
        if len(self._buffer) >= 500:
            self._wake.set()

    def note_used(self, used: dict[str, float]) -> None:
        for key_id, moment in used.items():
            if moment > self._last_used.get(key_id, 0.0):
                self._last_used[key_id] = moment

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
            await self.flush_records()
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
        await self.flush_records()
        self.note_used(take_last_used())
        await self.flush_last_used()

    async def flush_records(self) -> None:
        if not self._buffer:
            return
        batch = list(self._buffer)
        self._buffer.clear()
        try:
            await asyncio.to_thread(self._write_records, batch)
        except Exception as exc:
            log.error("could not write %d decision records (%s); will retry", len(batch), type(exc).__name__)
            self._buffer.extendleft(reversed(batch))

    def _write_records(self, batch: list[RequestRecord]) -> None:
        try:
            with self._db.write() as session:
                session.execute(insert(DecisionRecord), [record.row() for record in batch])
        except DBAPIError:
            # One bad row must not hold back every record behind it: write the rest one by one.
            rejected = 0
            for record in batch:
                try:
                    with self._db.write() as session:
                        session.execute(insert(DecisionRecord), [record.row()])
                except DBAPIError:
                    rejected += 1
            if rejected:
                self.rejected += rejected
                log.error("%d decision records could not be stored and were set aside", rejected)

    async def flush_last_used(self) -> None:
        if not self._last_used and not self._last_model:
            return
        used, self._last_used = self._last_used, {}
        models, self._last_model = self._last_model, {}
        try:
            await asyncio.to_thread(self._write_last_used, used, models)
        except Exception as exc:
            log.error("could not record last-used times (%s); will retry", type(exc).__name__)
            self.note_used(used)
            self._last_model = {**models, **self._last_model}

    def _write_last_used(self, used: dict[str, float], models: dict[str, str]) -> None:
        # Deliberately leaves ``revision`` alone: last use is not a change workers must reload.
        with self._db.write() as session:
            for key_id in used.keys() | models.keys():
                # A model can arrive after the flush that wrote its key's time: it is written on its own.
                values: dict[str, Any] = {}
                if key_id in used:
                    values["last_used_at"] = datetime.fromtimestamp(used[key_id], UTC)
                if key_id in models:
                    values["last_model"] = models[key_id]
                session.execute(update(Credential).where(Credential.id == key_id).values(**values))
