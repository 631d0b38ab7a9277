"""Signed checkpoints of the audit log (Ed25519), and verifying them offline.

A checkpoint says "the log had SIZE entries and its head hash was HEAD", signed with the
installation's audit key. The hash chain alone shows an entry was edited unless someone
recomputes every hash after it; a checkpoint kept elsewhere (exported to a file, another
store) makes that rewrite, or cutting entries off the end, show too.

Checkpoints are made every N entries in the same transaction as the entry, every T minutes by
the gateway, and on demand. Each one is handed to the configured witnesses (``witness``) only
once its transaction has committed. ``verify_cadence`` says whether every checkpoint the
cadence requires is in the store: deleting them to hide a rewrite shows as a gap.

The first key that signs for a store becomes the installation's (its id kept in
``gatehouse_meta``); a process holding another key refuses to append (``ForeignSigningKey``)
rather than sign checkpoints that would never verify.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import stat
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, SessionTransaction

from gatehouse.core.config import Settings
from gatehouse.core.errors import Conflict
from gatehouse.store.models import AuditCheckpoint, AuditEntry, AuditHead, Meta

LOG_NAME = "gatehouse-audit"
MAX_FILE = 64 * 1024            # bytes a checkpoint or key file from outside may have (a checkpoint is about 300)
MAX_SIZE = 2**63                 # sizes are BigInteger: 1 to 2**63 - 1
KEY_ROW = "audit_key_id"         # gatehouse_meta: the installation's key id (its first 15 hex digits as a number)
log = logging.getLogger("gatehouse.audit")


class ForeignSigningKey(Conflict):
    """This process's audit key is not the one the store's log is signed with."""


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


def open_regular(path: Path, limit: int, follow: bool) -> int:
    """A descriptor of ``path`` if it is a regular file of at most ``limit`` bytes; never waits
    (a FIFO) and never follows a link unless ``follow``. ValueError otherwise."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise ValueError("is a symbolic link, not a file") from None
        raise ValueError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        raise ValueError("is not a regular file" if not stat.S_ISREG(info.st_mode) else f"is larger than {limit} bytes")
    return fd


def read_small_file(path: Path, follow: bool = False) -> bytes:
    """A small file from outside (a checkpoint, a public key), at most ``MAX_FILE`` bytes."""
    fd, body = open_regular(path, MAX_FILE, follow), b""
    try:
        while len(body) <= MAX_FILE and (chunk := os.read(fd, MAX_FILE + 1 - len(body))):
            body += chunk
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)
    if len(body) > MAX_FILE:
        raise ValueError(f"is larger than {MAX_FILE} bytes")
    return body


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(read_small_file(path, follow=True))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def payload(size: int, head: str, ts: str) -> bytes:
    return orjson.dumps({"log": LOG_NAME, "size": size, "head": head, "ts": ts}, option=orjson.OPT_SORT_KEYS)


def fields(item: Any) -> tuple[int, str, str, str]:
    """A checkpoint from outside the store (a file, a witness) as ``(size, head, ts, signature)``;
    ValueError says what makes it none (a size is a whole number from 1 to 2**63 - 1, never
    true, 1.0 or "1"; head, ts and signature are strings)."""
    if not isinstance(item, dict):
        raise ValueError(f"a JSON {_json_kind(item)}, not a checkpoint object")
    size = item.get("size")
    if type(size) is not int or not 0 < size < MAX_SIZE:
        raise ValueError("its size is not a whole number from 1 to 2**63 - 1")
    for name in ("head", "ts", "signature"):
        if not isinstance(item.get(name), str):
            raise ValueError(f"its {name} is missing or not a string")
    if item.get("log", LOG_NAME) != LOG_NAME:
        raise ValueError("it is not a Gatehouse audit log checkpoint")
    return size, item["head"], item["ts"], item["signature"]


def _json_kind(value: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string",
            list: "array"}.get(type(value), type(value).__name__)


def signed_by(public_key: Ed25519PublicKey, item: Any) -> bool:
    """Whether ``item`` is a checkpoint signed by ``public_key`` (its content, not the store's)."""
    try:
        size, head, ts, signature = fields(item)
        public_key.verify(base64.b64decode(signature), payload(size, head, ts))
    except (InvalidSignature, ValueError):
        return False
    return True


# -- whose key signs ----------------------------------------------------------------------

def _key_number(kid: str) -> int:
    return int(kid[:15], 16)  # 60 bits: fits gatehouse_meta's signed BigInteger


def foreign_key_problem(session: Session, public_key: Ed25519PublicKey) -> str | None:
    """Why ``public_key`` must not sign for this store (another key is the installation's), or None."""
    ours = key_id(public_key)
    row = session.get(Meta, KEY_ROW)
    if row is not None:
        theirs = f"{row.value:015x}…" if row.value != _key_number(ours) else None
    else:  # a store from before the row: the newest checkpoint's key is the installation's
        newest = session.execute(select(AuditCheckpoint.key_id).order_by(AuditCheckpoint.size.desc())
                                 .limit(1)).scalar_one_or_none()
        theirs = newest if newest is not None and newest != ours else None
    if theirs is None:
        return None
    return (f"this store's audit log is signed with the key {theirs}, not with this machine's audit signing key "
            f"{ours}: set GATEHOUSE_AUDIT_SIGNING_KEY to (a copy of) the installation's key, as the gateway uses it")


_confirmed: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()  # engine → key id found in the store
_CLAIMED = "gatehouse.audit.checkpoints.claimed"  # session.info: this session wrote the key row (maybe uncommitted)


def claim_key(session: Session, public_key: Ed25519PublicKey) -> None:
    """Refuse (``ForeignSigningKey``) unless ``public_key`` is the installation's; the first key
    to sign for a store becomes it (in the caller's transaction)."""
    engine, ours = session.get_bind(), key_id(public_key)
    if _confirmed.get(engine) == ours:
        return
    problem = foreign_key_problem(session, public_key)
    if problem is not None:
        raise ForeignSigningKey(problem)
    if session.get(Meta, KEY_ROW) is None:
        session.add(Meta(name=KEY_ROW, value=_key_number(ours)))
        session.flush()
        session.info[_CLAIMED] = True
    elif not session.info.get(_CLAIMED):
        _confirmed[engine] = ours  # committed already: no need to read it on every append


# -- making them --------------------------------------------------------------------------

Publish = Callable[[list[dict[str, Any]]], None]  # hands committed checkpoints to the witnesses


@dataclass
class _Signer:
    key: Ed25519PrivateKey
    every: int
    publish: Publish | None
    store: str | None  # the store's URL (``store.db.normalise_url``) it signs for; None: any


_signer: _Signer | None = None
_PENDING = "gatehouse.audit.checkpoints.pending"  # session.info: signed in this transaction, not yet committed
_HOOKED = "gatehouse.audit.checkpoints.hooked"


def configure(key: Ed25519PrivateKey | None, every: int = 100, publish: Publish | None = None,
              store: str | None = None) -> None:
    """Let this process checkpoint every ``every`` entries as it appends them to ``store`` (its
    normalised URL; None: to any store), and hand each checkpoint it signs to ``publish`` once
    the transaction that stored it has committed. Entries appended to another store through
    the same process are neither signed nor checked against its key."""
    global _signer
    _signer = _Signer(key, every, publish, store) if key is not None else None


_urls: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()  # engine → its URL, as rendered


def _signs_for(session: Session, signer: _Signer) -> bool:
    if signer.store is None:
        return True
    engine = session.get_bind()
    if engine not in _urls:
        _urls[engine] = engine.engine.url.render_as_string(hide_password=False)
    return _urls[engine] == signer.store


def signer_public_key() -> Ed25519PublicKey | None:
    """The public half of the key this process signs with (``configure``), if any."""
    return _signer.key.public_key() if _signer is not None else None


def on_append(session: Session, seq: int, digest: str) -> None:
    """Called by ``log.append`` for each entry: refuse to append with another installation's
    key, and sign the cadence point."""
    if _signer is None or not _signs_for(session, _signer):
        return
    claim_key(session, _signer.key.public_key())
    if _signer.every > 0 and seq % _signer.every == 0:
        if session.get(AuditCheckpoint, seq) is not None:  # a size no entry had yet: an insider's row
            log.error("AUDIT CHECKPOINT REJECTED: the store already holds a checkpoint at %d entries, before that "
                      "entry existed; not signing over it (audit verify names it)", seq)
            return
        _sign(session, _signer.key, seq, digest)


def _sign(session: Session, key: Ed25519PrivateKey, size: int, head: str) -> AuditCheckpoint:
    claim_key(session, key.public_key())
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    signature = base64.b64encode(key.sign(payload(size, head, ts))).decode()
    checkpoint = AuditCheckpoint(size=size, head_hash=head, ts=ts, key_id=key_id(key.public_key()), signature=signature)
    session.add(checkpoint)
    session.flush()
    if _signer is not None and _signer.publish is not None:
        _after_commit(session, checkpoint, _signer.publish)
    return checkpoint


def _after_commit(session: Session, checkpoint: AuditCheckpoint, publish: Publish) -> None:
    """Queue the checkpoint on the session, to be published after the commit: never after a
    rollback, nor when a savepoint that held it rolled back (it is then no longer in the session)."""
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        event.listen(session, "after_commit", _committed)
        event.listen(session, "after_soft_rollback", _rolled_back)
    session.info.setdefault(_PENDING, []).append((checkpoint, as_dict(checkpoint), publish))


def _committed(session: Session) -> None:
    kept = [(item, publish) for stored, item, publish in session.info.pop(_PENDING, []) if inspect(stored).persistent]
    for publish in {id(publish): publish for _, publish in kept}.values():
        try:
            publish([item for item, other in kept if other is publish])
        except Exception as exc:  # the change has committed: a witness must never make it look failed
            log.error("publishing audit checkpoints failed: %s", type(exc).__name__)


def _rolled_back(session: Session, previous: SessionTransaction) -> None:
    if previous.parent is None:  # the whole transaction, not a savepoint inside it
        session.info.pop(_PENDING, None)


def checkpoint_now(session: Session, key: Ed25519PrivateKey) -> AuditCheckpoint | None:
    """Sign the current head unless it is signed already (call inside a write transaction).
    A head that does not match its entry (the store was edited) is logged, never signed: a
    witness would keep that checkpoint for good."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    claim_key(session, key.public_key())
    if head.seq == 0 or session.get(AuditCheckpoint, head.seq) is not None:
        return None
    entry = session.get(AuditEntry, head.seq)
    if entry is None or entry.hash != head.hash:
        log.error("AUDIT CHAIN HEAD does not match entry %d: not signing it (gatehouse audit verify)", head.seq)
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


def verify_exported(session: Session, public_key: Ed25519PublicKey, exported: Any,
                    last_good: int = 0) -> CheckpointResult:
    """A checkpoint kept outside the store (``audit checkpoint --export``, a witness), checked
    against the store's entry at its size; ``last_good``: the largest size already known good."""
    try:
        size, head, ts, signature = fields(exported)
    except ValueError as exc:
        return CheckpointResult(False, 0, f"the checkpoint is not a Gatehouse audit checkpoint: {exc}")
    bad = _check_one(session, public_key, size, head, ts, signature, last_good)
    return bad if bad is not None else CheckpointResult(True, 1)


@dataclass(frozen=True)
class CadenceResult:
    ok: bool
    every: int
    start: int                # the first size the cadence is checked from
    required: int             # cadence points from ``start`` up to the head
    legacy_gaps: int          # cadence points before ``start`` without a checkpoint (see docs/adr/0015)
    missing: tuple[int, ...]  # the cadence points from ``start`` on that have none
    problem: str | None = None
    first_bad_seq: int | None = None
    stored: int = 0           # checkpoints in the store, of any size


def verify_cadence(session: Session, every: int, head: int, start: int | None = None) -> CadenceResult:
    """A stored checkpoint at every multiple of ``every`` up to ``head`` entries.

    Checked from ``start`` when given (a size the auditor chose, e.g. where the cadence was
    changed), else from the first stored checkpoint: entries before it are covered by its
    signature, and points before it without one are only counted (entries appended before
    every process signed). With no checkpoint at all it is checked from the first point, so
    deleting every checkpoint never helps. Validity is ``verify_stored``'s job; this is presence.
    """
    sizes = set(session.execute(select(AuditCheckpoint.size)).scalars())
    if every <= 0:
        return CadenceResult(True, every, 0, 0, 0, (), stored=len(sizes))
    first = start if start is not None else min(sizes, default=every)
    points = range(every, head - head % every + 1, every)
    legacy = sum(1 for point in points if point < first and point not in sizes)
    missing = tuple(point for point in points if point >= first and point not in sizes)
    required = sum(1 for point in points if point >= first)
    if start is not None and start not in sizes:
        missing = (start, *(point for point in missing if point != start))
    if not missing:
        return CadenceResult(True, every, first, required, legacy, (), stored=len(sizes))
    covered = max((size for size in sizes if size < missing[0]), default=0)
    more = f", and {len(missing) - 1} later cadence point(s) have none either" if len(missing) > 1 else ""
    where = f"after entry {covered}" if covered else "from its first entry"
    return CadenceResult(False, every, first, required, legacy, missing,
                         f"no signed checkpoint at {missing[0]} entries, which the cadence (every {every}) requires"
                         f"{more}: checkpoints were deleted, or the log was rewritten {where} and its checkpoints "
                         "dropped", covered + 1, len(sizes))
