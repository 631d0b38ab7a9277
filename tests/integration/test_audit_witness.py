"""Witnesses: every checkpoint also kept outside the database (an append-only directory, a
webhook receiver), only once its transaction commits, caught up when a write failed; and
`gatehouse audit verify --witness`, which catches a rewrite re-signed with the real key."""

import base64
import dataclasses
import json
import logging
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from gatehouse import audit
from gatehouse.app.control import create_control_app
from gatehouse.audit import checkpoints, witness
from gatehouse.audit.log import entry_hash
from gatehouse.cli.main import app
from gatehouse.core.config import Settings
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
        checkpoints.configure(KEY, settings.audit_checkpoint_every, witness.publisher(settings))
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
    assert receiver.received == stored(db) == witness.read(directory)


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
    assert witness.read(in_the_way / "witness") == stored(db)


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
    assert "cannot read the witness" in verify_cli("--witness", str(tmp_path / "nope"), code=1).output
