"""Append-only, hash-chained audit log.

Each entry's hash covers its own fields and the previous entry's hash, so editing,
deleting or reordering any entry breaks every hash after it. Entries are written in the
same transaction as the change they describe: if the audit write fails, the change fails.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.audit import checkpoints
from gatehouse.store.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def entry_hash(seq: int, ts: str, actor: str, action: str, target: str, details: str, prev_hash: str) -> str:
    material = canonical_json(
        {"seq": seq, "ts": ts, "actor": actor, "action": action, "target": target,
         "details": details, "prev_hash": prev_hash}
    )
    return hashlib.sha256(material.encode()).hexdigest()


def append(session: Session, actor: str, action: str, target: str, details: dict[str, Any] | None = None) -> AuditEntry:
    """Add one entry to the chain inside the caller's transaction."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    seq = head.seq + 1
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    details_text = canonical_json(details or {})
    digest = entry_hash(seq, ts, actor, action, target, details_text, head.hash)
    entry = AuditEntry(seq=seq, ts=ts, actor=actor, action=action, target=target,
                       details=details_text, prev_hash=head.hash, hash=digest)
    session.add(entry)
    head.seq, head.hash = seq, digest
    session.flush()
    checkpoints.on_append(session, seq, digest)
    return entry


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None


def verify(session: Session, batch: int = 5000) -> VerifyResult:
    """Recompute the whole chain; name the first entry that does not match."""
    expected_prev, expected_seq, count = GENESIS_HASH, 1, 0
    last_seq = 0
    while True:
        rows = session.execute(
            select(AuditEntry).where(AuditEntry.seq > last_seq).order_by(AuditEntry.seq).limit(batch)
        ).scalars().all()
        if not rows:
            break
        for entry in rows:
            if entry.seq != expected_seq:
                return VerifyResult(False, count, expected_prev, expected_seq,
                                    f"entry {expected_seq} is missing (next entry found is {entry.seq})")
            if entry.prev_hash != expected_prev:
                return VerifyResult(False, count, expected_prev, entry.seq,
                                    f"entry {entry.seq} does not link to entry {entry.seq - 1}")
            digest = entry_hash(entry.seq, entry.ts, entry.actor, entry.action, entry.target,
                                entry.details, entry.prev_hash)
            if digest != entry.hash:
                return VerifyResult(False, count, expected_prev, entry.seq,
                                    f"entry {entry.seq} was modified (its content does not match its hash)")
            expected_prev, expected_seq, count = entry.hash, entry.seq + 1, count + 1
            last_seq = entry.seq
        session.expunge_all()
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    if head.seq != count or head.hash != expected_prev:
        return VerifyResult(False, count, expected_prev, count + 1 if head.seq > count else head.seq,
                            f"chain head says {head.seq} entries but {count} verify (entries removed from the end?)")
    return VerifyResult(True, count, expected_prev)


def installation_tag(session: Session) -> str:
    """A short name of this installation: the hash of its first audit entry (unique to it, and
    the same for every replica of its store). ``unstarted`` before the first entry."""
    first = session.execute(select(AuditEntry.hash).where(AuditEntry.seq == 1)).scalar_one_or_none()
    return first[:12] if first else "unstarted"
