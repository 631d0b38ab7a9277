"""Witnesses: every signed checkpoint also kept outside the database.

A checkpoint in the store proves nothing to someone who can rewrite the store and holds the
signing key: they can re-sign a rewritten log. A witness they cannot write keeps the
checkpoints as they were. Targets (``GATEHOUSE_AUDIT_WITNESS``, comma-separated):

- ``dir:/path``: an append-only directory, one file per checkpoint (``<size:012d>.json``,
  mode 0444), written to a temporary name, fsynced, then linked to its name (exclusive: never
  overwritten or removed) and the directory fsynced;
- ``https://…`` (or ``http://…``): the checkpoint JSON POSTed to a receiver that keeps it, each
  try within ``DEADLINE`` seconds in all; the size up to which every checkpoint was delivered is
  remembered under ``$GATEHOUSE_HOME/audit-witness/``. A receiver may get one twice: it keeps
  the first copy of each size.

Nothing reaches a witness that this process's key did not sign: a row an insider added to the
store is refused (``AUDIT CHECKPOINT REJECTED``), as is one whose entry is not in the store.
Checkpoints reach the witnesses as they commit through ``delivery``; a write that failed (or
never happened) is written later by ``catch_up``, which the gateway's checkpoint job calls.
``witness_check`` is the auditor's side: ``gatehouse audit verify --witness``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import logging
import os
import secrets
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from gatehouse.audit import checkpoints
from gatehouse.audit.witness_check import FILE_NAME, parse_checkpoint
from gatehouse.core.config import Settings
from gatehouse.store.db import Database
from gatehouse.store.models import AuditCheckpoint

log = logging.getLogger("gatehouse.audit.witness")
DEADLINE = 10.0        # seconds one delivery to a webhook may take in all: connecting, sending, the answer
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



# -- the targets --------------------------------------------------------------------------

_held: dict[Path, set[str]] = {}  # a dir: witness's file names found to hold a checkpoint (files never change)


@dataclass(frozen=True)
class DirWitness:
    path: Path

    @property
    def label(self) -> str:
        return f"dir:{self.path}"

    def write(self, checkpoint: dict[str, Any]) -> None:
        body, size = _encoded(checkpoint), int(checkpoint["size"])
        target = self.path / f"{size:012d}.json"
        draft = self.path / f".{size:012d}.{os.getpid()}.{secrets.token_hex(4)}.partial"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
        except OSError as exc:
            raise WitnessError(f"{self.label}: {type(exc).__name__}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            _link(draft, target)  # all of it or nothing under the name, and never over another file
        except FileExistsError:
            self._already(target, body, size)
            return
        except OSError as exc:
            raise WitnessError(f"{self.label}: {type(exc).__name__} writing {target.name}") from None
        finally:
            _discard(draft)
        try:
            directory = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise WitnessError(f"{self.label}: {type(exc).__name__} syncing the directory") from None

    def _already(self, target: Path, body: bytes, size: int) -> None:
        """Written already (an earlier try, another replica): fine if it is this checkpoint."""
        try:
            existing = parse_checkpoint(checkpoints.read_small_file(target))
        except ValueError:
            raise WitnessError(f"{self.label} holds an unreadable {target.name} (a write cut short?): "
                               "check it and move it aside") from None
        new = orjson.loads(body)
        if any(existing.get(name) != new[name] for name in ("size", "head", "signature")):
            raise WitnessError(f"{self.label} already holds a different checkpoint at {size} entries: the store's "
                               "log or its checkpoints were rewritten (audit verify --witness)")

    def holds(self) -> set[int]:
        """The sizes of the files that hold a checkpoint (a file cut short, or anything else, does not count)."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return set()
        known, present = _held.setdefault(self.path, set()), set(names)
        for name in present:
            if FILE_NAME.match(name) and name not in known:
                try:
                    if parse_checkpoint(checkpoints.read_small_file(self.path / name))["size"] == int(name[:12]):
                        known.add(name)
                except ValueError:
                    pass
        return {int(name[:12]) for name in known & present}

    def lacking(self, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
        held = self.holds()
        return [item for item in stored if int(item["size"]) not in held]

    def caught_up(self, size: int) -> None:
        pass  # the directory itself says what it holds

    def newest(self) -> int | None:
        return max(self.holds(), default=None)


def _link(draft: Path, target: Path) -> None:
    try:
        os.link(draft, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK) or target.exists():
            raise
        os.rename(draft, target)  # a file system without hard links (some object-store mounts): the name was free


def _discard(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass  # an append-only directory keeps the draft: a second name of the same file, or the part written


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
            status = _run(_post(self.url, _encoded(checkpoint)))
        except TimeoutError:
            raise WitnessError(f"{self.label}: no answer within {DEADLINE:g} s") from None
        except Exception as exc:  # a bad URL included: the witness must never undo the change
            raise WitnessError(f"{self.label}: {type(exc).__name__}") from None
        if status >= 300:
            raise WitnessError(f"{self.label}: HTTP {status}")

    def sent(self) -> int:
        """The size up to which ``catch_up`` delivered every checkpoint (one sent as it was
        signed does not count: an earlier one may have failed, so it is sent again)."""
        try:
            return int(self._state.read_text().strip() or 0)
        except (OSError, ValueError):
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


async def _post(url: str, body: bytes) -> int:
    """POST within ``DEADLINE`` seconds in all (httpx's timeouts are per read: a receiver that
    answers a byte at a time would hold it forever). TimeoutError past it."""
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        response = await asyncio.wait_for(client.post(url, content=body, headers={"content-type": "application/json"}),
                                          DEADLINE)
        return response.status_code


def _run(work: Coroutine[Any, Any, int]) -> int:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from a coroutine: its loop is busy
        return pool.submit(asyncio.run, work).result()


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


def catch_up(db: Database, settings: Settings, limit: int = CATCH_UP_LIMIT,
             public_key: Ed25519PublicKey | None = None) -> list[WitnessStatus]:
    """Write every stored checkpoint a witness lacks (oldest first; a webhook: those after the
    last it accepted), and say where each witness stands. Each is first checked, in the session
    that read it, against ``public_key`` (default: the key this process signs with, else this
    machine's audit key) and the store's entry at its size: one that fails is never written, and
    is a problem (as is a store signed with another key). Outside ``dev``, no witness at all is
    itself a problem to show. Failures are logged here; the statuses are for health reports."""
    witnesses = parse(settings.audit_witness, state_dir(settings))
    if not witnesses:
        return [] if settings.dev else [WitnessStatus("none", False, problem=(
            "no audit witness is configured (GATEHOUSE_AUDIT_WITNESS): the checkpoints live only in the database"))]
    key = public_key or checkpoints.signer_public_key()
    if key is None and (signing := checkpoints.signing_key(settings)) is not None:
        key = signing.public_key()
    if key is None:
        return [WitnessStatus(witness.label, False, problem="no audit signing key on this machine to check the "
                              "store's checkpoints with: none written") for witness in witnesses]
    with db.read() as session:
        foreign = checkpoints.foreign_key_problem(session, key)
        if foreign is not None:
            log.error("AUDIT WITNESS FAILED: %s; no checkpoint written", foreign)
            return [WitnessStatus(witness.label, False, problem=foreign) for witness in witnesses]
        stored = [checkpoints.as_dict(row) for row in
                  session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.size)).scalars()]
        verdicts: dict[int, str | None] = {}
        plans = [(witness, *_checked(session, key, witness.lacking(stored), limit, verdicts)) for witness in witnesses]
    for size, problem in sorted(verdicts.items()):
        if problem is not None:
            log.error("AUDIT CHECKPOINT REJECTED: the store's checkpoint at %d entries is not written to any "
                      "witness: %s", size, problem)
    refused = {size for size, problem in verdicts.items() if problem is not None}
    return [_catch_up_one(witness, items, met, stored, refused, limit) for witness, items, met in plans]


def _checked(session: Session, key: Ed25519PublicKey, lacking: list[dict[str, Any]], limit: int,
             verdicts: dict[int, str | None]) -> tuple[list[dict[str, Any]], list[str]]:
    """The first ``limit`` of ``lacking`` that are signed by ``key`` and match the store's entry,
    and what is wrong with each one met before them that does not."""
    chosen: list[dict[str, Any]] = []
    refused: list[str] = []
    for item in lacking:
        if len(chosen) >= limit:
            break
        size = int(item["size"])
        if size not in verdicts:
            verdicts[size] = checkpoints.verify_exported(session, key, item).problem
        problem = verdicts[size]
        if problem is None:
            chosen.append(item)
        else:
            refused.append(f"at {size} entries: {problem}")
    return chosen, refused


def _catch_up_one(witness: Witness, items: list[dict[str, Any]], met: list[str], stored: list[dict[str, Any]],
                  refused: set[int], limit: int) -> WitnessStatus:
    problem = None
    for item in items:
        try:
            witness.write(item)
        except WitnessError as exc:
            problem = str(exc)
            log.error("AUDIT WITNESS FAILED: catching up at the checkpoint at %d entries: %s", item["size"], exc)
            break
        witness.caught_up(int(item["size"]))
    lacking = [item for item in witness.lacking(stored) if int(item["size"]) not in refused]
    if met:
        more = f" (and {len(met) - 1} more)" if len(met) > 1 else ""
        problem = "; ".join(filter(None, (problem, f"the store holds {len(met)} checkpoint(s) that do not verify, "
                                          f"never written to a witness: the one {met[0]}{more}; run audit verify")))
    if problem is None and lacking:
        problem = f"{len(lacking)} checkpoint(s) not written yet (at most {limit} a run)"
    return WitnessStatus(witness.label, problem is None, len(lacking), witness.newest(), problem)
