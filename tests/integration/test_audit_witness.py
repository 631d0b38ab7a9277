"""Witnesses: every checkpoint also kept outside the database (an append-only directory, a
webhook receiver), only once its transaction commits, caught up when a write failed; and
`gatehouse audit verify --witness`, which catches a rewrite re-signed with the real key."""

import base64
import dataclasses
import errno
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from gatehouse import audit
from gatehouse.app.control import create_control_app
from gatehouse.audit import checkpoints, delivery, witness, witness_check
from gatehouse.audit.log import entry_hash
from gatehouse.cli.main import app
from gatehouse.core.config import Settings
from gatehouse.store.db import Database
from gatehouse.store.models import AuditCheckpoint, AuditEntry, AuditHead

from helpers import Receiver

KEY = Ed25519PrivateKey.generate()
runner = CliRunner()


@pytest.fixture
def settings_for(database_url, home):
    def make(*targets: str, environment: str = "prod") -> Settings:
        return dataclasses.replace(Settings.from_env(), database_url=database_url, audit_checkpoint_every=3,
                                   audit_witness=targets, environment=environment)
    return make


@pytest.fixture
def witnessed(settings_for):
    """This process signs every 3 entries with KEY and hands each checkpoint to the targets."""
    def configure(*targets: str) -> Settings:
        settings = settings_for(*targets)
        checkpoints.configure(KEY, settings.audit_checkpoint_every, delivery.publisher(settings))
        return settings
    yield configure
    checkpoints.configure(None)


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def append(db, count, start=0):
    for index in range(start, start + count):
        with db.write() as session:
            audit.append(session, "local:tester", "test.event", f"thing:{index}", {"n": index})


def stored(db):
    with db.read() as session:
        return [checkpoints.as_dict(c) for c in session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.size))
                .scalars()]


def rewrite_and_resign(db, seq, details, key=KEY):
    """An insider with the database *and* the signing key: edit an entry, recompute every hash
    after it, and replace the stored checkpoints with new ones signed by the real key."""
    with db.write() as session:
        entries = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars().all()
        prev = entries[seq - 2].hash if seq > 1 else "0" * 64
        for entry in entries[seq - 1:]:
            if entry.seq == seq:
                entry.details = details
            entry.prev_hash = prev
            entry.hash = prev = entry_hash(entry.seq, entry.ts, entry.actor, entry.action, entry.target, entry.details,
                                           entry.prev_hash)
        session.execute(update(AuditHead).values(hash=prev))
        sizes = list(session.execute(select(AuditCheckpoint.size)).scalars())
        session.execute(delete(AuditCheckpoint))
        for size in sizes:
            head = next(e.hash for e in entries if e.seq == size)
            ts = datetime.now(UTC).isoformat(timespec="microseconds")
            signature = base64.b64encode(key.sign(checkpoints.payload(size, head, ts))).decode()
            session.add(AuditCheckpoint(size=size, head_hash=head, ts=ts, key_id=checkpoints.key_id(key.public_key()),
                                        signature=signature))


@pytest.fixture
def verify_cli(database_url, home, tmp_path, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", database_url)
    monkeypatch.setenv("GATEHOUSE_AUDIT_CHECKPOINT_EVERY", "3")
    pem = tmp_path / "audit.pem"
    pem.write_text(checkpoints.public_pem(KEY.public_key()))

    def run(*args, code=0):
        result = runner.invoke(app, ["audit", "verify", "--public-key", str(pem), *args])
        assert result.exit_code == code, result.output
        assert "Traceback" not in result.output
        return result
    return run


def test_each_checkpoint_lands_in_the_witness_directory_once_committed(db, witnessed, tmp_path):
    directory = tmp_path / "witness"
    witnessed(f"dir:{directory}")
    append(db, 7)
    files = sorted(path.name for path in directory.iterdir())
    assert files == ["000000000003.json", "000000000006.json"]
    for path in directory.iterdir():
        assert path.stat().st_mode & 0o777 == 0o444
    assert [json.loads((directory / name).read_text()) for name in files] == stored(db)
    with pytest.raises(witness.WitnessError, match="different checkpoint at 3 entries"):  # never overwritten
        witness.DirWitness(directory).write({**stored(db)[0], "head": "f" * 64})
    witness.DirWitness(directory).write(stored(db)[0])  # the same one again: already there
    (directory / "000000000009.json").write_text('{"size": 9, "he')  # a write cut short
    with pytest.raises(witness.WitnessError, match="unreadable 000000000009.json"):
        witness.DirWitness(directory).write({**stored(db)[0], "size": 9})


def test_a_rolled_back_checkpoint_never_reaches_the_witness(db, witnessed, tmp_path, receiver):
    directory = tmp_path / "witness"
    witnessed(f"dir:{directory}", receiver.url)
    append(db, 2)
    with pytest.raises(RuntimeError), db.write() as session:
        audit.append(session, "local:tester", "test.event", "thing:rolled-back")  # entry 3: signed, then rolled back
        assert session.get(AuditCheckpoint, 3) is not None
        raise RuntimeError("the change failed")
    assert not directory.exists() and receiver.received == []
    with db.write() as session:
        with pytest.raises(RuntimeError), session.begin_nested():  # a savepoint that held it rolls back
            audit.append(session, "local:tester", "test.event", "thing:savepoint")
            raise RuntimeError("the inner change failed")
        audit.append(session, "local:tester", "test.event", "thing:kept")  # entry 3 again, this one committed
    assert [item["size"] for item in receiver.received] == [3]
    assert receiver.received == stored(db) == witness_check.read(directory).items


def test_a_failing_directory_witness_is_logged_and_caught_up(db, witnessed, tmp_path, caplog):
    in_the_way = tmp_path / "not-a-directory"
    in_the_way.write_text("")
    settings = witnessed(f"dir:{in_the_way / 'witness'}")
    with caplog.at_level(logging.ERROR, logger="gatehouse"):
        append(db, 7)  # the entries are committed all the same
    assert [r.getMessage() for r in caplog.records if "AUDIT WITNESS FAILED" in r.getMessage()] == [
        f"AUDIT WITNESS FAILED: the checkpoint at {size} entries is not yet witnessed: dir:{in_the_way / 'witness'}: "
        "NotADirectoryError (retried by the gateway's checkpoint job)" for size in (3, 6)]
    lagging = witness.catch_up(db, settings)
    assert [(s.ok, s.lag, s.newest) for s in lagging] == [(False, 2, None)] and "NotADirectoryError" in lagging[0].problem
    in_the_way.unlink()  # the mount is back
    assert witness.catch_up(db, settings) == [witness.WitnessStatus(f"dir:{in_the_way / 'witness'}", True, 0, 6)]
    assert witness_check.read(in_the_way / "witness").items == stored(db)


def test_a_webhook_witness_that_is_down_is_caught_up_without_leaking_its_credentials(db, witnessed, receiver, caplog):
    url = receiver.url.replace("http://", "http://witness:s3cr3t-pw@") + "?token=t0ps3cr3t"
    settings = witnessed(url)
    receiver.status = 503
    with caplog.at_level(logging.ERROR, logger="gatehouse"):
        append(db, 4)
        down = witness.catch_up(db, settings)
    label = f"http://127.0.0.1:{receiver.server.server_port}"
    assert down == [witness.WitnessStatus(label, False, 1, None, f"{label}: HTTP 503")]
    assert "AUDIT WITNESS FAILED" in caplog.text and "s3cr3t" not in caplog.text + repr(down)
    receiver.status = 202
    receiver.received.clear()
    assert witness.catch_up(db, settings) == [witness.WitnessStatus(label, True, 0, 3)]
    assert receiver.received == stored(db)
    append(db, 3, start=4)  # the checkpoint at 6 goes out as it is signed …
    assert receiver.received == stored(db)
    assert witness.catch_up(db, settings)[0].lag == 0  # … and once more by the catch-up, which counts only its own
    assert [item["size"] for item in receiver.received] == [3, 6, 6]


def test_a_webhook_witness_receives_the_checkpoint_json_through_the_control_plane(db, settings_for, receiver):
    settings = settings_for(receiver.url)
    try:
        create_control_app(settings)  # what every local command runs: it signs and witnesses
        append(db, 3)
    finally:
        checkpoints.configure(None)
    [sent] = receiver.received
    assert set(sent) == {"log", "size", "head", "ts", "key_id", "signature"} and sent["size"] == 3
    public = checkpoints.ensure_signing_key(settings).public_key()
    with db.read() as session:
        assert sent["head"] == session.get(AuditEntry, 3).hash
        assert checkpoints.verify_exported(session, public, sent).ok


def test_no_witness_outside_dev_is_a_problem_to_show(db, settings_for):
    assert witness.catch_up(db, settings_for(environment="dev")) == []
    [status] = witness.catch_up(db, settings_for())
    assert not status.ok and "no audit witness is configured" in status.problem
    with pytest.raises(ValueError, match="target 1 is neither"):
        witness.parse(["ftp://user:pw@host"], settings_for().home)
    with pytest.raises(ValueError, match="absolute path"):
        witness.parse(["dir:relative"], settings_for().home)


def test_a_rewrite_resigned_with_the_real_key_is_caught_by_the_witness(db, witnessed, verify_cli, tmp_path, receiver):
    directory = tmp_path / "witness"
    witnessed(f"dir:{directory}", receiver.url)
    append(db, 7)
    kept = tmp_path / "received.jsonl"  # what a webhook receiver might keep: one checkpoint a line
    kept.write_text("".join(json.dumps(item) + "\n" for item in receiver.received))
    ok = " ".join(verify_cli("--witness", str(directory), "--witness", str(kept)).output.split())
    assert f"witness {directory}: 2 checkpoints match, witness {kept}: 2 checkpoints match" in ok
    checkpoints.configure(None)
    rewrite_and_resign(db, 2, '{"n": "edited"}')
    verify_cli()  # the chain, the stored checkpoints and the cadence all agree with the rewrite
    broken = " ".join(verify_cli("--witness", str(directory), code=2).output.split())
    assert (f"BROKEN at entry 1: witness {directory}: entry 3 differs from the signed checkpoint of "
            f"{receiver.received[0]['ts']}: the log was rewritten between entry 1 and entry 3") in broken
    report = json.loads(verify_cli("--witness", str(kept), "--json", code=2).stdout)
    assert report["witnesses"] == [{"witness": str(kept), "ok": False, "checkpoints": 2, "verified": 0, "newest": 6,
                                    "lag": 0, "problem": report["problems"][0]}]


def test_a_cut_off_end_and_a_forged_witness_are_caught_and_lag_is_a_warning(db, witnessed, verify_cli, tmp_path):
    directory = tmp_path / "witness"
    witnessed()  # no witness for the first checkpoint
    append(db, 3)
    witnessed(f"dir:{directory}")
    append(db, 4, start=3)
    report = json.loads(verify_cli("--witness", str(directory), "--json").stdout)
    assert report["ok"] and report["witnesses"][0]["lag"] == 1 and "lags" in report["warnings"][0]
    lagging = " ".join(verify_cli("--witness", str(directory)).output.split())
    assert "warning: witness" in lagging and "lacks 1 of the store's checkpoints (the newest it holds: 6)" in lagging
    forged = tmp_path / "forged.jsonl"
    forged.write_text(json.dumps({**stored(db)[1], "head": "e" * 64}) + "\n")
    assert "not signed by this key" in verify_cli("--witness", str(forged), code=2).output
    with db.write() as session:  # cut entries 6 and 7 off and drop the checkpoint at 6
        session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size == 6))
        session.execute(delete(AuditEntry).where(AuditEntry.seq > 5))
        session.execute(update(AuditHead).values(seq=5, hash=session.get(AuditEntry, 5).hash))
    verify_cli()  # only 3 is due, and it is there
    assert "entry 6 is missing" in " ".join(verify_cli("--witness", str(directory), code=2).output.split())
    missing = " ".join(verify_cli("--witness", str(tmp_path / "nope"), code=2).output.split())
    assert f"BROKEN: witness {tmp_path / 'nope'}: cannot be read (No such file or directory)" in missing


# -- review fixes: what reaches a witness, how long a commit waits, what a witness may hold ----

def forge(db, size, head, key=None):
    """An insider's row in audit_checkpoints: a bogus signature, or (``key``) one over ``head``."""
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    signature = (base64.b64encode(key.sign(checkpoints.payload(size, head, ts))).decode() if key is not None
                 else base64.b64encode(b"\0" * 64).decode())
    with db.write() as session:
        session.add(AuditCheckpoint(size=size, head_hash=head, ts=ts, key_id=checkpoints.key_id(KEY.public_key()),
                                    signature=signature))


def test_a_checkpoint_an_insider_added_to_the_store_never_reaches_a_witness(db, witnessed, verify_cli, tmp_path,
                                                                               receiver, caplog):
    directory = tmp_path / "witness"
    settings = witnessed(f"dir:{directory}", receiver.url)
    append(db, 8)  # checkpoints at 3 and 6
    with db.read() as session:
        head_7 = session.get(AuditEntry, 7).hash
    forge(db, 7, head_7)  # the real head, a signature that is not ours
    forge(db, 5, "c" * 64, key=KEY)  # signed by the key, but not what the store's entry 5 is
    forge(db, 100, "a" * 64)  # past the head
    forge(db, 12, "b" * 64)  # where a real one will be due: it must not block the append that reaches 12
    receiver.received.clear()
    with caplog.at_level(logging.ERROR, logger="gatehouse"):
        statuses = witness.catch_up(db, settings)
    assert sorted(path.name for path in directory.iterdir()) == ["000000000003.json", "000000000006.json"]
    assert [item["size"] for item in receiver.received] == [3, 6]  # the good ones again; never the forged four
    for status in statuses:
        assert not status.ok and status.lag == 0
        assert "the store holds 4 checkpoint(s) that do not verify, never written to a witness" in status.problem
    assert caplog.text.count("AUDIT CHECKPOINT REJECTED") == 4
    with caplog.at_level(logging.ERROR, logger="gatehouse"):
        append(db, 4, start=8)  # the real checkpoint at 9 is made; at 12 the append goes ahead, unsigned
    assert "the store already holds a checkpoint at 12 entries, before that entry existed" in caplog.text
    assert delivery.drain(5) == 0 and (directory / "000000000009.json").exists()
    assert not (directory / "000000000012.json").exists()
    report = json.loads(verify_cli("--witness", str(directory), "--json", code=2).stdout)
    assert report["witnesses"][0]["ok"] and report["witnesses"][0]["verified"] == 3  # the store's rows fail, not it
    assert "entry 5 differs from the signed checkpoint" in report["problems"][0]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="gatehouse"):  # nor does one handed over after a commit
        delivery.publisher(settings, KEY.public_key())([{**stored(db)[0], "size": 12, "head": "b" * 64}])
        assert delivery.drain(5) == 0
    assert not (directory / "000000000012.json").exists() and "AUDIT CHECKPOINT REJECTED" in caplog.text


class Drip:
    """A webhook receiver that answers one byte every ``pause`` seconds: each read is quick, the
    whole answer is not."""

    def __init__(self, pause: float = 0.1, length: int = 60) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.pause, self.length, self.open = pause, length, True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            for byte in (b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * self.length):
                try:
                    connection.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(self.pause)

    def close(self) -> None:
        self.open = False
        self.server.close()


def test_a_slow_webhook_never_holds_the_committing_caller(db, witnessed, monkeypatch, caplog):
    monkeypatch.setattr(witness, "DEADLINE", 0.5)
    monkeypatch.setattr(delivery, "COMMIT_WAIT", 0.2)
    drip = Drip()  # the whole answer would take 6 s
    try:
        settings = witnessed(drip.url)
        append(db, 2)
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="gatehouse"):
            append(db, 1, start=2)  # the checkpoint at 3 is handed over after the commit
            waited = time.monotonic() - started
            assert waited < 0.5  # COMMIT_WAIT, not the receiver's pace
            assert delivery.drain(5) == 0
        assert "not yet witnessed: http://127.0.0.1" in caplog.text and "no answer within 0.5 s" in caplog.text
        started = time.monotonic()
        [status] = witness.catch_up(db, settings)  # the backstop is bounded as well
        assert time.monotonic() - started < 2 and "no answer within 0.5 s" in status.problem
    finally:
        drip.close()


EXITING = """
import logging, sys
logging.basicConfig(level=logging.ERROR)
from gatehouse import audit
from gatehouse.audit import delivery
from gatehouse.core.config import Settings
from gatehouse.store.db import Database
delivery.COMMIT_WAIT = 0  # the process exits at once after its commit
delivery.EXIT_WAIT = float(sys.argv[1])
settings = Settings.from_env()
delivery.configure(settings)
db = Database(settings.database_url)
with db.write() as session:
    audit.append(session, "local:tester", "test.event", "thing:exit")
"""


class SlowReceiver(Receiver):
    def decode(self, body: bytes, content_type: str) -> list:
        time.sleep(0.5)
        self.status = 503  # answered after half a second, and only then
        return [json.loads(body)]


def test_a_process_that_exits_waits_for_its_deliveries_and_says_what_it_left(db, database_url, home, tmp_path):
    receiver = SlowReceiver()
    env = {**os.environ, "GATEHOUSE_DATABASE_URL": database_url, "GATEHOUSE_AUDIT_CHECKPOINT_EVERY": "1",
           "GATEHOUSE_AUDIT_WITNESS": receiver.url, "GATEHOUSE_HOME": str(home)}
    try:
        waited = subprocess.run([sys.executable, "-c", EXITING, "5"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert waited.returncode == 0 and "AUDIT WITNESS FAILED" in waited.stderr and "HTTP 503" in waited.stderr
        left = subprocess.run([sys.executable, "-c", EXITING, "0.1"], env=env, capture_output=True, text=True,
                              timeout=60)
        assert left.returncode == 0
        assert "1 checkpoint delivery(ies) not finished as this process exits" in left.stderr
        assert "witness.catch_up" in left.stderr
    finally:
        receiver.close()
    assert [item["size"] for item in receiver.received][:1] == [1]


def test_a_write_cut_short_is_neither_counted_nor_fatal(db, witnessed, verify_cli, tmp_path, monkeypatch):
    directory = tmp_path / "witness"
    settings = witnessed(f"dir:{directory}")
    target = witness.DirWitness(directory)
    real_fsync = os.fsync

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    append(db, 3)  # the checkpoint at 3: its write fails mid-way
    assert delivery.drain(5) == 0
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert list(directory.iterdir()) == []  # no file under its name, no draft left behind
    assert [item["size"] for item in target.lacking(stored(db))] == [3]
    assert witness.catch_up(db, settings) == [witness.WitnessStatus(f"dir:{directory}", True, 0, 3)]
    checkpoints.configure(None)
    append(db, 3, start=3)
    with db.write() as session:
        checkpoint = checkpoints.checkpoint_now(session, KEY)
    assert checkpoint.size == 6
    (directory / "000000000006.json").write_text('{"size": 6, "he')  # what a writer without the draft left
    assert [item["size"] for item in target.lacking(stored(db))] == [6]
    [status] = witness.catch_up(db, settings, public_key=KEY.public_key())
    assert not status.ok and "holds an unreadable 000000000006.json" in status.problem
    broken = verify_cli("--witness", str(directory), "--json", code=2)
    report = json.loads(broken.stdout)
    assert report["witnesses"][0]["verified"] == 1
    assert report["problems"] == [f"witness {directory}: 000000000006.json is not JSON"]


GOOD = {"log": "gatehouse-audit", "head": "3d66" * 16, "ts": "2026-12-02T09:18:17.084304+00:00",
        "signature": "XHF8", "key_id": "4ac83f45dce1017a"}


@pytest.mark.parametrize("line, problem", [
    (json.dumps({**GOOD, "size": 2**64}), "line 1 is not a checkpoint: its size is not a whole number from 1"),
    (json.dumps({**GOOD, "size": 2**63}), "line 1 is not a checkpoint: its size is not a whole number from 1"),
    (json.dumps({**GOOD, "size": True}), "line 1 is not a checkpoint: its size is not a whole number"),
    (json.dumps({**GOOD, "size": 3.9}), "line 1 is not a checkpoint: its size is not a whole number"),
    (json.dumps({**GOOD, "size": "3"}), "line 1 is not a checkpoint: its size is not a whole number"),
    (json.dumps({**GOOD, "size": -3}), "line 1 is not a checkpoint: its size is not a whole number"),
    (json.dumps({**GOOD, "size": 3, "signature": 5}), "line 1 is not a checkpoint: its signature is missing"),
    ('{"head": "x"}', "line 1 is not a checkpoint: its size is not a whole number"),
    ("hello", "line 1 is not JSON"),
    ("null", "line 1 is not a checkpoint: a JSON null, not a checkpoint object"),
    ("[]", "line 1 is not a checkpoint: a JSON array, not a checkpoint object"),
    ("5", "line 1 is not a checkpoint: a JSON number, not a checkpoint object"),
    ('{"size": 1' + "0" * 60 + "}", "line 1 is not"),
])
def test_a_witness_file_that_holds_something_else_is_that_witness_s_problem(db, witnessed, verify_cli, tmp_path,
                                                                             line, problem):
    directory = tmp_path / "witness"
    witnessed(f"dir:{directory}")
    append(db, 3)
    assert delivery.drain(5) == 0
    kept = tmp_path / "received.jsonl"
    kept.write_text(line + "\n" + json.dumps(stored(db)[0]) + "\n")
    result = verify_cli("--witness", str(kept), "--witness", str(directory), "--json", code=2)
    report = json.loads(result.stdout)
    assert report["problems"] == [f"witness {kept}: {problem}" + report["problems"][0].split(problem, 1)[1]]
    assert [w["ok"] for w in report["witnesses"]] == [False, True]  # the other witness is still checked
    assert report["witnesses"][0]["verified"] == 1 and report["witnesses"][0]["newest"] == 3
    assert '"newest": -1' not in result.output and "Traceback" not in result.output


def test_a_witness_that_is_a_fifo_a_device_a_link_or_huge_is_refused_at_once(db, witnessed, verify_cli, tmp_path):
    directory = tmp_path / "witness"
    witnessed(f"dir:{directory}")
    append(db, 6)
    assert delivery.drain(5) == 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    dev_zero = tmp_path / "zero.jsonl"
    dev_zero.symlink_to("/dev/zero")
    for path in (fifo, dev_zero):
        output = " ".join(verify_cli("--witness", str(path), code=2).output.split())
        assert f"BROKEN: witness {path}: is not a regular file" in output
    os.chmod(directory, 0o755)
    os.mkfifo(directory / "000000000009.json")
    (directory / "000000000012.json").symlink_to("/dev/zero")
    (directory / "000000000015.json").write_bytes(b" " * (witness_check.MAX_FILE + 1))
    report = json.loads(verify_cli("--witness", str(directory), "--json", code=2).stdout)
    assert report["witnesses"][0]["verified"] == 2
    assert report["problems"] == [f"witness {directory}: 000000000009.json is not a regular file (and 2 more such)"]
    assert witness.DirWitness(directory).holds() == {3, 6}


def test_an_empty_or_unmounted_witness_fails(db, witnessed, verify_cli, tmp_path):
    witnessed()
    append(db, 6)
    empty, blank = tmp_path / "mountpoint", tmp_path / "received.jsonl"
    empty.mkdir()
    blank.write_text("")
    for path in (empty, blank):
        output = " ".join(verify_cli("--witness", str(path), code=2).output.split())
        assert (f"BROKEN: witness {path} holds no checkpoint, but the store holds 2: the wrong path, a volume not "
                "mounted, or a witness that never received one") in output


def test_a_cadence_larger_than_the_one_used_is_a_warning_when_no_checkpoint_is_stored(db, verify_cli, monkeypatch):
    append(db, 7)  # no process signed, or every checkpoint was deleted
    assert "no signed checkpoint at 3 entries" in verify_cli(code=2).output
    output = " ".join(verify_cli("--every", "1000").output.split())
    assert ("warning: the store holds no signed checkpoint at all, though it has 7 entries: none is due every 1000, "
            "but 2 would be every 3") in output
    monkeypatch.setenv("GATEHOUSE_AUDIT_CHECKPOINT_EVERY", "1000")  # an installation with fewer entries than that
    output = " ".join(verify_cli().output.split())
    assert ("warning: the store holds no signed checkpoint at all, though it has 7 entries: none is due every 1000; "
            "only the hash chain vouches for them") in output


def test_a_forked_child_delivers_its_own_checkpoints(db, database_url, witnessed, tmp_path):
    directory = tmp_path / "witness"
    witnessed(f"dir:{directory}")
    append(db, 3)  # the parent's delivery thread has started
    pid = os.fork()
    if pid == 0:  # a worker forked from it: it has none of its parent's threads
        try:
            append(Database(database_url), 3, start=3)
            os._exit(0 if delivery.drain(5) == 0 and (directory / "000000000006.json").exists() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
