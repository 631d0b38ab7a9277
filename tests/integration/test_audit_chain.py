"""The hash chain: verification, tampering, and concurrent writers."""

import threading

from sqlalchemy import delete, select, update

from gatehouse import audit
from gatehouse.store.models import AuditEntry


def fill(db, count=5):
    for index in range(count):
        with db.write() as session:
            audit.append(session, "local:test", "thing.change", f"thing:{index}", {"n": index})


def verify(db):
    with db.read() as session:
        return audit.verify(session)


def test_untouched_chain_verifies(db):
    fill(db)
    result = verify(db)
    assert result.ok and result.entries == 5 and result.first_bad_seq is None


def test_edited_entry_is_named(db):
    fill(db)
    with db.write() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(details='{"n":99}'))
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 3 and "modified" in result.problem


def test_edited_entry_with_recomputed_hash_breaks_the_link(db):
    fill(db)
    with db.write() as session:
        entry = session.get(AuditEntry, 2)
        entry.actor = "local:mallory"
        entry.hash = audit.log.entry_hash(entry.seq, entry.ts, entry.actor, entry.action, entry.target,
                                          entry.details, entry.prev_hash)
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 3 and "does not link" in result.problem


def test_deleted_entries_are_detected(db):
    fill(db)
    with db.write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    assert verify(db).first_bad_seq == 2
    with db.write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq >= 4))
    assert not verify(db).ok


def test_truncated_tail_is_detected(db):
    fill(db)
    with db.write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 5))
    result = verify(db)
    assert not result.ok and "removed from the end" in result.problem


def test_concurrent_writers_never_fork_the_chain(db):
    errors = []

    def writer(worker):
        try:
            for index in range(10):
                with db.write() as session:
                    audit.append(session, f"local:w{worker}", "thing.change", f"thing:{worker}:{index}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = verify(db)
    assert result.ok and result.entries == 40
    with db.read() as session:
        seqs = session.execute(select(AuditEntry.seq).order_by(AuditEntry.seq)).scalars().all()
    assert seqs == list(range(1, 41))
