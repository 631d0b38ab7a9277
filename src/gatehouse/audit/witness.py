"""Witnesses: every signed checkpoint also kept outside the database.

A checkpoint in the store proves nothing to someone who can rewrite the store and holds the
signing key: they can re-sign a rewritten log. A witness they cannot write keeps the
checkpoints as they were. Targets (``GATEHOUSE_AUDIT_WITNESS``, comma-separated):

- ``dir:/path``: an append-only directory, one file per checkpoint (``<size:012d>.json``,
  mode 0444), created exclusively, never overwritten or removed, fsynced with its directory;
- ``https://…`` (or ``http://…``): the checkpoint JSON POSTed to a receiver that keeps it; the
  size up to which every checkpoint was delivered is remembered under
  ``$GATEHOUSE_HOME/audit-witness/``. A receiver may get one twice: it should key them by size.

A checkpoint reaches the witnesses only after its transaction commits (``checkpoints``'
after-commit hook). A write that fails is logged (by type, naming the target without its
credentials) and written later by ``catch_up``, which the gateway's checkpoint job calls.
``read`` and ``check`` are the auditor's side: ``gatehouse audit verify --witness``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.audit import checkpoints
from gatehouse.core.config import Settings
from gatehouse.store.db import Database
from gatehouse.store.models import AuditCheckpoint

log = logging.getLogger("gatehouse.audit.witness")
FILE_NAME = re.compile(r"^(\d{12})\.json$")
TIMEOUT = 5.0          # seconds a webhook witness may take to answer
CATCH_UP_LIMIT = 1000  # checkpoints one catch-up run writes to one witness at most


class WitnessError(Exception):
    """A witness did not take a checkpoint; the message names no secret."""


class Witness(Protocol):
    @property
    def label(self) -> str:
        """How logs and reports name it: never credentials, a URL's path or its query."""
        ...

    def write(self, checkpoint: dict[str, Any]) -> None: ...

    def lacking(self, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Those of the store's checkpoints it does not hold (as far as this machine knows)."""
        ...

    def caught_up(self, size: int) -> None:
        """``catch_up`` wrote every lacking checkpoint up to ``size``."""
        ...

    def newest(self) -> int | None: ...


def _encoded(checkpoint: dict[str, Any]) -> bytes:
    return orjson.dumps(checkpoint, option=orjson.OPT_SORT_KEYS) + b"\n"


@dataclass(frozen=True)
class DirWitness:
    path: Path

    @property
    def label(self) -> str:
        return f"dir:{self.path}"

    def write(self, checkpoint: dict[str, Any]) -> None:
        body = _encoded(checkpoint)
        target = self.path / f"{int(checkpoint['size']):012d}.json"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        except FileExistsError:
            self._already(target, body, int(checkpoint["size"]))
            return
        except OSError as exc:
            raise WitnessError(f"{self.label}: {type(exc).__name__}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            directory = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise WitnessError(f"{self.label}: {type(exc).__name__} writing {target.name}") from None

    def _already(self, target: Path, body: bytes, size: int) -> None:
        """Written already (an earlier try, another replica): fine if it is this checkpoint."""
        try:
            existing = orjson.loads(target.read_bytes()) if not target.is_symlink() else None
        except (OSError, orjson.JSONDecodeError):
            raise WitnessError(f"{self.label} holds an unreadable {target.name} (a write cut short?): "
                               "check it and move it aside") from None
        new = orjson.loads(body)
        if not isinstance(existing, dict) or any(existing.get(name) != new[name] for name in ("size", "head", "signature")):
            raise WitnessError(f"{self.label} already holds a different checkpoint at {size} entries: the store's "
                               "log or its checkpoints were rewritten (audit verify --witness)")

    def holds(self) -> set[int]:
        try:
            names = os.listdir(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return set()
        return {int(match[1]) for name in names if (match := FILE_NAME.match(name))}

    def lacking(self, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        held = self.holds()
        return [item for item in stored if int(item["size"]) not in held]

    def caught_up(self, size: int) -> None:
        pass  # the directory itself says what it holds

    def newest(self) -> int | None:
        return max(self.holds(), default=None)


@dataclass(frozen=True)
class WebhookWitness:
    url: str = field(repr=False)
    state_dir: Path

    @property
    def label(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    @property
    def _state(self) -> Path:
        return self.state_dir / f"{hashlib.sha256(self.url.encode()).hexdigest()[:16]}.last"

    def write(self, checkpoint: dict[str, Any]) -> None:
        try:
            response = httpx.post(self.url, content=_encoded(checkpoint), timeout=TIMEOUT,
                                  headers={"content-type": "application/json"})
        except Exception as exc:  # a bad URL included: the witness must never undo the change
            raise WitnessError(f"{self.label}: {type(exc).__name__}") from None
        if response.status_code >= 300:
            raise WitnessError(f"{self.label}: HTTP {response.status_code}")

    def sent(self) -> int:
        """The size up to which ``catch_up`` delivered every checkpoint (one sent as it was
        signed does not count: an earlier one may have failed, so it is sent again)."""
        try:
            return int(self._state.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def lacking(self, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sent = self.sent()
        return [item for item in stored if int(item["size"]) > sent]

    def newest(self) -> int | None:
        return self.sent() or None

    def caught_up(self, size: int) -> None:
        if size <= self.sent():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        draft = self._state.with_name(f".{self._state.name}.{os.getpid()}")
        draft.write_text(f"{size}\n")
        os.replace(draft, self._state)


def parse(targets: Iterable[str], state_dir: Path) -> list[Witness]:
    """``dir:/absolute/path`` or an ``http(s)://`` URL; anything else is a configuration error
    (named by position: a malformed URL could carry a credential)."""
    witnesses: list[Witness] = []
    for number, target in enumerate(targets, 1):
        if target.startswith("dir:"):
            path = Path(target.removeprefix("dir:")).expanduser()
            if not path.is_absolute():
                raise ValueError(f"GATEHOUSE_AUDIT_WITNESS target {number}: a dir: witness needs an absolute path")
            witnesses.append(DirWitness(path))
        elif target.startswith(("https://", "http://")) and _valid_url(target):
            witnesses.append(WebhookWitness(target, state_dir))
        else:
            raise ValueError(f"GATEHOUSE_AUDIT_WITNESS target {number} is neither dir:/path nor an http(s):// URL")
    return witnesses


def _valid_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number
        return False


def state_dir(settings: Settings) -> Path:
    return settings.home / "audit-witness"


def publisher(settings: Settings) -> checkpoints.Publish | None:
    """What the after-commit hook calls with each committed checkpoint: write it to every
    witness; a failure is logged loudly and left for ``catch_up``."""
    witnesses = parse(settings.audit_witness, state_dir(settings))
    if not witnesses:
        return None

    def publish(items: list[dict[str, Any]]) -> None:
        for witness in witnesses:
            for item in sorted(items, key=lambda item: int(item["size"])):
                try:
                    witness.write(item)
                except WitnessError as exc:
                    log.error("AUDIT WITNESS FAILED: the checkpoint at %d entries is not yet witnessed: %s "
                              "(retried by the gateway's checkpoint job)", item["size"], exc)
                    break
    return publish


def configure(settings: Settings) -> Ed25519PrivateKey:
    """Make this process sign the cadence as it appends (the key created on first use, so a
    fresh installation has no hole) and hand every committed checkpoint to the witnesses."""
    key = checkpoints.ensure_signing_key(settings)
    checkpoints.configure(key, settings.audit_checkpoint_every, publisher(settings))
    return key


# -- catching up --------------------------------------------------------------------------

@dataclass(frozen=True)
class WitnessStatus:
    target: str                 # the witness's label (no credentials)
    ok: bool
    lag: int = 0                # stored checkpoints it does not hold yet
    newest: int | None = None   # the newest size it holds
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "lag": self.lag, "newest": self.newest, "problem": self.problem}


def catch_up(db: Database, settings: Settings, limit: int = CATCH_UP_LIMIT) -> list[WitnessStatus]:
    """Write every stored checkpoint a witness lacks (oldest first; a webhook: those after the
    last it accepted), and say where each witness stands. Outside ``dev``, no witness at all is
    itself a problem to show. Failures are logged here; the statuses are for health reports."""
    witnesses = parse(settings.audit_witness, state_dir(settings))
    if not witnesses:
        return [] if settings.dev else [WitnessStatus("none", False, problem=(
            "no audit witness is configured (GATEHOUSE_AUDIT_WITNESS): the checkpoints live only in the database"))]
    with db.read() as session:
        stored = [checkpoints.as_dict(row) for row in
                  session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.size)).scalars()]
    return [_catch_up_one(witness, stored, limit) for witness in witnesses]


def _catch_up_one(witness: Witness, stored: list[dict[str, Any]], limit: int) -> WitnessStatus:
    problem = None
    for item in witness.lacking(stored)[:limit]:
        try:
            witness.write(item)
        except WitnessError as exc:
            problem = str(exc)
            log.error("AUDIT WITNESS FAILED: catching up at the checkpoint at %d entries: %s", item["size"], exc)
            break
        witness.caught_up(int(item["size"]))
    lacking = witness.lacking(stored)
    if problem is None and lacking:
        problem = f"{len(lacking)} checkpoint(s) not written yet (at most {limit} a run)"
    return WitnessStatus(witness.label, problem is None, len(lacking), witness.newest(), problem)


# -- the auditor's side -------------------------------------------------------------------

def read(path: Path) -> list[dict[str, Any]]:
    """A witness's checkpoints: a ``dir:`` witness's directory, or a JSON-lines file (one
    checkpoint a line: what a webhook receiver might keep)."""
    if path.is_dir():
        items = [orjson.loads((path / name).read_bytes()) for name in sorted(os.listdir(path)) if FILE_NAME.match(name)]
    else:
        items = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError(f"{path} holds something that is not a checkpoint")
    return items


@dataclass(frozen=True)
class WitnessCheck:
    witness: str
    checkpoints: int          # how many it holds
    verified: int             # how many verified before the first problem
    newest: int | None        # the largest size it holds
    lag: int                  # stored checkpoints it does not hold (a warning, not a failure)
    problem: str | None = None
    first_bad_seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {"witness": self.witness, "ok": self.ok, "checkpoints": self.checkpoints, "verified": self.verified,
                "newest": self.newest, "lag": self.lag, "problem": self.problem}


def check(session: Session, public_key: Ed25519PublicKey, name: str, items: Sequence[dict[str, Any]]) -> WitnessCheck:
    """Each witnessed checkpoint must be signed by the key and match the store's entry at its
    size (which must still exist): a rewrite re-signed with a stolen key still differs here."""
    ordered = sorted(items, key=lambda item: _size(item))
    held = {_size(item) for item in ordered}
    stored = set(session.execute(select(AuditCheckpoint.size)).scalars())
    newest = max(held, default=None)
    lag = len({size for size in stored if size not in held})
    verified, last_good = 0, 0
    for item in ordered:
        result = checkpoints.verify_exported(session, public_key, item, last_good)
        if not result.ok:
            return WitnessCheck(name, len(ordered), verified, newest, lag, f"witness {name}: {result.problem}",
                                result.first_bad_seq)
        verified, last_good = verified + 1, _size(item)
    return WitnessCheck(name, len(ordered), verified, newest, lag)


def _size(item: dict[str, Any]) -> int:
    try:
        return int(item.get("size", -1))
    except (TypeError, ValueError):
        return -1
