"""The decision-record spool: nothing a worker answered is lost to a crash or an outage, nothing
is stored twice, and the bound does what the operator chose (ADR 0014)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from gatehouse.core.decision import RequestRecord
from gatehouse.monitoring.incidents import EVIDENCE_LOST
from gatehouse.runtime.records import RecordWriter, encode
from gatehouse.runtime.spool import Spool, SpoolError
from gatehouse.store.db import Database
from gatehouse.store.models import DecisionRecord, Incident, UsageMinute

from postgres import PostgresServer


def record(n: int, identity: str = "app") -> RequestRecord:
    return RequestRecord(f"req_{n:06d}", datetime(2026, 12, 1, 12, 0, tzinfo=UTC) + timedelta(milliseconds=n),
                         "chat/completions", "sha256:test", identity=identity, alias="chat", deployment="d1",
                         latency_ms=12.5, prompt_tokens=3, completion_tokens=5)


def writer(db: Database, folder, worker: str = "host:2", **kwargs) -> RecordWriter:
    spool = Spool(folder, worker, fsync_interval=0.01)
    spool.open()
    return RecordWriter(db, spool, flush_interval=60, **kwargs)


def stored_ids(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.execute(select(DecisionRecord.request_id).order_by(DecisionRecord.request_id)).scalars())


def gateway_requests(db: Database) -> int:
    with db.read() as session:
        return session.execute(select(func.coalesce(func.sum(UsageMinute.requests), 0))
                               .where(UsageMinute.scope == "gateway")).scalar_one()


def test_a_worker_killed_with_sigkill_loses_no_record_it_spooled(db, tmp_path):
    folder = tmp_path / "spool"
    script = textwrap.dedent(f"""
        import os, signal
        from datetime import UTC, datetime, timedelta
        from pathlib import Path
        from gatehouse.core.decision import RequestRecord
        from gatehouse.runtime.records import encode
        from gatehouse.runtime.spool import Spool, SpoolError
        spool = Spool(Path({str(folder)!r}), "host:1", fsync_interval=60, segment_bytes=4096)
        spool.open()
        for n in range(500):
            spool.append(encode(RequestRecord(f"req_{{n:06d}}", datetime(2026, 12, 1, 12, tzinfo=UTC)
                                              + timedelta(milliseconds=n), "chat/completions", "sha256:test")))
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no fsync: the page cache holds the lines
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert len(list(folder.glob("*.spool"))) > 1  # several segments (rotated at 4 KiB), none deleted
    survivor = writer(db, folder)
    assert survivor.drain() == 500
    assert stored_ids(db) == [f"req_{n:06d}" for n in range(500)]
    assert gateway_requests(db) == 500
    survivor.spool.close()
    assert not list(folder.glob("*.spool"))  # claimed, stored, deleted


def test_a_segment_stored_but_not_deleted_before_a_crash_is_not_stored_or_counted_twice(db, tmp_path):
    folder = tmp_path / "spool"
    first = writer(db, folder, worker="host:1")
    for n in range(50):
        first.add(record(n))
    [segment] = first.spool.segments()
    copy = shutil.copy(segment.path, tmp_path / "before-delete")  # what a crash right after the commit leaves
    first.drain()
    first.spool.close()
    shutil.copy(copy, folder / segment.path.name)
    second = writer(db, folder)
    assert second.drain() == 0  # every record was in the store already
    assert len(stored_ids(db)) == 50 and gateway_requests(db) == 50
    second.spool.close()
    assert not list(folder.glob("*.spool"))


def test_an_orphan_s_torn_last_record_is_set_aside_and_the_rest_stored(db, tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    lines = b"".join(encode(record(n)) + b"\n" for n in range(3))
    orphan = folder / "00000000000000000001-host_1.spool"
    orphan.write_bytes(lines + encode(record(3))[:40])  # died mid-write
    orphan.chmod(0o600)
    survivor = writer(db, folder)
    assert survivor.drain() == 3
    assert stored_ids(db) == ["req_000000", "req_000001", "req_000002"]
    [aside] = (folder / "rejected").glob("*.jsonl")
    assert aside.read_bytes().startswith(encode(record(3))[:40]) and survivor.set_aside == 1
    survivor.spool.close()


def test_refuse_mode_stops_accepting_at_the_bound_with_room_for_requests_in_flight(db, tmp_path):
    refusing = writer(db, tmp_path / "spool", max_bytes=20_000, refuse_at_bound=True)
    while refusing.accepting:
        refusing.add(record(len(refusing.spool.segments()[0].path.name) + refusing.spool.pending))
    assert refusing.spool.pending >= 20_000 / 2 and refusing.lost == 0  # refused with room to spare
    refusing.drain()
    assert refusing.accepting and refusing.spool.pending == 0
    refusing.spool.close()


@pytest.fixture(scope="module")
def outage_server():
    """A PostgreSQL server of this module's own, which its tests stop and start."""
    server = PostgresServer()
    yield server
    server.stop()


def test_an_outage_keeps_records_in_the_spool_and_they_are_drained_in_order_when_the_store_is_back(
        outage_server, tmp_path):
    db = Database(outage_server.create_database())
    db.upgrade()
    spooled = writer(db, tmp_path / "spool")
    for n in range(100):
        spooled.add(record(n))
    spooled.drain()
    outage_server.pause()
    try:
        for n in range(100, 300):
            spooled.add(record(n))
        with pytest.raises(OperationalError):
            spooled.drain()
        assert spooled.store_down_since is not None and spooled.spool.pending > 0
    finally:
        outage_server.resume()
    assert spooled.drain() == 200
    assert stored_ids(db) == [f"req_{n:06d}" for n in range(300)] and gateway_requests(db) == 300
    assert spooled.store_down_since is None and spooled.spool.pending == 0
    spooled.spool.close()
    db.dispose()


def test_serve_mode_counts_what_the_bound_cost_and_opens_an_incident_when_the_store_is_back(outage_server, tmp_path):
    db = Database(outage_server.create_database())
    db.upgrade()
    serving = writer(db, tmp_path / "spool", max_bytes=5_000, refuse_at_bound=False)
    outage_server.pause()
    try:
        for n in range(100):
            serving.add(record(n))
        assert serving.accepting  # serve mode never refuses
        with pytest.raises(OperationalError):
            serving.drain()
    finally:
        outage_server.resume()
    kept = serving.drain()
    assert kept > 0 and serving.lost == 100 - kept
    with db.read() as session:
        [incident] = session.execute(select(Incident).where(Incident.threshold == EVIDENCE_LOST)).scalars()
    assert incident.value == serving.lost and incident.subject == "host:2" and incident.status == "open"
    serving.drain()  # reported once
    with db.read() as session:
        assert session.execute(select(func.count()).select_from(Incident)).scalar_one() == 1
    serving.spool.close()
    db.dispose()


def test_a_segment_someone_else_could_have_written_is_never_stored_or_deleted(db, tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    planted = folder / "00000000000000000001-host_1.spool"
    planted.write_bytes(encode(record(1, identity="ceo-assistant")) + b"\n")
    planted.chmod(0o644)  # readable and (with the folder's old mode) writable by others: not evidence
    survivor = writer(db, folder)
    assert survivor.drain() == 0 and stored_ids(db) == [] and planted.exists()
    survivor.spool.close()


def test_a_spool_folder_open_to_other_users_is_refused(tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    folder.chmod(0o733)
    with pytest.raises(SpoolError, match="open to other users"):
        Spool(folder, "host:1").open()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    with pytest.raises(SpoolError, match="not a link"):
        Spool(link, "host:1").open()


def test_a_dead_worker_s_stream_without_an_end_is_stored_as_stopped(db, tmp_path):
    folder = tmp_path / "spool"
    first = writer(db, folder, worker="host:1")
    streaming = record(7)
    streaming.stream = True
    finished = record(8)
    finished.stream = True
    assert first.started(streaming) and first.started(finished) and first.add(finished)
    for segment in first.spool.segments():  # the worker dies: its locks go, its lines stay
        os.close(segment.lock_fd)
    second = writer(db, folder)
    second.drain()  # the orphan: one finished stream stored; the other's record goes to this spool
    second.drain()
    with db.read() as session:
        rows = {r.request_id: r.error_code for r in session.execute(select(DecisionRecord)).scalars()}
    assert rows == {"req_000007": "worker_stopped_mid_stream", "req_000008": None}
    assert gateway_requests(db) == 2
    second.spool.close()


def test_a_record_the_store_cannot_take_for_any_reason_is_set_aside_and_does_not_stop_the_drain(db, tmp_path):
    spooled = writer(db, tmp_path / "spool")
    poison = record(1)
    poison.prompt_tokens = 2**63 + 5  # past every integer column (an upstream's nonsense that got this far)
    spooled.add(poison)
    for n in range(2, 12):
        spooled.add(record(n))
    assert spooled.drain() == 10 and spooled.set_aside == 1
    assert len(stored_ids(db)) == 10 and spooled.spool.pending == 0
    spooled.spool.close()
