"""Signed audit checkpoints: made as entries are appended and on demand; verified offline; and
what they catch that the hash chain alone does not (a consistent rewrite, a cut-off end, and
— through the cadence — a rewrite whose checkpoints were deleted)."""

import dataclasses
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gatehouse import audit
from gatehouse.app.control import create_control_app
from gatehouse.audit import checkpoints
from gatehouse.audit.log import GENESIS_HASH, entry_hash
from gatehouse.cli import common
from gatehouse.cli.main import app
from gatehouse.core.config import Settings
from gatehouse.identity.admin_keys import AdminPrincipal
from gatehouse.store.models import AuditCheckpoint, AuditEntry, AuditHead, Meta

KEY = Ed25519PrivateKey.generate()
runner = CliRunner()


@pytest.fixture
def signed_log(db):
    checkpoints.configure(KEY, every=3)
    try:
        for index in range(7):
            with db.write() as session:
                audit.append(session, "local:tester", "test.event", f"thing:{index}", {"n": index})
    finally:
        checkpoints.configure(None)
    return db


def sizes(db):
    with db.read() as session:
        return list(session.execute(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size)).scalars())


def stored(db, key=KEY):
    with db.read() as session:
        return checkpoints.verify_stored(session, key.public_key())


def rewrite_from(db, seq, details):
    """What someone with write access to the database could do: edit an entry and recompute
    every hash after it, so that the chain itself verifies."""
    with db.write() as session:
        entries = session.execute(select(AuditEntry).where(AuditEntry.seq >= seq).order_by(AuditEntry.seq)).scalars().all()
        prev = session.get(AuditEntry, seq - 1).hash if seq > 1 else "0" * 64
        for entry in entries:
            if entry.seq == seq:
                entry.details = details
            entry.prev_hash = prev
            entry.hash = prev = entry_hash(entry.seq, entry.ts, entry.actor, entry.action, entry.target, entry.details,
                                           entry.prev_hash)
        session.execute(update(AuditHead).values(hash=prev))


def test_checkpoints_every_n_entries_and_on_demand(signed_log):
    assert sizes(signed_log) == [3, 6]
    with signed_log.write() as session:
        assert checkpoints.checkpoint_now(session, KEY).size == 7
    with signed_log.write() as session:
        assert checkpoints.checkpoint_now(session, KEY) is None  # the head is signed already
    result = stored(signed_log)
    assert result.ok and result.checked == 3


def test_a_consistent_rewrite_passes_the_chain_but_not_the_checkpoints(signed_log):
    rewrite_from(signed_log, 5, '{"n": "edited"}')
    with signed_log.read() as session:
        assert audit.verify(session).ok  # the chain alone cannot tell
    result = stored(signed_log)
    assert not result.ok and result.first_bad_seq == 4
    assert "entry 6 differs from the signed checkpoint" in result.problem and "between entry 4 and entry 6" in result.problem


def test_cutting_entries_off_the_end_is_caught(signed_log):
    with signed_log.write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq > 5))
        session.execute(update(AuditHead).values(seq=5, hash=session.get(AuditEntry, 5).hash))
    with signed_log.read() as session:
        assert audit.verify(session).ok
    result = stored(signed_log)
    assert not result.ok and "entry 6 is missing" in result.problem and "now has 5" in result.problem


def test_an_altered_or_foreign_checkpoint_is_caught(signed_log):
    assert not stored(signed_log, Ed25519PrivateKey.generate()).ok  # another installation's key
    with signed_log.write() as session:
        session.execute(update(AuditCheckpoint).where(AuditCheckpoint.size == 3).values(head_hash="f" * 64))
    result = stored(signed_log)
    assert not result.ok and result.first_bad_seq == 3 and "not signed by this key" in result.problem


def test_an_exported_checkpoint_outlives_a_rewrite_of_the_store(signed_log):
    with signed_log.write() as session:
        checkpoint = checkpoints.checkpoint_now(session, KEY)
        exported = checkpoints.as_dict(checkpoint)
    with signed_log.read() as session:
        assert checkpoints.verify_exported(session, KEY.public_key(), exported).ok
    # Rewrite the log *and* throw away every stored checkpoint: only the exported one remains.
    rewrite_from(signed_log, 2, '{"n": "edited"}')
    with signed_log.write() as session:
        session.execute(delete(AuditCheckpoint))
    with signed_log.read() as session:
        assert audit.verify(session).ok and checkpoints.verify_stored(session, KEY.public_key()).ok
        result = checkpoints.verify_exported(session, KEY.public_key(), exported)
        assert not result.ok and "entry 7 differs" in result.problem
        assert not checkpoints.verify_exported(session, KEY.public_key(), {"size": "x"}).ok


# -- the cadence: a checkpoint at every N entries, so deleting them to hide a rewrite shows ---

def append(db, count, start=0):
    for index in range(start, start + count):
        with db.write() as session:
            audit.append(session, "local:tester", "test.event", f"thing:{index}", {"n": index})


def rewrite_without(db, dropped):
    """Drop entries, renumber and rechain the rest, and delete every stored checkpoint: a
    rewrite that the chain and the remaining (no) checkpoints cannot see."""
    with db.write() as session:
        kept = [entry for entry in session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
                if entry.seq not in dropped]
        rows = [(e.ts, e.actor, e.action, e.target, e.details) for e in kept]
        session.execute(delete(AuditCheckpoint))
        session.execute(delete(AuditEntry))
        prev = GENESIS_HASH
        for seq, (ts, actor, action, target, details) in enumerate(rows, 1):
            digest = entry_hash(seq, ts, actor, action, target, details, prev)
            session.add(AuditEntry(seq=seq, ts=ts, actor=actor, action=action, target=target, details=details,
                                   prev_hash=prev, hash=digest))
            prev = digest
        session.execute(update(AuditHead).values(seq=len(rows), hash=prev))


@pytest.fixture
def verify_cli(db, database_url, home, tmp_path, monkeypatch):
    """`gatehouse audit verify` on this store, as an auditor runs it, with the public key."""
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


def test_a_consistent_rewrite_without_its_checkpoints_is_caught_by_the_cadence(signed_log, verify_cli):
    assert "cadence met (every 3: 2 due" in " ".join(verify_cli().output.split())
    rewrite_without(signed_log, {2, 3})  # 5 entries left, rechained; the checkpoints at 3 and 6 deleted
    with signed_log.read() as session:
        assert audit.verify(session).ok and stored(signed_log).ok and stored(signed_log).checked == 0
    broken = " ".join(verify_cli(code=2).output.split())
    assert "BROKEN at entry 1: no signed checkpoint at 3 entries, which the cadence (every 3) requires" in broken
    report = json.loads(verify_cli("--json", code=2).stdout)
    assert report["ok"] is False and report["cadence"]["missing"] == [3] and report["first_bad_entry"] == 1
    verify_cli("--every", "0")  # the auditor may turn it off, and is told what that gives up
    assert "no checkpoint cadence is required" in verify_cli("--every", "0").output


def test_a_deleted_checkpoint_in_the_middle_is_named(signed_log, verify_cli):
    append(signed_log, 5, start=7)
    checkpoints.configure(KEY, every=3)
    try:
        append(signed_log, 3, start=12)  # 13, 14, 15: a checkpoint at 15
    finally:
        checkpoints.configure(None)
    with signed_log.write() as session:  # 9 and 12 were appended by a process without the key
        session.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size == 6))
    result = json.loads(verify_cli("--json", code=2).stdout)
    assert result["cadence"]["missing"] == [6, 9, 12] and result["first_bad_entry"] == 4
    assert "no signed checkpoint at 6 entries" in result["problems"][0] and "2 later cadence point(s)" in result["problems"][0]


def test_entries_before_the_first_checkpoint_are_legacy_and_deleting_everything_does_not_help(db, verify_cli):
    append(db, 7)  # appended before every process signed: no checkpoint at 3 or 6
    checkpoints.configure(KEY, every=3)
    try:
        append(db, 2, start=7)  # 9: the first checkpoint
    finally:
        checkpoints.configure(None)
    ok = verify_cli()
    assert ok.stdout.startswith("ok — 9 entries")
    assert "2 cadence point(s) before 9 entries have no checkpoint" in " ".join(ok.output.split())
    assert json.loads(verify_cli("--json").stdout)["cadence"] == {"every": 3, "from": 9, "required": 1, "missing": [],
                                                                    "legacy_gaps": 2}
    with db.write() as session:
        session.execute(delete(AuditCheckpoint))  # no "first checkpoint" left to start from: required from 3
    assert json.loads(verify_cli("--json", code=2).stdout)["cadence"]["missing"] == [3, 6, 9]


def test_a_changed_cadence_is_verified_from_where_it_changed(db, verify_cli):
    checkpoints.configure(KEY, every=3)
    try:
        append(db, 6)  # checkpoints at 3 and 6
        checkpoints.configure(KEY, every=4)
        append(db, 6, start=6)  # … then at 8 and 12
    finally:
        checkpoints.configure(None)
    assert json.loads(verify_cli("--every", "4", "--json", code=2).stdout)["cadence"]["missing"] == [4]
    verify_cli("--every", "4", "--cadence-from", "6")
    assert "no signed checkpoint at 7 entries" in verify_cli("--every", "4", "--cadence-from", "7", code=2).output


def test_the_control_plane_and_the_local_cli_sign_the_cadence_on_a_fresh_installation(db, database_url, home,
                                                                                        monkeypatch):
    """No key file yet: the command line's local store (and the control app) create it rather
    than append unsigned, so a fresh installation's cadence has no hole."""
    monkeypatch.setenv("GATEHOUSE_DATABASE_URL", database_url)
    monkeypatch.setenv("GATEHOUSE_AUDIT_CHECKPOINT_EVERY", "2")
    key_file = home / "audit-signing-key"
    assert not key_file.exists()
    try:
        common.open_db().dispose()
        assert key_file.exists()
        append(db, 2)
        with db.read() as session:
            assert session.get(AuditCheckpoint, 2) is not None
        create_control_app(dataclasses.replace(Settings.from_env(), audit_checkpoint_every=2))  # the same key
        append(db, 2, start=2)
        with db.read() as session:
            assert session.get(AuditCheckpoint, 4) is not None
    finally:
        checkpoints.configure(None)


def test_a_second_machine_with_its_own_key_is_refused_until_it_uses_the_installations(db, database_url, home,
                                                                                        tmp_path, monkeypatch):
    """A workstation whose local-mode CLI points at the shared store made its own key: it must
    not sign cadence points with it (they would never verify, and witnesses keep them)."""
    settings = dataclasses.replace(Settings.from_env(), database_url=database_url, audit_checkpoint_every=2)
    try:
        create_control_app(settings)  # the installation: its key signs from the first entry on
        append(db, 2)
        installation_key = (home / "audit-signing-key").read_bytes()
        monkeypatch.setenv("GATEHOUSE_HOME", str(tmp_path / "workstation"))  # another machine: a fresh key
        monkeypatch.setenv("GATEHOUSE_DATABASE_URL", database_url)
        monkeypatch.setenv("GATEHOUSE_AUDIT_CHECKPOINT_EVERY", "2")
        common.open_db().dispose()
        with pytest.raises(checkpoints.ForeignSigningKey, match="set GATEHOUSE_AUDIT_SIGNING_KEY to"):
            append(db, 1, start=2)  # refused at once, not only at the next cadence point
        workstation = checkpoints.ensure_signing_key(Settings.from_env())
        with pytest.raises(checkpoints.ForeignSigningKey), db.write() as session:
            checkpoints.checkpoint_now(session, workstation)
        with db.write() as session:  # a store from before the key row: the newest checkpoint's key rules
            session.execute(delete(Meta).where(Meta.name == checkpoints.KEY_ROW))
        with pytest.raises(checkpoints.ForeignSigningKey):
            append(db, 1, start=2)
        shared = tmp_path / "installation-key.pem"
        shared.write_bytes(installation_key)
        monkeypatch.setenv("GATEHOUSE_AUDIT_SIGNING_KEY", str(shared))
        common.open_db().dispose()
        append(db, 2, start=2)
        with db.read() as session:
            assert session.get(AuditCheckpoint, 4).key_id == checkpoints.key_id(
                checkpoints.load_or_create_signing_key(shared).public_key())
            assert audit.verify(session).entries == 4
    finally:
        checkpoints.configure(None)


def test_the_head_is_never_signed_when_it_does_not_match_its_entry(signed_log, caplog):
    with signed_log.write() as session:
        session.execute(update(AuditHead).values(hash="d" * 64))  # an insider edits the chain head
    with signed_log.write() as session:
        assert checkpoints.checkpoint_now(session, KEY) is None
    assert "AUDIT CHAIN HEAD does not match entry 7" in caplog.text
    assert sizes(signed_log) == [3, 6]


@pytest.mark.parametrize("content, problem", [
    ('{"size": 18446744073709551616, "head": "a", "ts": "t", "signature": "s"}', "its size is not a whole number"),
    ('{"size": true, "head": "a", "ts": "t", "signature": "s"}', "its size is not a whole number"),
    ('{"size": 3.0, "head": "a", "ts": "t", "signature": "s"}', "its size is not a whole number"),
    ('{"size": 3, "head": 5, "ts": "t", "signature": "s"}', "its head is missing or not a string"),
    ("[3]", "a JSON array, not a checkpoint object"),
    ("null", "a JSON null, not a checkpoint object"),
])
def test_a_malformed_exported_checkpoint_is_a_clear_problem(signed_log, verify_cli, tmp_path, content, problem):
    exported = tmp_path / "checkpoint.json"
    exported.write_text(content)
    output = " ".join(verify_cli("--checkpoint", str(exported), code=2).output.split())
    assert f"BROKEN: the checkpoint is not a Gatehouse audit checkpoint: {problem}" in output
    assert "entry None" not in output


def test_an_exported_checkpoint_that_is_a_fifo_a_device_or_huge_is_refused_at_once(signed_log, verify_cli, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (checkpoints.MAX_FILE + 1))
    assert "is not a regular file" in verify_cli("--checkpoint", str(fifo), code=1).output
    assert "is not a regular file" in verify_cli("--checkpoint", "/dev/zero", code=1).output
    assert f"is larger than {checkpoints.MAX_FILE} bytes" in verify_cli("--checkpoint", str(huge), code=1).output
    assert "is not a regular file" in verify_cli("--public-key", str(fifo), code=1).output


class Auditor:
    """Lets every request in as an auditor (what the admin keys decide is tested elsewhere)."""

    def authenticate(self, db, authorization):
        return AdminPrincipal("audrey@example.com", "ak_test", frozenset({"auditor"}))


def test_the_server_side_verify_takes_the_cadence_from_where_it_changed(db, database_url, home, monkeypatch):
    settings = dataclasses.replace(Settings.from_env(), database_url=database_url, audit_checkpoint_every=4)
    checkpoints.configure(KEY, every=3)
    try:
        append(db, 6)  # checkpoints at 3 and 6
        checkpoints.configure(KEY, every=4)
        append(db, 6, start=6)  # … then at 8 and 12
    finally:
        checkpoints.configure(None)
    settings.home.mkdir(parents=True, exist_ok=True)  # the server signs with KEY too
    (settings.home / "audit-signing-key").write_bytes(KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    client = TestClient(create_control_app(settings, Auditor()))
    try:
        assert client.get("/admin/audit/verify").json()["cadence"]["missing"] == [4]
        assert client.get("/admin/audit/verify?cadence_from=6").json()["ok"]
        assert client.get("/admin/audit/verify?cadence_from=0").status_code == 400
        assert client.get("/admin/audit/verify?cadence_from=-1").status_code == 400
        monkeypatch.setenv("GATEHOUSE_AUDIT_CADENCE_FROM", "6")  # the installation's setting, read as it starts
        configured = dataclasses.replace(Settings.from_env(), database_url=database_url, audit_checkpoint_every=4)
        assert configured.audit_cadence_from == 6
        verified = TestClient(create_control_app(configured, Auditor())).get("/admin/audit/verify").json()
        assert verified["ok"] and verified["cadence"]["from"] == 6
        for wrong in ("six", "0", "-1", "٦", str(2**63)):
            monkeypatch.setenv("GATEHOUSE_AUDIT_CADENCE_FROM", wrong)
            with pytest.raises(ValueError, match="GATEHOUSE_AUDIT_CADENCE_FROM must be"):
                Settings.from_env()
    finally:
        checkpoints.configure(None)


def test_the_api_never_exports_a_stored_checkpoint_that_does_not_verify(db, database_url, home):
    settings = dataclasses.replace(Settings.from_env(), database_url=database_url, audit_checkpoint_every=3)
    client = TestClient(create_control_app(settings, Auditor()))  # its own key, made now
    try:
        append(db, 4)
        with db.write() as session:  # an insider's row at the head, before the server signs it
            session.add(AuditCheckpoint(size=4, head_hash=session.get(AuditEntry, 4).hash, ts="2030-01-01",
                                        key_id="x", signature="AAAA"))
        refused = client.post("/admin/audit/checkpoint")
        assert refused.status_code == 400
        assert "no valid checkpoint at the head (4 entries): the checkpoint at 4 entries" in refused.text
        append(db, 1, start=4)
        exported = client.post("/admin/audit/checkpoint")
        assert exported.status_code == 201 and exported.json()["size"] == 5
    finally:
        checkpoints.configure(None)
