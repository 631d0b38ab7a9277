"""The decision-record spool's figures: what appending costs a request, how long an fsync takes
on this disk (with the fsync interval, the power-loss window), and how fast a backlog drains
into the store once it is back.

    .venv/bin/python scripts/spool_drain.py [RECORDS] [DATABASE_URL]

Without a URL it drains into a fresh SQLite file; give a PostgreSQL URL to measure that.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gatehouse.core.decision import RequestRecord
from gatehouse.runtime.records import RecordWriter, encode
from gatehouse.runtime.spool import Spool
from gatehouse.store.db import Database


def record(n: int) -> RequestRecord:
    return RequestRecord(f"req_{n:024x}", datetime.now(UTC) - timedelta(seconds=1), "chat/completions",
                         "sha256:" + "0" * 64, identity=f"app-{n % 50}", key_id=None, alias="chat",
                         deployment="vllm-a", fallbacks=[], data_class="internal",
                         guardrails=[{"rule": "pii.email", "action": "redact", "shadow": False, "field": "messages[0]",
                                      "start": 3, "end": 20}] if n % 10 == 0 else None,
                         prompt_tokens=120, completion_tokens=40, latency_ms=85.2, ttft_ms=20.1)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as folder:
        url = sys.argv[2] if len(sys.argv) > 2 else f"sqlite:///{folder}/store.db"
        db = Database(url)
        db.upgrade()
        spool = Spool(Path(folder) / "spool", "bench:1", fsync_interval=3600)  # fsync measured by hand below
        spool.open()
        writer = RecordWriter(db, spool)
        records = [record(n) for n in range(count)]

        started = time.perf_counter()
        for one in records:
            writer.add(one)
        appended = time.perf_counter() - started
        size = spool.pending
        print(f"append: {appended / count * 1e6:.1f} µs per record (encode + write), {size / count:.0f} bytes each, "
              f"{count:,} records")

        encode_only = time.perf_counter()
        for one in records[:10_000]:
            encode(one)
        print(f"  of which encoding: {(time.perf_counter() - encode_only) / min(count, 10_000) * 1e6:.1f} µs")

        fsyncs = []
        active = spool.segments()[-1]
        for n in range(50):
            spool.append(encode(record(count + n)))
            assert active.write_fd is not None
            moment = time.perf_counter()
            os.fsync(active.write_fd)
            fsyncs.append(time.perf_counter() - moment)
        median = statistics.median(fsyncs) * 1000
        print(f"fsync: median {median:.2f} ms, max {max(fsyncs) * 1000:.2f} ms over 50; with the default 50 ms interval "
              f"the power-loss window is about {50 + median:.0f} ms of records")

        started, cpu = time.perf_counter(), time.process_time()
        stored = writer.drain()
        drained, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(f"drain: {stored:,} records in {drained:.2f} s = {stored / drained:,.0f} records/s into "
              f"{db.engine.dialect.name} (batches of about {1024 * 1024 // (size // count):,}); this process's CPU "
              f"{cpu / stored * 1e6:.0f} µs per record (SQLite's work included, a PostgreSQL server's not)")
        spool.close()
        db.dispose()


if __name__ == "__main__":
    main()
