"""Signed checkpoints of the audit log (Ed25519), and verifying them offline.

A checkpoint says "the log had SIZE entries and its head hash was HEAD", signed with the
installation's audit key. The hash chain alone shows an entry was edited unless someone
recomputes every hash after it; a checkpoint kept elsewhere (exported to a file, another
store) makes that rewrite, or cutting entries off the end, show too.

Checkpoints are made every N entries in the same transaction as the entry (when the process
holds the signing key), every T minutes by the gateway, and on demand.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.core.config import Settings
from gatehouse.store.models import AuditCheckpoint, AuditEntry, AuditHead

LOG_NAME = "gatehouse-audit"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _key_path(settings: Settings) -> Path:
    return settings.audit_key_path or settings.home / "audit-signing-key"


def signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The installation's checkpoint key, or None when it has not been created yet."""
    path = _key_path(settings)
    return load_or_create_signing_key(path) if path.exists() else None


def ensure_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The installation's checkpoint key, created (mode 0600) on first use."""
    return load_or_create_signing_key(_key_path(settings))


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The installation's audit key (PKCS#8 PEM, mode 0600), created on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    try:
        os.link(draft, path)  # never replace a key another process created meanwhile
    except FileExistsError:
        draft.unlink()
        return load_or_create_signing_key(path)
    draft.unlink()
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def payload(size: int, head: str, ts: str) -> bytes:
    return orjson.dumps({"log": LOG_NAME, "size": size, "head": head, "ts": ts}, option=orjson.OPT_SORT_KEYS)


# -- making them --------------------------------------------------------------------------

@dataclass
class _Signer:
    key: Ed25519PrivateKey
    every: int


_signer: _Signer | None = None


def configure(key: Ed25519PrivateKey | None, every: int = 100) -> None:
    """Let this process checkpoint every ``every`` entries as it appends them."""
    global _signer
    _signer = _Signer(key, every) if key is not None and every > 0 else None


def on_append(session: Session, seq: int, digest: str) -> None:
    if _signer is not None and seq % _signer.every == 0:
        _sign(session, _signer.key, seq, digest)


def _sign(session: Session, key: Ed25519PrivateKey, size: int, head: str) -> AuditCheckpoint:
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    signature = base64.b64encode(key.sign(payload(size, head, ts))).decode()
    checkpoint = AuditCheckpoint(size=size, head_hash=head, ts=ts, key_id=key_id(key.public_key()), signature=signature)
    session.add(checkpoint)
    session.flush()
    return checkpoint


def checkpoint_now(session: Session, key: Ed25519PrivateKey) -> AuditCheckpoint | None:
    """Sign the current head unless it is signed already (call inside a write transaction)."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    if head.seq == 0 or session.get(AuditCheckpoint, head.seq) is not None:
        return None
    return _sign(session, key, head.seq, head.hash)


def as_dict(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {"log": LOG_NAME, "size": checkpoint.size, "head": checkpoint.head_hash, "ts": checkpoint.ts,
            "key_id": checkpoint.key_id, "signature": checkpoint.signature}


# -- verifying them -----------------------------------------------------------------------

@dataclass(frozen=True)
class CheckpointResult:
    ok: bool
    checked: int
    problem: str | None = None
    first_bad_seq: int | None = None


def _check_one(session: Session, public_key: Ed25519PublicKey, size: int, head: str, ts: str, signature: str,
               last_good: int) -> CheckpointResult | None:
    try:
        public_key.verify(base64.b64decode(signature), payload(size, head, ts))
    except (InvalidSignature, ValueError):
        return CheckpointResult(False, 0, f"the checkpoint at {size} entries ({ts}) is not signed by this key "
                                          "(forged, altered, or another installation's)", size)
    entry = session.get(AuditEntry, size)
    if entry is None:
        total = session.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar_one()
        return CheckpointResult(False, 0, f"entry {size} is missing: the log was signed at {size} entries ({ts}) "
                                          f"and now has {total} (entries removed)", min(size, total + 1))
    if entry.hash != head:
        return CheckpointResult(False, 0, f"entry {size} differs from the signed checkpoint of {ts}: the log was "
                                          f"rewritten between entry {last_good + 1} and entry {size}", last_good + 1)
    return None


def verify_stored(session: Session, public_key: Ed25519PublicKey) -> CheckpointResult:
    """Every checkpoint in the store, oldest first."""
    checked, last_good = 0, 0
    for checkpoint in session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.size)).scalars():
        bad = _check_one(session, public_key, checkpoint.size, checkpoint.head_hash, checkpoint.ts,
                         checkpoint.signature, last_good)
        if bad is not None:
            return CheckpointResult(False, checked, bad.problem, bad.first_bad_seq)
        checked, last_good = checked + 1, checkpoint.size
    return CheckpointResult(True, checked)


def verify_exported(session: Session, public_key: Ed25519PublicKey, exported: dict[str, Any]) -> CheckpointResult:
    """A checkpoint kept outside the store (``audit checkpoint --export``)."""
    try:
        size, head, ts, signature = int(exported["size"]), str(exported["head"]), str(exported["ts"]), \
            str(exported["signature"])
    except (KeyError, TypeError, ValueError):
        return CheckpointResult(False, 0, "the checkpoint file is not a Gatehouse audit checkpoint")
    bad = _check_one(session, public_key, size, head, ts, signature, 0)
    return bad if bad is not None else CheckpointResult(True, 1)
