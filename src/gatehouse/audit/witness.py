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
A checkpoint is handed over only after its transaction commits (``checkpoints``' after-commit
hook), to one delivery thread per witness: the committing caller waits at most
``COMMIT_WAIT`` seconds, a process that exits at most ``EXIT_WAIT``. A write that fails (or
never happened) is logged, by type and naming the target without its credentials, and written
later by ``catch_up``, which the gateway's checkpoint job calls.
``read`` and ``check`` are the auditor's side: ``gatehouse audit verify --witness``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import errno
import hashlib
import logging
import os
import queue
import re
import secrets
import stat
import threading
import time
from collections.abc import Coroutine, Iterable
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
from gatehouse.store.db import Database, normalise_url
from gatehouse.store.models import AuditCheckpoint

log = logging.getLogger("gatehouse.audit.witness")
FILE_NAME = re.compile(r"^(\d{12})\.json$")
DEADLINE = 10.0        # seconds one delivery to a webhook may take in all: connecting, sending, the answer
COMMIT_WAIT = 1.0      # seconds a committing caller waits for its checkpoints to reach witnesses that were idle
EXIT_WAIT = 10.0       # seconds an exiting process waits for deliveries still under way
QUEUE_LIMIT = 1000     # checkpoints waiting for one witness; more are left to catch_up
CATCH_UP_LIMIT = 1000  # checkpoints one catch-up run writes to one witness at most
MAX_FILE = checkpoints.MAX_FILE
MAX_LINES = 1 << 30    # bytes a JSON-lines file of checkpoints may have


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


# -- reading files that may be anything ---------------------------------------------------

def _checkpoint(body: bytes) -> dict[str, Any]:
    """One checkpoint's JSON, checked for its fields (``checkpoints.fields``); ValueError says why not."""
    try:
        item = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("is not JSON") from None
    try:
        checkpoints.fields(item)
    except ValueError as exc:
        raise ValueError(f"is not a checkpoint: {exc}") from None
    return dict(item)


def read_exported(path: Path) -> Any:
    """An exported checkpoint file's JSON (``audit checkpoint --export``), read safely: a FIFO,
    a device or a huge file is refused with a ValueError, never waited on or read whole."""
    body = checkpoints.read_small_file(path, follow=True)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("is not JSON") from None


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
            existing = _checkpoint(checkpoints.read_small_file(target))
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
                    if _checkpoint(checkpoints.read_small_file(self.path / name))["size"] == int(name[:12]):
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


# -- handing checkpoints over as they commit ----------------------------------------------

Delivery = tuple[list[dict[str, Any]], Ed25519PublicKey | None, threading.Event]


class _Courier:
    """One witness's delivery thread: the checkpoints of each commit, written in order, off the
    committing caller's path. It ends when idle and starts again with the next delivery."""

    IDLE = 5.0  # seconds without work before the thread ends

    def __init__(self, witness: Witness) -> None:
        self.witness = witness
        self.queue: queue.Queue[Delivery] = queue.Queue(QUEUE_LIMIT)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def hand(self, items: list[dict[str, Any]], public_key: Ed25519PublicKey | None) -> threading.Event | None:
        """Queue them; the event to wait on when this witness had nothing else to do (a slow one
        already behind makes no caller wait again)."""
        idle, done = self.queue.unfinished_tasks == 0, threading.Event()
        try:
            self.queue.put_nowait((items, public_key, done))
        except queue.Full:
            log.error("AUDIT WITNESS FAILED: %s is %d deliveries behind; the checkpoint(s) at %s entries are left to "
                      "the gateway's checkpoint job", self.witness.label, QUEUE_LIMIT,
                      ", ".join(str(item["size"]) for item in items))
            return None
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, name=f"audit-witness {self.witness.label}",
                                               daemon=True)
                self.thread.start()
        return done if idle else None

    def _work(self) -> None:
        while True:
            try:
                items, public_key, done = self.queue.get(timeout=self.IDLE)
            except queue.Empty:
                with self.lock:
                    if self.queue.empty():
                        self.thread = None
                        return
                continue
            try:
                self._deliver(items, public_key)
            except Exception as exc:  # never let the thread die with work queued
                log.error("AUDIT WITNESS FAILED: %s: %s", self.witness.label, type(exc).__name__)
            finally:
                done.set()
                self.queue.task_done()

    def _deliver(self, items: list[dict[str, Any]], public_key: Ed25519PublicKey | None) -> None:
        for item in sorted(items, key=lambda item: int(item["size"])):
            if public_key is None or not checkpoints.signed_by(public_key, item):
                log.error("AUDIT CHECKPOINT REJECTED: the checkpoint at %s entries is not signed by this process's "
                          "key; not written to %s", item.get("size"), self.witness.label)
                continue
            try:
                self.witness.write(item)
            except WitnessError as exc:
                log.error("AUDIT WITNESS FAILED: the checkpoint at %d entries is not yet witnessed: %s "
                          "(retried by the gateway's checkpoint job)", item["size"], exc)
                return


_couriers: dict[Witness, _Courier] = {}
_couriers_lock = threading.Lock()


def _forked() -> None:
    """A forked child has none of its parent's threads: its couriers start afresh (the parent
    delivers what it had queued)."""
    global _couriers_lock
    _couriers_lock = threading.Lock()
    for courier in _couriers.values():
        courier.queue, courier.lock, courier.thread = queue.Queue(QUEUE_LIMIT), threading.Lock(), None


os.register_at_fork(after_in_child=_forked)


def _courier(witness: Witness) -> _Courier:
    with _couriers_lock:
        if not _couriers:
            atexit.register(_at_exit)
        return _couriers.setdefault(witness, _Courier(witness))


def drain(timeout: float) -> int:
    """Wait up to ``timeout`` seconds for every queued delivery; how many are still pending."""
    deadline = time.monotonic() + timeout
    while True:
        with _couriers_lock:
            pending = sum(courier.queue.unfinished_tasks for courier in _couriers.values())
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.01)


def _at_exit() -> None:
    left = drain(EXIT_WAIT)
    if left:
        log.error("AUDIT WITNESS FAILED: %d checkpoint delivery(ies) not finished as this process exits; the "
                  "gateway's checkpoint job (witness.catch_up) writes them", left)


def publisher(settings: Settings, public_key: Ed25519PublicKey | None = None) -> checkpoints.Publish | None:
    """What the after-commit hook calls with each committed checkpoint: hand it to every
    witness's delivery thread and wait at most ``COMMIT_WAIT``; what fails is logged there and
    left for ``catch_up``. Only checkpoints ``public_key`` (default: the key this process signs
    with) signed are written."""
    witnesses = parse(settings.audit_witness, state_dir(settings))
    if not witnesses:
        return None
    couriers = [_courier(witness) for witness in witnesses]

    def publish(items: list[dict[str, Any]]) -> None:
        key = public_key or checkpoints.signer_public_key()
        waits = [courier.hand(items, key) for courier in couriers]
        deadline = time.monotonic() + COMMIT_WAIT
        for done in waits:
            if done is not None:
                done.wait(max(0.0, deadline - time.monotonic()))
    return publish


def configure(settings: Settings) -> Ed25519PrivateKey:
    """Make this process sign the cadence as it appends to its store (the key created on first
    use, so a fresh installation has no hole) and hand every committed checkpoint to the
    witnesses."""
    key = checkpoints.ensure_signing_key(settings)
    checkpoints.configure(key, settings.audit_checkpoint_every, publisher(settings, key.public_key()),
                          normalise_url(settings.database_url))
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


# -- the auditor's side -------------------------------------------------------------------

@dataclass(frozen=True)
class Held:
    """What a witness's copy holds: its checkpoints, and what in it could not be read as one."""
    items: list[dict[str, Any]]
    problems: list[str]


def read(path: Path) -> Held:
    """A witness's checkpoints: a ``dir:`` witness's directory, or a JSON-lines file (one
    checkpoint a line: what a webhook receiver might keep). Nothing here raises: a file that is
    not a regular one (a FIFO, a device, a link inside the directory), too large, not JSON or
    not a checkpoint is one of its problems."""
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as exc:
        return Held([], [f"cannot be read ({exc.strerror or type(exc).__name__})"])
    if is_dir:
        return _read_dir(path)
    return _read_lines(path)


def _read_dir(path: Path) -> Held:
    items, problems = [], []
    try:
        names = sorted(name for name in os.listdir(path) if FILE_NAME.match(name))
    except OSError as exc:
        return Held([], [f"cannot be listed ({exc.strerror or type(exc).__name__})"])
    for name in names:
        try:
            item = _checkpoint(checkpoints.read_small_file(path / name))
        except ValueError as exc:
            problems.append(f"{name} {exc}")
            continue
        if item["size"] != int(name[:12]):
            problems.append(f"{name} holds the checkpoint at {item['size']} entries")
        else:
            items.append(item)
    return Held(items, problems)


def _read_lines(path: Path) -> Held:
    items, problems = [], []
    try:
        fd = checkpoints.open_regular(path, MAX_LINES, follow=True)
    except ValueError as exc:
        return Held([], [str(exc)])
    try:
        with os.fdopen(fd, "rb") as handle:
            total = 0
            for number, line in enumerate(iter(lambda: handle.readline(MAX_FILE + 1), b""), 1):
                total += len(line)
                if total > MAX_LINES:
                    problems.append(f"is larger than {MAX_LINES} bytes")
                    break
                if not line.strip():
                    continue
                try:
                    if len(line) > MAX_FILE:
                        raise ValueError(f"is longer than {MAX_FILE} bytes")
                    items.append(_checkpoint(line))
                except ValueError as exc:
                    problems.append(f"line {number} {exc}")
    except OSError as exc:
        problems.append(f"cannot be read ({exc.strerror or type(exc).__name__})")
    return Held(items, problems)


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


def check(session: Session, public_key: Ed25519PublicKey, name: str, held: Held) -> WitnessCheck:
    """Each witnessed checkpoint must be signed by the key and match the store's entry at its
    size (which must still exist): a rewrite re-signed with a stolen key still differs here.
    What could not be read, and a witness that holds nothing while the store holds checkpoints
    (the wrong path, a volume not mounted), are problems of this witness."""
    ordered = sorted(held.items, key=lambda item: int(item["size"]))
    sizes = {int(item["size"]) for item in ordered}
    stored = set(session.execute(select(AuditCheckpoint.size)).scalars())
    newest = max(sizes, default=None)
    lag = len(stored - sizes)
    problems = [f"witness {name}: {_summed(held.problems)}"] if held.problems else []
    if not ordered and stored and not held.problems:
        problems.append(f"witness {name} holds no checkpoint, but the store holds {len(stored)}: the wrong path, a "
                        "volume not mounted, or a witness that never received one")
    verified, last_good, first_bad = 0, 0, None
    for item in ordered:
        result = checkpoints.verify_exported(session, public_key, item, last_good)
        if not result.ok:
            problems.insert(0, f"witness {name}: {result.problem}")
            first_bad = result.first_bad_seq
            break
        verified, last_good = verified + 1, int(item["size"])
    return WitnessCheck(name, len(ordered), verified, newest, lag, "; ".join(problems) or None, first_bad)


def _summed(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more such)" if len(problems) > 1 else ""
    return f"{problems[0]}{more}"
