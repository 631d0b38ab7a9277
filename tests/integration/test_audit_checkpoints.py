"""Signed audit checkpoints: made as entries are appended and on demand; verified offline; and
what they catch that the hash chain alone does not (a consistent rewrite, a cut-off end)."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update

from gatehouse import audit
from gatehouse.audit import checkpoints
from gatehouse.audit.log import entry_hash
from gatehouse.store.models import AuditCheckpoint, AuditEntry, AuditHead

KEY = Ed25519PrivateKey.generate()


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
